#!/usr/bin/env node
// CPU cost of JWT verification per request on Workers (local `workerd serve`), in one run with
// interleaved rounds, against the same backend as run.mjs:
//   n  edgegate, a route without auth (baseline)
//   h  the same route, with r's Authorization header (ignored: what carrying the header costs)
//   r  RS256 route, the same token on every request (verified-token cache hit)
//   f  RS256 route, a first-seen token on every request (WebCrypto verification)
//   w  the wasm-crypto build (worker/build-wasm-crypto), RS256, first-seen tokens (RustCrypto in wasm)
//   m  the wasm-crypto build, no auth (its own baseline)
//   e  ES256 first-seen (WebCrypto)       d  EdDSA first-seen (WebCrypto)
//   x  EdDSA first-seen (wasm)            v  ES256 first-seen (wasm; not in the default set)
// "First-seen": every request carries the next of --tokens (default 20,000) distinct tokens
// pre-signed with node:crypto, cycled in order, more than the gateway's 4096-entry FIFO cache
// of verified tokens, so every request is a cache miss. The JWKS comes from a node:http mock on
// 127.0.0.1 (Cache-Control: max-age=3600): fetched once per workerd process, off the hot path.
// Reports workerd CPU per request and throughput per target, and the verification cost as
// differences of CPU per request (f − n, w − n, r − n, …). See bench/load/README.md.
//
//   node bench/load/auth.mjs [--duration 5] [--connections 10] [--rounds 3] [--warmup 2]
//                            [--tokens 20000] [--targets n,h,r,f,w,m,e,d,x] [--backend-procs 2]
//                            [--build] [--no-identity-headers] [--out bench/out]
// or the same through env: BENCH_DURATION, BENCH_CONNECTIONS, BENCH_ROUNDS, BENCH_WARMUP,
// BENCH_TOKENS, BENCH_AUTH_TARGETS, BENCH_BACKEND_PROCS, BENCH_NO_IDENTITY_HEADERS=1, BENCH_OUT.

import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  BUILD, BUILD_WASM_CRYPTO, BACKEND_BODY, CLK_TCK, ISSUER, AUDIENCE, ROUTE_PREFIX, runMain, boundRun, parseBenchArgs,
  numFlag, backendProcsOption, identityHeadersOption, outDirOption, benchEnv, envLine, retrying, median, startBackend,
  writeEdgegateWorkerd, startWorkerd, startLoadGen, authGatewayConfig, getWithToken, startJwksServer, warmUp, runRounds,
  summariseRounds, failed, warnFailed, writeResult, fmt, table, ensureWorkerBuild,
} from "./lib.mjs";

const TOKEN_CACHE_ENTRIES = 4096; // shared/src/auth/mod.rs DEFAULT_TOKEN_CACHE
const KIDS = { RS256: "bench-rs256", ES256: "bench-es256", EdDSA: "bench-eddsa" };
const WASM_BUILD_ARGS = ["--out-dir", "build-wasm-crypto", "--features", "wasm-crypto"];

// Every target the script knows. proc: which workerd process (build) serves it; alg + mode:
// the route's algorithm and what the requests carry (none, the same token, first-seen tokens).
const CATALOG = {
  n: { name: "no auth", proc: "webcrypto", alg: null, mode: "none" },
  h: { name: "no auth, r's header sent", proc: "webcrypto", alg: null, mode: "repeat" },
  r: { name: "RS256 repeated token", proc: "webcrypto", alg: "RS256", mode: "repeat" },
  f: { name: "RS256 first-seen, WebCrypto", proc: "webcrypto", alg: "RS256", mode: "fresh" },
  w: { name: "RS256 first-seen, wasm", proc: "wasm", alg: "RS256", mode: "fresh" },
  m: { name: "no auth, wasm-crypto build", proc: "wasm", alg: null, mode: "none" },
  e: { name: "ES256 first-seen, WebCrypto", proc: "webcrypto", alg: "ES256", mode: "fresh" },
  d: { name: "EdDSA first-seen, WebCrypto", proc: "webcrypto", alg: "EdDSA", mode: "fresh" },
  x: { name: "EdDSA first-seen, wasm", proc: "wasm", alg: "EdDSA", mode: "fresh" },
  v: { name: "ES256 first-seen, wasm", proc: "wasm", alg: "ES256", mode: "fresh" },
};
const DEFAULT_TARGETS = "n,h,r,f,w,m,e,d,x";
const PROCS = {
  webcrypto: { label: "worker/build (WebCrypto)", buildDir: BUILD, buildArgs: [] },
  wasm: { label: "worker/build-wasm-crypto (--features wasm-crypto)", buildDir: BUILD_WASM_CRYPTO, buildArgs: WASM_BUILD_ARGS },
};

