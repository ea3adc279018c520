#!/usr/bin/env node
// Where does a verified-token cache hit spend its time? Profiles edgegate (worker/build) under
// `workerd serve`, for two targets of auth.mjs in one run, on the same workerd process and under
// the same load:
//   h  the no-auth route, every request carrying r's `Authorization: Bearer <token>` header
//   r  the RS256 route, the same token on every request (after the first: a cache hit)
// so r − h is the auth stage on a cache hit (bearer parse, keyed hash + comparison of the token,
// cache lookup, claim checks, identity headers, the longer access-log line, …). Rounds alternate h, r / r, h
// (drift cancels); the profiles of each target are pooled over its rounds. Prints, per request,
// the self time by category and the top functions of each target, then DIFF tables (r − h) of
// self time per function (wasm functions by name from the wasm's name section, JS glue by name,
// built-ins / native code), of inclusive (on-stack) time, and of named operations; each row with
// the median and range of its per-round differences (the noise). The JWKS comes from a
// node:http mock (fetched once, in the checks).
//
// Two profilers:
// - default: the V8 CPU profiler through the inspector (Chrome DevTools protocol), the isolate
//   thread only, JS and wasm frames (native code shows up as its JS caller or "(program)"). The
//   attached inspector makes console.log ~3× dearer and adds noise.
// - --perf: Linux `perf record -g -e cpu-clock` on the whole workerd process (all threads),
//   frame-pointer stacks through native code, V8 builtins, JS and wasm (V8's --perf-basic-prof
//   map names wasm functions from the name section, with their tier), no inspector. Adds an
//   exclusive split of r − h into buckets that add up to the total. Needs `perf` and
//   perf_event access to the child process (root, or kernel.perf_event_paranoid ≤ 1).
// Either way, take the absolute r − h from bench/load/auth.mjs; this script says where it goes.
//
//   node bench/load/profile-auth.mjs [--perf] [--duration 4] [--rounds 8] [--connections 10]
//        [--rate 0] [--warmup 3] [--interval 100] [--freq 4000] [--keep-perf-data] [--top 20]
//        [--no-identity-headers] [--out bench/out]
// --interval: V8 sampling interval (µs); --freq: perf sampling frequency (Hz);
// --rate n: n requests/s over all connections (0, the default: as fast as the worker answers).

import { spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import readline from "node:readline";
import path from "node:path";
import {
  ROOT, BUILD, BACKEND_BODY, ISSUER, AUDIENCE, runMain, boundRun, parseBenchArgs, numOption, identityHeadersOption,
  outDirOption, retrying, sleep, withTimeout, procCpuMs, median, startBackend, writeEdgegateWorkerd, startWorkerd, startLoadGen, inspector,
  authGatewayConfig, getWithToken, startJwksServer, fmt, table, ensureBuild, track,
} from "./lib.mjs";

const KID = "bench-rs256"; // as in auth.mjs

function options() {
  const values = parseBenchArgs(["duration", "rounds", "connections", "warmup", "no-identity-headers", "out"], {
    interval: { type: "string" },
    rate: { type: "string" },
    top: { type: "string" },
    perf: { type: "boolean" },
    "keep-perf-data": { type: "boolean" },
    freq: { type: "string" },
  });
  return {
    duration: numOption(values.duration ?? process.env.BENCH_DURATION, 4, 1, 60, "--duration"),
    rounds: Math.round(numOption(values.rounds ?? process.env.BENCH_ROUNDS, 8, 1, 40, "--rounds")),
    connections: Math.round(numOption(values.connections ?? process.env.BENCH_CONNECTIONS, 10, 1, 1000, "--connections")),
    warmup: numOption(values.warmup ?? process.env.BENCH_WARMUP, 3, 0, 60, "--warmup"),
    interval: Math.round(numOption(values.interval, 100, 10, 10_000, "--interval")),
    // Requests/s over all connections; 0: as fast as the worker answers (closed loop).
    rate: Math.round(numOption(values.rate ?? process.env.BENCH_RATE, 0, 0, 1_000_000, "--rate")),
    top: Math.round(numOption(values.top, 20, 1, 500, "--top")),
    identityHeaders: identityHeadersOption(values),
    // Linux perf (cpu-clock, frame-pointer stacks, V8 --perf-basic-prof) instead of the inspector.
    perf: Boolean(values.perf) || process.env.BENCH_PROFILER === "perf",
    freq: Math.round(numOption(values.freq, 4000, 100, 50_000, "--freq")),
    keepPerfData: Boolean(values["keep-perf-data"]),
    outDir: outDirOption(values),
  };
}

// ------------------------------------------------------------------------------ key, token

function rs256Token(privateKey) {
  const b64u = (x) => Buffer.from(x).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const header = b64u(JSON.stringify({ alg: "RS256", typ: "JWT", kid: KID }));
  const claims = {
    iss: ISSUER, aud: AUDIENCE, sub: "bench-user-repeat", azp: "bench-client", scope: "items:read items:write",
    iat: now - 60, exp: now + 10 * 365 * 86_400, jti: "repeat-0",
  };
  const input = `${header}.${b64u(JSON.stringify(claims))}`;
  return `${input}.${b64u(crypto.sign("sha256", Buffer.from(input), privateKey))}`;
}

async function checkTargets(h, r, token) {
  return retrying(async () => {
    for (const t of [h, r]) {
      const ok = await getWithToken(t.url, token);
      if (ok.status !== 200 || ok.body !== BACKEND_BODY) throw new Error(`${t.key}: HTTP ${ok.status}: ${ok.body.slice(0, 300)}`);
      if (!ok.headers.get("x-request-id")) throw new Error(`${t.key}: no x-request-id: not the gateway?`);
    }
    const none = await getWithToken(r.url, null);
    if (none.status !== 401) throw new Error(`r without a token → HTTP ${none.status}, expected 401`);
    return;
  });
}

// --------------------------------------------------------------------------------- analysis

const stripHash = (name) => name.replace(/::h[0-9a-f]{16}$/, "");

function category(f) {
  const fn = f.functionName;
  if (fn === "(idle)") return "idle";
  if (fn === "(program)") return "native (program)";
  if (fn === "(garbage collector)") return "GC";
  if (fn === "(root)") return "root";
  if (f.url.startsWith("wasm://")) return "wasm";
  if (f.url.endsWith("index.js")) return "JS glue (index.js)";
  if (/^js-to-wasm|^wasm-to-js$/.test(fn)) return "JS<->wasm transition";
  if (f.url) return "JS (other)";
  return "runtime built-ins";
}

const SHORT = { wasm: "wasm", "JS glue (index.js)": "glue", "runtime built-ins": "built-in", "JS<->wasm transition": "transition" };

/** The function a frame is counted under: wasm/JS by name, a built-in with its nearest caller that is not a built-in. */
function frameKey(node, byId, parent) {
  const f = node.callFrame;
  const cat = category(f);
  const name = stripHash(f.functionName || "(anonymous)");
  if (cat === "runtime built-ins" || cat === "JS<->wasm transition") {
    let q = parent.get(node.id);
    for (let k = 0; q !== undefined && k < 50; q = parent.get(q), k++) {
      const c = category(byId.get(q).callFrame);
      if (c !== "runtime built-ins" && c !== "JS<->wasm transition" && c !== "root") {
        return { key: `${name} ← ${stripHash(byId.get(q).callFrame.functionName || "(anonymous)")}  [${SHORT[cat]}]`, cat };
      }
    }
    return { key: `${name}  [${SHORT[cat]}]`, cat };
  }
  if (cat === "wasm") return { key: `${name}  [wasm]`, cat };
  if (cat === "JS glue (index.js)") return { key: `${name}  [glue]`, cat };
  return { key: `${name}  [${cat === "JS (other)" ? (f.url.split("/").pop() || "-") : cat}]`, cat };
}

// Named operations, matched on the function names of a sample's stack (inclusive: the
// operation and what it calls) or of the sampled frame only (self). They overlap.
const MARKERS = [
  { label: "auth stage: Authenticator::authenticate (incl.)", mode: "inclusive", re: /Authenticator::authenticate/ },
  { label: "  verify_jwt (incl.)", mode: "inclusive", re: /Authenticator::verify_jwt/ },
  { label: "  SHA-256 (sha2, incl.)", mode: "inclusive", re: /sha2::|Sha256|compress256/ },
  { label: "  bearer_token (incl.)", mode: "inclusive", re: /bearer_token/ },
  { label: "  token cache / HashMap (incl.)", mode: "inclusive", re: /TokenCache|hashbrown|HashMap|lru|fifo/i },
  { label: "  check_claims (incl.)", mode: "inclusive", re: /check_claims/ },
  { label: "  KeyStore::still_trusted (incl.)", mode: "inclusive", re: /still_trusted/ },
  { label: "identity_edits (incl.)", mode: "inclusive", re: /identity_edits/ },
  { label: "HeaderEdits::set / remove (incl.)", mode: "inclusive", re: /HeaderEdits>?::(set|remove)/ },
  { label: "serde_json (incl.)", mode: "inclusive", re: /serde_json/ },
  { label: "apply_edits → applyHeaderEdits JS (incl.)", mode: "inclusive", re: /^applyHeaderEdits$|^__wbg_applyHeaderEdits/ },
  { label: "access-log record → line (to_line, incl.)", mode: "inclusive", re: /AccessLogRecord|to_line/ },
  { label: "console.log (incl.)", mode: "inclusive", re: /^__wbg_log_|^log$/ },
  { label: "Date.now (incl.)", mode: "inclusive", re: /^__wbg_now_|^now$|Clock>::now_ms/ },
  { label: "format! / fmt (incl.)", mode: "inclusive", re: /core::fmt|alloc::fmt|::fmt$/ },
  { label: "wasm allocator (self)", mode: "self", re: /dlmalloc|__rdl_|__rust_alloc|__rust_dealloc|__rust_realloc|__wbindgen_malloc|__wbindgen_realloc|__wbindgen_free|externref_table|memcpy|memmove|memset/ },
  { label: "JS <-> wasm transitions (self)", mode: "self", re: /^wasm-to-js$|^js-to-wasm/ },
  { label: "GC (self)", mode: "self", re: /^\(garbage collector\)$/ },
  { label: "native (program) (self)", mode: "self", re: /^\(program\)$/ },
];

/** One profile → µs (not per request) per category, per function key (self and inclusive), per marker. */
function analyse(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map(); // node id → µs
  // samples[i] ran for timeDeltas[i + 1] (the delta to the next sample).
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + dt);
  }
  const keyOf = new Map();
  const key = (id) => {
    if (!keyOf.has(id)) keyOf.set(id, frameKey(byId.get(id), byId, parent));
    return keyOf.get(id);
  };
  const cats = new Map();
  const self = new Map();
  const incl = new Map();
  const markers = new Map(MARKERS.map((m) => [m.label, 0]));
  let busy = 0;
  for (const [id, us] of selfUs) {
    const { key: k, cat } = key(id);
    cats.set(cat, (cats.get(cat) ?? 0) + us);
    if (cat === "idle") continue;
    busy += us;
    self.set(k, (self.get(k) ?? 0) + us);
    const seen = new Set();
    const names = [];
    for (let q = id, d = 0; q !== undefined && d < 300; q = parent.get(q), d++) {
      const n = byId.get(q);
      names.push(n.callFrame.functionName);
      const kk = key(q);
      if (kk.cat === "root" || seen.has(kk.key)) continue;
      seen.add(kk.key);
      incl.set(kk.key, (incl.get(kk.key) ?? 0) + us);
    }
    for (const m of MARKERS) {
      const hit = m.mode === "self" ? m.re.test(names[0]) : names.some((n) => m.re.test(n));
      if (hit) markers.set(m.label, markers.get(m.label) + us);
    }
  }
  return { busy, cats, self, incl, markers };
}