// ---------------------------------------------------------------------------------- options

function options() {
  const values = parseBenchArgs(["duration", "connections", "rounds", "warmup", "backend-procs", "no-identity-headers", "out", "help"], {
    tokens: { type: "string", short: "t" },
    targets: { type: "string" },
    build: { type: "boolean" },
  });
  if (values.help) {
    console.log(
      "usage: node bench/load/auth.mjs [--duration s] [--connections n] [--rounds n] [--warmup s] [--tokens n]\n" +
        "                               [--targets n,h,r,f,w,m,e,d,x] [--backend-procs n] [--build] [--no-identity-headers]\n" +
        "                               [--out dir]\n" +
        "env: BENCH_DURATION BENCH_CONNECTIONS BENCH_ROUNDS BENCH_WARMUP BENCH_TOKENS BENCH_AUTH_TARGETS\n" +
        "     BENCH_BACKEND_PROCS BENCH_NO_IDENTITY_HEADERS=1 BENCH_OUT\n" +
        "targets:\n" +
        Object.entries(CATALOG).map(([k, t]) => `  ${k}  ${t.name}${DEFAULT_TARGETS.split(",").includes(k) ? "" : " (not in the default set)"}`).join("\n") +
        "\n--build rebuilds worker/build and worker/build-wasm-crypto first (otherwise only a missing one is built)" +
        "\n--no-identity-headers: gateway.identity_headers all \"\" (the backend gets no identity headers; attributes that cost)",
    );
    process.exit(0);
  }
  const keys = (values.targets ?? process.env.BENCH_AUTH_TARGETS ?? DEFAULT_TARGETS).split(",").map((k) => k.trim()).filter(Boolean);
  for (const k of keys) if (!CATALOG[k]) throw new Error(`--targets: unknown target ${k} (known: ${Object.keys(CATALOG).join(",")})`);
  if (new Set(keys).size !== keys.length) throw new Error("--targets: a target is listed twice");
  if (!keys.length) throw new Error("--targets: none");
  return {
    duration: numFlag(values, "duration", "BENCH_DURATION", 5, 1, 600),
    connections: Math.round(numFlag(values, "connections", "BENCH_CONNECTIONS", 10, 1, 1000)),
    rounds: Math.round(numFlag(values, "rounds", "BENCH_ROUNDS", 3, 1, 50)),
    warmup: numFlag(values, "warmup", "BENCH_WARMUP", 2, 0, 120),
    // At least twice the cache, so a token comes back only after thousands of others evicted it.
    tokens: Math.round(numFlag(values, "tokens", "BENCH_TOKENS", 20_000, 2 * TOKEN_CACHE_ENTRIES, 1_000_000)),
    targets: keys,
    backendProcs: backendProcsOption(values),
    build: Boolean(values.build),
    identityHeaders: identityHeadersOption(values),
    outDir: outDirOption(values),
  };
}

// ------------------------------------------------------------------------ keys and tokens

const b64u = (x) => Buffer.from(x).toString("base64url");

function generateKeys(algs) {
  const keys = {};
  for (const alg of algs) {
    const pair =
      alg === "RS256" ? crypto.generateKeyPairSync("rsa", { modulusLength: 2048 })
      : alg === "ES256" ? crypto.generateKeyPairSync("ec", { namedCurve: "P-256" })
      : crypto.generateKeyPairSync("ed25519");
    const jwk = { ...pair.publicKey.export({ format: "jwk" }), kid: KIDS[alg], alg, use: "sig" };
    keys[alg] = { privateKey: pair.privateKey, jwk };
  }
  return keys;
}

/** Signs `input` (a Buffer) as JWS `alg` wants it; async on the libuv thread pool. */
function sign(alg, privateKey, input) {
  return new Promise((resolve, reject) => {
    const done = (err, sig) => (err ? reject(err) : resolve(sig));
    if (alg === "RS256") crypto.sign("sha256", input, privateKey, done);
    else if (alg === "ES256") crypto.sign("sha256", input, { key: privateKey, dsaEncoding: "ieee-p1363" }, done);
    else crypto.sign(null, input, privateKey, done); // Ed25519
  });
}

/** `count` distinct compact JWS tokens named `${label}-<i>`, valid for ten years. */
async function signTokens(alg, key, label, count) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64u(JSON.stringify({ alg, typ: "JWT", kid: KIDS[alg] }));
  const tokens = new Array(count);
  const batch = 512;
  for (let start = 0; start < count; start += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, count - start) }, async (_, j) => {
        const i = start + j;
        const claims = {
          iss: ISSUER, aud: AUDIENCE, sub: `bench-user-${i}`, azp: "bench-client", scope: "items:read items:write",
          iat: now - 60, exp: now + 10 * 365 * 86_400, jti: `${label}-${i}`,
        };
        const input = `${header}.${b64u(JSON.stringify(claims))}`;
        tokens[i] = `${input}.${b64u(await sign(alg, key.privateKey, Buffer.from(input)))}`;
      }),
    );
  }
  return tokens;
}

/** The token with one signature character changed (not the last: it may carry only padding bits). */
function tamper(token) {
  const i = token.lastIndexOf(".") + 5;
  return token.slice(0, i) + (token[i] === "A" ? "B" : "A") + token.slice(i + 1);
}

// ------------------------------------------------------------------------------- gateway

const targetPath = (t) => (t.alg ? `/bench-api/v1/${ROUTE_PREFIX[t.alg]}/items/42` : "/bench-api/v1/items/42");

/**
 * Before the rounds, per target: answered through the gateway (x-request-id) with the backend's
 * body; on auth routes also that a request without a token and one with a tampered signature
 * are refused (401), i.e. the route really verifies. Bounded retries (the first request reads
 * KV, compiles the config and fetches the JWKS).
 */
async function checkTarget(t, checkTokens) {
  const token = t.alg ? checkTokens[t.alg] : null;
  return retrying(async () => {
    const ok = await getWithToken(t.url, token);
    if (ok.status !== 200 || ok.body !== BACKEND_BODY) throw new Error(`${t.key} ${t.name}: HTTP ${ok.status}: ${ok.body.slice(0, 300)}`);
    if (!ok.headers.get("x-request-id")) throw new Error(`${t.key}: no x-request-id: not the gateway?`);
    if (t.alg) {
      const none = await getWithToken(t.url, null);
      if (none.status !== 401) throw new Error(`${t.key}: no token → HTTP ${none.status}, expected 401`);
      const bad = await getWithToken(t.url, tamper(token));
      const why = bad.headers.get("www-authenticate") ?? "";
      if (bad.status !== 401 || !why.includes("bad_signature")) throw new Error(`${t.key}: tampered signature → HTTP ${bad.status} (${why}), expected 401 bad_signature`);
    }
    return;
  });
}

// ---------------------------------------------------------------------------------- main