// ------------------------------------------------------------------------------ Linux perf

// Rust legacy mangling (_ZN…E) as V8's perf map names wasm functions from the name section.
function demangleRust(sym) {
  if (!sym.startsWith("_ZN")) return sym;
  const parts = [];
  let i = 3;
  while (i < sym.length && sym[i] !== "E") {
    const m = /^\d+/.exec(sym.slice(i));
    if (!m) return sym;
    i += m[0].length;
    parts.push(sym.slice(i, i + Number(m[0])));
    i += Number(m[0]);
  }
  if (parts.length && /^h[0-9a-f]{16}$/.test(parts.at(-1))) parts.pop();
  const unesc = (x) =>
    x.replace(/^_\$/, "$").replace(/\.\./g, "::").replace(/\$([A-Z]{2}|u[0-9a-f]+)\$/g, (_, c) =>
      ({ LT: "<", GT: ">", RF: "&", BP: "*", C: ",", SP: "@", LP: "(", RP: ")" })[c] ?? (c[0] === "u" ? String.fromCharCode(parseInt(c.slice(1), 16)) : c));
  return parts.map(unesc).join("::");
}

/** Template arguments and parameter lists collapsed, so a C++ symbol is short and groups well. */
function collapseCpp(name) {
  let out = "";
  let depth = 0;
  for (const ch of name) {
    if (ch === "<" || ch === "(") { if (depth++ === 0) out += ch === "<" ? "<…>" : "()"; continue; }
    if ((ch === ">" || ch === ")") && depth > 0) { depth--; continue; }
    if (depth === 0) out += ch;
  }
  return depth === 0 ? out : name;
}

/** perf leaves some long C++ symbols mangled: c++filt, if there is one. */
const cxxCache = new Map();
function cxxDemangle(sym) {
  if (!cxxCache.has(sym)) {
    const r = spawnSync("c++filt", [], { input: sym, encoding: "utf8", timeout: 5000 });
    let out = r.status === 0 && r.stdout.trim() ? r.stdout.trim() : sym;
    if (out.startsWith("_Z")) {
      // Still mangled (perf cut it short): its leading nested name, and the api class it names.
      const parts = [];
      let i = out.startsWith("_ZZN") ? 4 : out.startsWith("_ZN") ? 3 : 2;
      for (let m; (m = /^(\d+)/.exec(out.slice(i))); ) {
        i += m[1].length;
        parts.push(out.slice(i, i + Number(m[1])));
        i += Number(m[1]);
      }
      const api = [...out.matchAll(/3api\d+([A-Za-z]\w*?)(?=\d|E|I)/g)].map((x) => x[1]).filter((x) => x !== "registerMembers");
      if (parts.length) out = `${parts.join("::")}<…${api.length ? ` ${[...new Set(api)].slice(0, 2).join(", ")}` : ""}> (mangled)`;
    }
    cxxCache.set(sym, out);
  }
  return cxxCache.get(sym);
}