async function main() {
  const opt = options();
  const startedAt = new Date();
  const targets = opt.targets.map((key) => ({ key, ...CATALOG[key] }));
  const procsUsed = [...new Set(targets.map((t) => t.proc))];
  const needsRepeat = targets.some((t) => t.mode === "repeat");
  const algsUsed = [...new Set([...targets.filter((t) => t.alg).map((t) => t.alg), ...(needsRepeat ? ["RS256"] : [])])];
  const freshAlgs = [...new Set(targets.filter((t) => t.mode === "fresh").map((t) => t.alg))];
  const estimateS = opt.rounds * targets.length * (opt.duration + 0.8) + targets.length * opt.warmup + 10 + 3 * freshAlgs.length;
  boundRun(estimateS);

  for (const p of procsUsed) ensureWorkerBuild(PROCS[p].buildDir, PROCS[p].buildArgs, { force: opt.build });

  const env = benchEnv();
  console.log(
    `edgegate JWT verification cost: ${opt.rounds} rounds × ${targets.length} targets (${opt.targets.join(",")}) × ${opt.duration} s, ` +
      `${opt.connections} connections, warm-up ${opt.warmup} s/target, ${fmt(opt.tokens)} first-seen tokens per algorithm; ~${Math.round(estimateS)} s`,
  );
  console.log(envLine(env));

  // Keys and tokens first (before any load): the cycled ones, plus per algorithm one for the
  // checks and (RS256) the one repeated by target r, neither of them in the cycle.
  const t0 = performance.now();
  const keys = generateKeys(algsUsed);
  const workDir = path.join(opt.outDir, "auth-work");
  fs.rmSync(workDir, { recursive: true, force: true });
  fs.mkdirSync(workDir, { recursive: true });
  const tokenFiles = {};
  const checkTokens = {};
  let repeatToken = null;
  for (const alg of algsUsed) {
    [checkTokens[alg]] = await signTokens(alg, keys[alg], `check-${alg}`, 1);
    if (freshAlgs.includes(alg)) {
      const tokens = await signTokens(alg, keys[alg], `cycle-${alg}`, opt.tokens);
      if (new Set(tokens).size !== tokens.length) throw new Error(`${alg}: duplicate tokens`);
      tokenFiles[alg] = path.join(workDir, `tokens-${alg}.json`);
      fs.writeFileSync(tokenFiles[alg], JSON.stringify(tokens));
    }
  }
  if (needsRepeat) [repeatToken] = await signTokens("RS256", keys.RS256, "repeat", 1);
  const sampleToken = checkTokens.RS256 ?? Object.values(checkTokens)[0];
  console.log(
    `keys generated and ${fmt(freshAlgs.length * opt.tokens + algsUsed.length + (repeatToken ? 1 : 0))} tokens signed in ${fmt((performance.now() - t0) / 1000, 1)} s` +
      (sampleToken ? ` (a token is ${sampleToken.length} bytes${checkTokens.RS256 ? ", RS256" : ""})` : ""),
  );

  const jwks = await startJwksServer({ keys: algsUsed.map((a) => keys[a].jwk) });
  const backend = await startBackend(opt.backendProcs);
  const procs = {};
  for (const p of procsUsed) {
    const { config, build } = writeEdgegateWorkerd(path.join(workDir, p), {
      buildDir: PROCS[p].buildDir,
      // The JWKS mock (lib.mjs) counts requests per path: one path per workerd process.
      gatewayConfig: authGatewayConfig(backend.url, `${jwks.url}/jwks/${p}`, opt.identityHeaders, ["RS256", "ES256", "EdDSA"]),
    });
    const wd = await startWorkerd(`edgegate-${p}`, config);
    procs[p] = { ...wd, build };
  }
  console.log(
    "builds measured: " +
      procsUsed.map((p) => `${procs[p].build.dir} (index_bg.wasm ${fmt(procs[p].build.wasmBytes)} bytes, sha256 ${procs[p].build.wasmSha256}…, built ${procs[p].build.builtAt})`).join("; "),
  );
  const loadgen = await startLoadGen();
  for (const t of targets) {
    t.workerdPid = procs[t.proc].pid;
    t.url = procs[t.proc].url + targetPath(t);
  }

  for (const t of targets) await checkTarget(t, checkTokens);
  const jwksAfterChecks = { ...jwks.counts };
  console.log(
    `checks passed (200 with a valid token; 401 without one and with a tampered signature); JWKS requests so far: ` +
      (Object.entries(jwksAfterChecks).map(([u, c]) => `${u} ${c}`).join(", ") || "none"),
  );

  const runParams = (t, duration) => ({
    url: t.url, connections: opt.connections, duration, timeout: 10, expectBody: BACKEND_BODY,
    ...(t.mode === "repeat" && { headers: { authorization: `Bearer ${repeatToken}` } }),
    // One cursor per (process, algorithm): f and w use the same tokens but separate caches.
    ...(t.mode === "fresh" && { tokensFile: tokenFiles[t.alg], tokenCursor: `${t.proc}:${t.alg}` }),
  });

  await warmUp(loadgen, targets, runParams, opt.warmup, (t) => t.key);
  const tokensSent = {};
  const rounds = await runRounds({
    rounds: opt.rounds, targets, loadgen, backendPids: backend.pids, params: runParams, duration: opt.duration, pauseMs: 300, pad: [28, 6],
    onRun: (t, r) => {
      if (r.tokensSent) tokensSent[`${t.proc}:${t.alg}`] = (tokensSent[`${t.proc}:${t.alg}`] ?? 0) + r.tokensSent;
    },
  });
  const summary = summariseRounds(rounds, targets, {
    describe: (t) => ({ name: t.name, build: PROCS[t.proc].label, alg: t.alg, mode: t.mode, path: targetPath(t) }),
    cpuByRound: true,
  });

  // Differences of workerd CPU per request: pooled, and per round (paired, cancels drift).
  const diff = (a, b) => {
    if (!summary[a] || !summary[b]) return null;
    const perRound = Array.from({ length: opt.rounds }, (_, i) => summary[a].workerdCpuUsPerReqByRound[i] - summary[b].workerdCpuUsPerReqByRound[i]);
    return {
      of: `${a} − ${b}`,
      usPerReq: summary[a].workerdCpuUsPerReq - summary[b].workerdCpuUsPerReq,
      pairedMedian: median(perRound),
      pairedMin: Math.min(...perRound),
      pairedMax: Math.max(...perRound),
      throughputRatio: summary[a].rpsMedian / summary[b].rpsMedian,
    };
  };
  const derived = [
    ["RS256 first-seen token, WebCrypto verification", diff("f", "n"), 100],
    ["  first-seen over repeated (parse, signature, cache insert)", diff("f", "r"), null],
    ["RS256 first-seen token, in-wasm verification", diff("w", "n"), null],
    ["RS256 first-seen token, in-wasm (vs its own build's baseline)", diff("w", "m"), null],
    ["repeated token (cache hit), with carrying its header", diff("r", "n"), null],
    ["  of which carrying the header (no-auth route)", diff("h", "n"), null],
    // The ≤ 10 µs target is the authentication of a repeated token: r − h. r − n also counts
    // receiving and forwarding the 661-byte header, which the no-auth route h pays as well.
    ["  of which the auth stage (hash, cache, claims, identity headers)", diff("r", "h"), 10],
    ["ES256 first-seen token, WebCrypto", diff("e", "n"), null],
    ["ES256 first-seen token, in-wasm (vs its build's baseline)", diff("v", "m"), null],
    ["EdDSA first-seen token, WebCrypto", diff("d", "n"), null],
    ["EdDSA first-seen token, in-wasm (vs its build's baseline)", diff("x", "m"), null],
    ["wasm-crypto build vs normal build, no auth", diff("m", "n"), null],
  ].filter(([, d]) => d);
  const ratios = Object.fromEntries(derived.map(([what, d, target]) => [d.of, { what, ...d, targetUs: target, met: target === null ? null : d.usPerReq <= target && d.pairedMedian <= target }]));

  // Every first-seen request must have been a cache miss: per (process, algorithm) the tokens
  // are sent in cyclic order, so a token comes back only after (tokens − 1) others, far more
  // than the cache holds.
  const cacheMissArgument = `${fmt(opt.tokens)} distinct tokens per algorithm cycled in order > ${TOKEN_CACHE_ENTRIES}-entry FIFO cache + ${opt.connections} in flight`;

  console.log("");
  console.log(
    table(
      ["target", "req/s (median)", "min–max", "p50 ms", "p99 ms", "workerd CPU µs/req", "Δ vs n", "workerd util", "loadgen µs/req", "other busy", "errors"],
      targets.map((t) => {
        const s = summary[t.key];
        const dn = summary.n && t.key !== "n" ? s.workerdCpuUsPerReq - summary.n.workerdCpuUsPerReq : null;
        return [
          `${t.key} ${s.name}`, fmt(s.rpsMedian), `${fmt(s.rpsMin)}–${fmt(s.rpsMax)}`, fmt(s.p50Ms, 2), fmt(s.p99Ms, 2),
          fmt(s.workerdCpuUsPerReq), dn === null ? "-" : `${dn >= 0 ? "+" : ""}${fmt(dn)}`, `${fmt(s.workerdUtilPct)}%`,
          fmt(s.loadgenCpuUsPerReq), `${fmt(s.otherBusyPct)}%`, String(failed(s)),
        ];
      }),
      ["l"],
    ),
  );
  console.log("");
  console.log("verification cost = difference of workerd CPU per request (pooled over rounds; median and range of the per-round differences):");
  for (const [what, d, target] of derived) {
    const signed = (x) => `${x >= 0 ? "+" : ""}${fmt(x)}`;
    console.log(
      `  ${what.padEnd(68)} ${d.of}: ${signed(d.usPerReq).padStart(6)} µs  (per round ${signed(d.pairedMedian)} µs, ${signed(d.pairedMin)}…${signed(d.pairedMax)})` +
        `  throughput ×${fmt(d.throughputRatio, 2)}` +
        (target === null ? "" : `  target ≤ ${target} µs: ${ratios[d.of].met ? "MET" : "NOT MET"}`),
    );
  }
  const jwksTotal = jwks.total();
  console.log(
    `JWKS requests: ${jwksTotal} in all (${Object.entries(jwks.counts).map(([u, c]) => `${u} ${c}`).join(", ")}; expected one per workerd process: ${procsUsed.length})`,
  );
  const sentLine = Object.entries(tokensSent).map(([k, n]) => `${k} ${fmt(n)} (${fmt(n / opt.tokens, 1)} cycles)`).join(", ");
  if (sentLine) console.log(`first-seen tokens sent during the rounds: ${sentLine}; ${cacheMissArgument}, so each was a cache miss`);
  if (jwksTotal > 2 * procsUsed.length) console.log("WARNING: the JWKS was fetched more than expected: key fetches may be on the hot path");
  warnFailed(summary);

  const result = {
    kind: "edgegate-auth-cost",
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    method:
      "workerd serve (same binary) with generated capnp configs, one process per build (worker/build: WebCrypto; " +
      "worker/build-wasm-crypto: RustCrypto in wasm); KV from kv-worker.mjs; JWKS from a node:http mock (max-age=3600); " +
      "autocannon in a child process, first-seen targets send the next of N pre-signed tokens on every request (cyclic, N > cache); " +
      `interleaved rounds ${opt.targets.join(",")}; CPU from /proc/<pid>/stat utime+stime`,
    options: { ...opt, outDir: undefined },
    env: {
      ...env,
      loadavgAtEnd: os.loadavg().map((x) => +x.toFixed(2)),
      clkTck: CLK_TCK,
      builds: Object.fromEntries(procsUsed.map((p) => [p, procs[p].build])),
    },
    tokens: { perAlgorithm: opt.tokens, bytes: Object.fromEntries(algsUsed.map((a) => [a, checkTokens[a].length])), sentDuringRounds: tokensSent, cacheEntries: TOKEN_CACHE_ENTRIES },
    jwksRequests: { afterChecks: jwksAfterChecks, atEnd: { ...jwks.counts } },
    targets: Object.fromEntries(targets.map((t) => [t.key, { name: t.name, url: t.url, build: PROCS[t.proc].label }])),
    summary,
    derived: ratios,
    rounds: rounds.map((x) => x.rec),
  };
  writeResult(opt.outDir, "auth", startedAt, result, `; took ${fmt((Date.now() - startedAt) / 1000)} s`);
  await jwks.close();
}

await runMain(main);