/** One perf frame → { key, cat, tier } (cat: a category; tier: the wasm tier, if wasm). */
function perfFrame(sym, dso) {
  if (sym.startsWith("JS:")) {
    const raw = sym.slice(3);
    const w = /^(.*)-\d+-(turbofan|liftoff)$/.exec(raw);
    if (w) return { key: `${stripHash(demangleRust(w[1]))}  [wasm]`, cat: "wasm", tier: w[2] };
    // JS: "*name url:line:col" (the first character is V8's tier mark).
    const m = /^([*~^+'!]?)(\S*)\s*(\S*)$/.exec(raw);
    const url = m?.[3] ?? "";
    const name = m?.[2] || "(anonymous)";
    if (url.includes("index.js")) return { key: `${name}  [glue]`, cat: "JS glue (index.js)" };
    if (/^(js-to-wasm|wasm-to-js)/.test(raw)) return { key: `${raw}  [transition]`, cat: "JS<->wasm transition" };
    return { key: `${name} ${url.split("/").pop()}  [JS]`, cat: url ? "JS (other)" : "JIT stubs/handlers" };
  }
  if (sym.startsWith("Builtin:") || sym.startsWith("Builtins_")) {
    return { key: `${sym.replace(/^Builtin:|^Builtins_/, "")}  [V8 builtin]`, cat: "V8 builtins (embedded)" };
  }
  if (dso.includes("kernel")) return { key: `${sym}  [kernel]`, cat: "kernel" };
  if (sym === "[unknown]") return { key: `[unknown] (${dso.split("/").pop()})`, cat: "unknown" };
  const dem = sym.startsWith("_Z") ? cxxDemangle(sym) : sym;
  const name = dem.endsWith("(mangled)") ? dem : collapseCpp(dem);
  if (!dso.includes("workerd")) return { key: `${name}  [${dso.split("/").pop()}]`, cat: /libc|ld-linux/.test(dso) ? "libc" : "other libraries" };
  if (/^v8::internal::(Heap|Scavenger|MarkCompact|MinorMarkSweep|Sweeper|ConcurrentMarking|MarkingVisitor|IncrementalMarking|GCTracer|.*Evacuat)/.test(name) || /^v8::internal::.*(Scaveng|Marking|Sweep)/.test(name)) {
    return { key: `${name}  [native]`, cat: "GC (V8 heap)" };
  }
  if (/^(tcmalloc::|TCMalloc)/.test(name)) return { key: `${name}  [native]`, cat: "tcmalloc (native malloc/free)" };
  if (name.startsWith("v8::")) return { key: `${name}  [native]`, cat: "V8 C++ (runtime, API)" };
  if (/^(workerd|kj|capnp|jsg)::/.test(name)) return { key: `${name}  [native]`, cat: "workerd/kj C++" };
  return { key: `${name}  [native]`, cat: "other native (workerd binary)" };
}

// Named operations for perf stacks (demangled names, wasm and native C++). Inclusive unless
// "self". They overlap; do not add them up.
const PERF_MARKERS = [
  { label: "verify_jwt (incl.)", re: /Authenticator::verify_jwt/ },
  { label: "  SHA-256 (sha2, incl.)", re: /^sha2::/ },
  { label: "  check_claims (incl.)", re: /check_claims/ },
  { label: "  token cache / HashMap (incl.)", re: /TokenCache|hashbrown|HashMap|BuildHasher|sip::Hasher/ },
  { label: "HeaderEdits::set / remove (incl.)", re: /HeaderEdits::(set|remove)/ },
  { label: "serde_json (incl.)", re: /^serde_json::|^serde_core::|^serde::/ },
  { label: "apply_edits (JSON + applyHeaderEdits, incl.)", re: /edgegate_worker::convert::apply_edits/ },
  { label: "  Headers set/delete, native (incl.)", re: /^workerd::api::Headers::(set|delete_|delete|append)|Headers::set|Headers::delete/ },
  { label: "workerd::api::Headers::*, native (incl.)", re: /^workerd::api::Headers::/ },
  { label: "JSON.parse (incl.)", re: /JsonParse|JsonParser/ },
  { label: "JSON.stringify (incl.)", re: /JsonStringif|JsonStringifier/ },
  { label: "TextDecoder / TextEncoder (incl.)", re: /TextDecoder|TextEncoder|simdutf/ },
  { label: "console.log (glue + formatLog + native, incl.)", re: /__wbg_log_|formatLog|handleLog|[Cc]onsole|LogMessage/ },
  { label: "fetch() call (native, incl.)", re: /^workerd::api::fetchImpl/ },
  { label: "upstream HTTP: kj Http* (incl.)", re: /^kj::.*Http/ },
  { label: "new Request / new Response (native, incl.)", re: /^workerd::api::(Request|Response)::constructor/ },
  { label: "socket writes (AsyncStreamFd::write, incl.)", re: /AsyncStreamFd::write/ },
  { label: "GC (incl.)", re: /Heap::CollectGarbage|MinorGCJob|ScavengerCollector|MarkCompactCollector/ },
  { label: "access log → to_line (incl.)", re: /AccessLogRecord|to_line/ },
  { label: "Date.now (incl.)", re: /Date_?Now|DateNow|Clock>::now_ms/ },
  { label: "wasm allocator (self)", self: true, re: /dlmalloc|__rdl_|__rust_alloc|__rust_dealloc|__rust_realloc|__wbindgen_malloc|__wbindgen_realloc|__wbindgen_free|^memcpy  \[wasm|^memmove  \[wasm|^memset  \[wasm/ },
  { label: "native malloc/free (self)", self: true, re: /^(malloc|free|cfree|realloc|calloc|_int_malloc|_int_free|__libc_malloc|__libc_free|tcmalloc|operator new|operator delete)/ },
  { label: "kernel (self)", self: true, re: /\[kernel\]$/ },
];

// An exclusive split of the process CPU (perf): each sample goes to the first bucket one of
// whose patterns matches a frame of its stack (or its leaf, for `leaf`), so the buckets add up
// to the total and so do their r − h differences.
const PERF_BUCKETS = [
  { label: "auth: SHA-256 (sha2; none on a cache hit since 8ac00f0)", re: /^sha2::/ },
  { label: "auth: rest of verify_jwt (SipHash, token compare, key trust, alg, claims)", re: /Authenticator::verify_jwt/ },
  { label: "request header edits → JSON → applyHeaderEdits (Headers.set/delete)", re: /edgegate_worker::convert::apply_edits/ },
  { label: "upstream fetch() call (new Request, headers → kj request)", re: /^workerd::api::fetchImpl|^workerd::api::Request::constructor|ServiceWorkerGlobalScope::fetch/ },
  { label: "console.log (access-log line)", re: /__wbg_log_|formatLog|handleLog/ },
  { label: "GC", re: /Heap::CollectGarbage|MinorGCJob|ScavengerCollector|MarkCompactCollector|Heap::Scavenge/ },
  { label: "other wasm (async glue; inlined: auth wrapper, identity_edits, access-log record; serde_json, allocator)", leaf: true, re: /\[wasm\]$/ },
  { label: "kj HTTP / sockets outside JS (server side, upstream response)", re: /^kj::.*Http|AsyncStreamFd|AsyncIoStream|^kj::.*Network/ },
  { label: "other JS, glue, V8 builtins", leaf: true, re: /\[(glue|JS|V8 builtin|transition)\]$/ },
  { label: "kernel (other)", leaf: true, re: /\[kernel\]/ },
  { label: "other native (workerd, V8, tcmalloc, libc)", re: /./ },
];

/** Runs `perf script` on one recording and folds its samples into µs per category/function/marker. */
async function analysePerf(file, pid) {
  const proc = spawn("perf", ["script", "-i", file, "-F", "tid,period,ip,sym,dso", "--max-stack", "255"], { stdio: ["ignore", "pipe", "pipe"] });
  track("perf-script", proc);
  let stderr = "";
  proc.stderr.setEncoding("utf8").on("data", (d) => { if (stderr.length < 4000) stderr += d; });
  const acc = { busy: 0, cats: new Map(), self: new Map(), incl: new Map(), markers: new Map(PERF_MARKERS.map((m) => [m.label, 0])), buckets: new Map(PERF_BUCKETS.map((b) => [b.label, 0])), tiers: new Map(), samples: 0 };
  const memo = new Map();
  const frameOf = (sym, dso) => {
    const k = `${sym}\u0000${dso}`;
    if (!memo.has(k)) memo.set(k, perfFrame(sym, dso));
    return memo.get(k);
  };
  const add = (map, k, v) => map.set(k, (map.get(k) ?? 0) + v);
  let cur = null;
  const flush = () => {
    if (!cur) return;
    const us = cur.period / 1000;
    acc.samples += 1;
    acc.busy += us;
    const frames = cur.frames.length ? cur.frames : [{ key: "[no stack]", cat: "unknown" }];
    const leaf = frames[0];
    const cat = cur.tid === pid ? leaf.cat : "other threads (V8 platform, kj)";
    add(acc.cats, cat, us);
    add(acc.self, cur.tid === pid ? leaf.key : `${leaf.key} (other thread)`, us);
    if (leaf.tier) add(acc.tiers, leaf.tier, us);
    const seen = new Set();
    for (const f of frames) {
      if (seen.has(f.key)) continue;
      seen.add(f.key);
      add(acc.incl, f.key, us);
    }
    for (const m of PERF_MARKERS) {
      if (m.self ? m.re.test(leaf.key) : frames.some((f) => m.re.test(f.key))) add(acc.markers, m.label, us);
    }
    const bucket = cur.tid !== pid ? PERF_BUCKETS.at(-1) : PERF_BUCKETS.find((b) => (b.leaf ? b.re.test(leaf.key) : frames.some((f) => b.re.test(f.key))));
    add(acc.buckets, bucket.label, us);
    cur = null;
  };
  const rl = readline.createInterface({ input: proc.stdout, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) { flush(); continue; }
    if (!/^\s/.test(line) || /^ *\d+ +\d+ *$/.test(line)) {
      const m = /^\s*(\d+)\s+(\d+)/.exec(line);
      if (m) { flush(); cur = { tid: Number(m[1]), period: Number(m[2]), frames: [] }; continue; }
    }
    if (!cur) continue;
    const f = /^\s+[0-9a-f]+\s+(.*?)\s+\(([^()]*)\)\s*$/.exec(line);
    if (f) cur.frames.push(frameOf(f[1], f[2]));
  }
  flush();
  const code = await new Promise((res) => (proc.exitCode !== null ? res(proc.exitCode) : proc.on("exit", res)));
  if (code !== 0) throw new Error(`perf script -i ${file} exited ${code}: ${stderr}`);
  return acc;
}

/** Starts `perf record` on `pid`; returns stop() → resolves when the file is written. */
async function perfRecord(pid, file, freq) {
  const proc = spawn("perf", ["record", "-g", "-e", "cpu-clock", "-F", String(freq), "-p", String(pid), "-o", file], { stdio: ["ignore", "ignore", "pipe"] });
  track("perf-record", proc);
  let stderr = "";
  proc.stderr.setEncoding("utf8").on("data", (d) => { if (stderr.length < 4000) stderr += d; });
  const exited = new Promise((res) => proc.on("exit", (code, sig) => res(code ?? sig)));
  await sleep(250); // perf attaches
  if (proc.exitCode !== null) throw new Error(`perf record exited early: ${stderr}`);
  return {
    async stop() {
      proc.kill("SIGINT");
      const code = await withTimeout(exited, 30_000, "perf record stop");
      if (code !== 0 && code !== "SIGINT") throw new Error(`perf record exited ${code}: ${stderr}`);
    },
  };
}

/** Adds one round's analysis (µs) to a target's pool and keeps its per-request values per round. */
function pool(acc, a, requests) {
  acc.requests += requests;
  acc.busy += a.busy;
  acc.busyByRound.push(a.busy / requests);
  for (const field of ["cats", "self", "incl", "markers", "buckets"]) {
    for (const [k, us] of a[field] ?? []) {
      acc[field].set(k, (acc[field].get(k) ?? 0) + us);
      if (!acc.byRound[field].has(k)) acc.byRound[field].set(k, []);
      acc.byRound[field].get(k)[acc.busyByRound.length - 1] = us / requests;
    }
  }
}

const newPool = () => ({ requests: 0, busy: 0, busyByRound: [], cats: new Map(), self: new Map(), incl: new Map(), markers: new Map(), buckets: new Map(), byRound: { cats: new Map(), self: new Map(), incl: new Map(), markers: new Map(), buckets: new Map() } });

const signed = (x, d = 1) => `${x >= 0 ? "+" : ""}${fmt(x, d)}`;
const cut = (s, n = 105) => (s.length > n ? s.slice(0, n - 1) + "…" : s);

/** DIFF rows (r − h, µs/req) of one field, with the per-round differences' range. */
function diffRows(H, R, field, rounds) {
  const keys = new Set([...H[field].keys(), ...R[field].keys()]);
  return [...keys].map((k) => {
    const h = (H[field].get(k) ?? 0) / H.requests;
    const r = (R[field].get(k) ?? 0) / R.requests;
    const per = Array.from({ length: rounds }, (_, i) => (R.byRound[field].get(k)?.[i] ?? 0) - (H.byRound[field].get(k)?.[i] ?? 0));
    return { key: k, h, r, diff: r - h, min: Math.min(...per), max: Math.max(...per), med: median(per) };
  });
}

const diffTable = (rows, label) =>
  table([label, "h µs/req", "r µs/req", "r − h", "per-round median", "min…max"], rows.map((x) => [cut(x.key), fmt(x.h, 2), fmt(x.r, 2), signed(x.diff, 2), signed(x.med, 2), `${signed(x.min)}…${signed(x.max)}`]), ["l"]);

// ------------------------------------------------------------------------------------ main

async function main() {
  const opt = options();
  const estimateS = 2 * opt.warmup + opt.rounds * 2 * (opt.duration + 1) + 15;
  boundRun(estimateS);
  ensureBuild();
  console.log(
    `profiling edgegate (worker/build) h = no-auth route with r's Authorization header, r = RS256 route, repeated token: ` +
      `${opt.rounds} rounds × 2 × ${opt.duration} s, ${opt.connections} connections${opt.rate ? ` at ${fmt(opt.rate)} req/s` : ""}, ` +
      (opt.perf ? `linux perf (cpu-clock, ${fmt(opt.freq)} Hz, frame-pointer stacks, V8 --perf-basic-prof)` : `V8 inspector profiler, sampling every ${opt.interval} µs`) +
      `${opt.identityHeaders ? "" : ", identity headers off"}; ~${Math.round(estimateS)} s`,
  );

  const { privateKey, publicKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  const token = rs256Token(privateKey);
  const jwks = await startJwksServer({ keys: [{ ...publicKey.export({ format: "jwk" }), kid: KID, alg: "RS256", use: "sig" }] });
  const backend = await startBackend(1);
  const workDir = path.join(opt.outDir, "profile-auth-work");
  const { config, build } = writeEdgegateWorkerd(workDir, { buildDir: BUILD, gatewayConfig: authGatewayConfig(backend.url, `${jwks.url}/jwks`, opt.identityHeaders, ["RS256"]) });
  if (opt.perf) {
    // V8 writes /tmp/perf-<pid>.map (JIT code, wasm functions by name and tier) for perf.
    const text = fs.readFileSync(config, "utf8");
    const patched = text.replace("const config :Workerd.Config = (\n", 'const config :Workerd.Config = (\n  v8Flags = ["--perf-basic-prof"],\n');
    if (patched === text) throw new Error("cannot add v8Flags to the workerd config");
    fs.writeFileSync(config, patched);
    const v = spawnSync("perf", ["--version"], { encoding: "utf8" });
    if (v.status !== 0) throw new Error("--perf: no perf (linux-perf) on PATH");
  }
  const wd = await startWorkerd("edgegate-profile-auth", config, { inspector: !opt.perf });
  const perfMap = `/tmp/perf-${wd.pid}.map`;
  console.log(`build: ${build.dir} (index_bg.wasm ${fmt(build.wasmBytes)} bytes, sha256 ${build.wasmSha256}…, built ${build.builtAt}); token ${token.length} bytes`);
  const h = { key: "h", name: "no auth, header sent", url: `${wd.url}/bench-api/v1/items/42` };
  const r = { key: "r", name: "RS256, repeated token", url: `${wd.url}/bench-api/v1/rs/items/42` };
  await checkTargets(h, r, token);
  const loadgen = await startLoadGen();
  const params = (t, duration) => ({
    url: t.url, connections: opt.connections, duration, timeout: 10, expectBody: BACKEND_BODY,
    ...(opt.rate > 0 && { overallRate: opt.rate }),
    headers: { authorization: `Bearer ${token}` },
  });
  if (opt.warmup > 0) for (const t of [h, r]) await loadgen.run(params(t, opt.warmup));

  const cdp = opt.perf ? null : await inspector(`ws://127.0.0.1:${wd.inspectorPort}/main`);
  if (cdp) {
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: opt.interval });
  }
  fs.mkdirSync(opt.outDir, { recursive: true });
  const perfDir = path.join(workDir, "perf");
  if (opt.perf) fs.mkdirSync(perfDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const pools = { h: newPool(), r: newPool() };
  const tiers = { h: new Map(), r: new Map() };
  const rounds = [];
  const files = [];
  const recorded = []; // perf: analysed after all rounds, so perf script does not run during a round
  for (let round = 1; round <= opt.rounds; round++) {
    for (const t of round % 2 ? [h, r] : [r, h]) {
      await sleep(300);
      const perfFile = path.join(perfDir, `${t.key}-${round}.data`);
      const rec0 = opt.perf ? await perfRecord(wd.pid, perfFile, opt.freq) : null;
      const cpu0 = procCpuMs(wd.pid);
      if (cdp) await cdp.send("Profiler.start");
      const res = await loadgen.run(params(t, opt.duration));
      const profile = cdp ? (await cdp.send("Profiler.stop")).profile : null;
      const cpu1 = procCpuMs(wd.pid);
      if (rec0) await rec0.stop();
      const served = res.ok + res.non2xx;
      const errors = res.errors + res.non2xx + res.timeouts + res.mismatches;
      const rec = { round, target: t.key, rps: res.rps, requests: served, errors, workerdCpuUsPerReq: ((cpu1 - cpu0) * 1000) / served };
      rounds.push(rec);
      if (profile) {
        const a = analyse(profile);
        pool(pools[t.key], a, served);
        rec.profiledBusyUsPerReq = a.busy / served;
        const file = path.join(opt.outDir, `profile-auth-${t.key}-${round}-${stamp}.cpuprofile`);
        if (round === 1) { fs.writeFileSync(file, JSON.stringify(profile)); files.push(path.relative(ROOT, file)); }
      } else {
        recorded.push({ t, rec, perfFile, served });
      }
      console.log(
        `round ${round} ${t.key} ${t.name.padEnd(22)} ${fmt(res.rps).padStart(6)} req/s  workerd process CPU ${fmt(rec.workerdCpuUsPerReq)} µs/req` +
          (profile ? `, isolate profiled busy ${fmt(rec.profiledBusyUsPerReq)} µs/req` : "") + (errors ? `  ERRORS ${errors}` : ""),
      );
    }
  }
  cdp?.close();
  if (opt.perf) {
    process.stdout.write("perf script:");
    for (const x of recorded) {
      const a = await analysePerf(x.perfFile, wd.pid);
      pool(pools[x.t.key], a, x.served);
      for (const [k, us] of a.tiers) tiers[x.t.key].set(k, (tiers[x.t.key].get(k) ?? 0) + us);
      x.rec.profiledBusyUsPerReq = a.busy / x.served;
      x.rec.samples = a.samples;
      process.stdout.write(` ${x.t.key}${x.rec.round} ${fmt(a.samples)} samples;`);
    }
    process.stdout.write("\n");
    if (opt.keepPerfData) {
      // perf report/script look for the JIT map as /tmp/perf-<pid>.map: copy it back there to use these.
      fs.copyFileSync(perfMap, path.join(perfDir, path.basename(perfMap)));
      files.push(`${path.relative(ROOT, perfDir)} (with ${path.basename(perfMap)})`);
    } else {
      for (const x of recorded) fs.rmSync(x.perfFile, { force: true });
    }
  }

  const H = pools.h;
  const R = pools.r;
  const busyLabel = opt.perf ? "workerd process CPU sampled by perf (all threads)" : "isolate busy (V8 profile self time, idle excluded)";
  const cpuOf = (k) => rounds.filter((x) => x.target === k);
  const pooledCpu = (k) => cpuOf(k).reduce((s, x) => s + x.workerdCpuUsPerReq * x.requests, 0) / cpuOf(k).reduce((s, x) => s + x.requests, 0);
  const perRoundCpu = Array.from({ length: opt.rounds }, (_, i) => cpuOf("r")[i].workerdCpuUsPerReq - cpuOf("h")[i].workerdCpuUsPerReq);
  const perRoundBusy = Array.from({ length: opt.rounds }, (_, i) => R.busyByRound[i] - H.busyByRound[i]);

  for (const [k, P] of [["h", H], ["r", R]]) {
    console.log(`\n== ${k} ${k === "h" ? h.name : r.name}: ${fmt(P.requests)} requests profiled; ${busyLabel} ${fmt(P.busy / P.requests, 1)} µs/req`);
    if (opt.perf) console.log(`wasm samples by tier: ${[...tiers[k]].map(([tier, us]) => `${tier} ${fmt(us / P.requests, 2)} µs/req`).join(", ") || "none"}`);
    console.log(table(["category", "µs/req (self)", "share"], [...P.cats].filter(([c]) => c !== "idle").sort((a, b) => b[1] - a[1]).map(([c, us]) => [c, fmt(us / P.requests, 1), `${fmt((100 * us) / P.busy, 1)}%`]), ["l"]));
    console.log("");
    console.log(table(["function (self time)", "µs/req", "share"], [...P.self].sort((a, b) => b[1] - a[1]).slice(0, opt.top).map(([f, us]) => [cut(f), fmt(us / P.requests, 2), `${fmt((100 * us) / P.busy, 1)}%`]), ["l"]));
  }

  console.log(`\n==== DIFF r − h (µs per request)`);
  console.log(
    `workerd process CPU: h ${fmt(pooledCpu("h"), 1)}, r ${fmt(pooledCpu("r"), 1)}, r − h ${signed(pooledCpu("r") - pooledCpu("h"))} (per-round median ${signed(median(perRoundCpu))}; ${perRoundCpu.map((x) => signed(x)).join(", ")})`,
  );
  console.log(
    `${busyLabel}: h ${fmt(H.busy / H.requests, 1)}, r ${fmt(R.busy / R.requests, 1)}, r − h ${signed(R.busy / R.requests - H.busy / H.requests)} (per-round median ${signed(median(perRoundBusy))}; ${perRoundBusy.map((x) => signed(x)).join(", ")})`,
  );
  const catRows = diffRows(H, R, "cats", opt.rounds).filter((x) => x.key !== "idle").sort((a, b) => b.diff - a.diff);
  console.log("");
  console.log(diffTable(catRows, "category (self)"));
  const selfRows = diffRows(H, R, "self", opt.rounds).sort((a, b) => b.diff - a.diff);
  console.log("");
  console.log(diffTable(selfRows.slice(0, opt.top), `function, self time: top ${opt.top} growth`));
  const shrink = [...selfRows].sort((a, b) => a.diff - b.diff).slice(0, 5);
  console.log("");
  console.log(diffTable(shrink, "function, self time: 5 largest drops (noise reference)"));
  // Frames on the stack of more than a quarter of the samples (event loop, microtask runner, the
  // request's future) are left out: they contain everything.
  const inclRows = diffRows(H, R, "incl", opt.rounds)
    .filter((x) => /\[(wasm|glue|native)\]$/.test(x.key) && x.h < 0.25 * (H.busy / H.requests) && x.r < 0.25 * (R.busy / R.requests))
    .sort((a, b) => b.diff - a.diff);
  console.log("");
  console.log(diffTable(inclRows.slice(0, opt.top), `${opt.perf ? "wasm/glue/native" : "wasm/glue"} function, inclusive (on stack, < 25% of samples): top ${opt.top} growth`));
  const markerList = opt.perf ? PERF_MARKERS : MARKERS;
  const markerRows = diffRows(H, R, "markers", opt.rounds).sort((a, b) => markerList.findIndex((m) => m.label === a.key) - markerList.findIndex((m) => m.label === b.key));
  console.log("");
  console.log(diffTable(markerRows, "operation (markers overlap; do not add up)"));
  let bucketRows = [];
  if (opt.perf) {
    bucketRows = diffRows(H, R, "buckets", opt.rounds).sort((a, b) => PERF_BUCKETS.findIndex((m) => m.label === a.key) - PERF_BUCKETS.findIndex((m) => m.label === b.key));
    const sum = (k) => bucketRows.reduce((t, x) => t + x[k], 0);
    console.log("");
    console.log(diffTable([...bucketRows, { key: "total (= sampled process CPU)", h: sum("h"), r: sum("r"), diff: sum("diff"), med: NaN, min: NaN, max: NaN }], "where r − h goes: exclusive split (each sample in its first matching bucket)"));
  }
  console.log(`\nJWKS requests: ${jwks.total()} (expected 1).${files.length ? ` ${opt.perf ? "perf recordings" : "Round-1 profiles"}: ${files.join(", ")}` : ""}`);
  if (opt.perf) fs.rmSync(perfMap, { force: true }); // written by the workerd we started

  const out = path.join(opt.outDir, `profile-auth-${stamp}.json`);
  const obj = (m, n) => Object.fromEntries([...m].sort((a, b) => b[1] - a[1]).map(([k, us]) => [k, us / n]));
  fs.writeFileSync(
    out,
    JSON.stringify(
      {
        kind: "edgegate-auth-profile", profiler: opt.perf ? "linux perf" : "v8 inspector", options: { ...opt, outDir: undefined }, build, tokenBytes: token.length, rounds,
        perRequestUs: { h: { busy: H.busy / H.requests, categories: obj(H.cats, H.requests), self: obj(H.self, H.requests), markers: obj(H.markers, H.requests) }, r: { busy: R.busy / R.requests, categories: obj(R.cats, R.requests), self: obj(R.self, R.requests), markers: obj(R.markers, R.requests) } },
        diff: { categories: catRows, self: selfRows.slice(0, 100), inclusive: inclRows.slice(0, 100), markers: markerRows, buckets: bucketRows },
        jwksRequests: jwks.total(),
      },
      null,
      1,
    ) + "\n",
  );
  console.log(`JSON: ${path.relative(process.cwd(), out)}`);
  await jwks.close();
}

await runMain(main);
