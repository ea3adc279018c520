#!/usr/bin/env node
// End-to-end load comparison on this machine, in one run:
//   (a) direct        the load tool against the backend itself
//   (b) pass-through  a plain JavaScript pass-through worker under local `workerd serve`
//   (c) edgegate      the built worker (worker/build) under local `workerd serve`, config in KV
//   (d) optional (--log-baseline): (b) plus one access-log-like console.log per request
//   (e) optional (--rust-baseline): a minimal Rust pass-through worker (bench/rs-passthrough,
//       workers-rs + wasm-bindgen, same toolchain as edgegate), built here with worker-build
// Same runtime binary, same machine, same load tool (autocannon, in its own process), same
// backend, interleaved rounds a,b,c,a,b,c,… Reports throughput, median and p99 latency, the
// ratios edgegate/pass-through and pass-through/direct, and CPU per request of each workerd
// process (and of the backend and the load generator). See bench/load/README.md.
//
//   node bench/load/run.mjs [--duration 10] [--connections 10] [--rounds 3] [--warmup 3]
//                           [--backend-procs 2] [--log-baseline] [--rust-baseline] [--out bench/out]
// or the same through env: BENCH_DURATION, BENCH_CONNECTIONS, BENCH_ROUNDS, BENCH_WARMUP,
// BENCH_BACKEND_PROCS, BENCH_LOG_BASELINE=1, BENCH_RUST_BASELINE=1, BENCH_OUT.

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { createRequire } from "node:module";
import {
  ROOT, BUILD, RS_BUILD, WORKERD, REQUEST_PATH, BACKEND_BODY, CLK_TCK, installCleanupHandlers, cleanupAndExit, isCleaningUp,
  sleep, procCpuMs, machineCpu, median, sha256, startBackend, writeWorkerdConfigs, startWorkerd,
  startLoadGen, check, fmt, table, ensureBuild, buildRustPassthrough,
} from "./lib.mjs";

const require = createRequire(import.meta.url);
const hdr = require("hdr-histogram-js");

installCleanupHandlers();

// ---------------------------------------------------------------------------------- options

function options() {
  const { values } = parseArgs({
    options: {
      duration: { type: "string", short: "d" },
      connections: { type: "string", short: "c" },
      rounds: { type: "string", short: "r" },
      warmup: { type: "string", short: "w" },
      "backend-procs": { type: "string" },
      "log-baseline": { type: "boolean" },
      "rust-baseline": { type: "boolean" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(
      "usage: node bench/load/run.mjs [--duration s] [--connections n] [--rounds n] [--warmup s]\n" +
        "                              [--backend-procs n] [--log-baseline] [--rust-baseline] [--out dir]\n" +
        "env: BENCH_DURATION BENCH_CONNECTIONS BENCH_ROUNDS BENCH_WARMUP BENCH_BACKEND_PROCS BENCH_LOG_BASELINE=1\n" +
        "     BENCH_RUST_BASELINE=1 BENCH_OUT\n" +
        "--log-baseline adds target d: the pass-through worker plus one access-log-like console.log per request\n" +
        "--rust-baseline adds target e: a minimal Rust (workers-rs) pass-through worker, built first with\n" +
        "                worker-build from bench/rs-passthrough (the cost of the workers-rs/wasm-bindgen glue)",
    );
    process.exit(0);
  }
  const num = (flag, env, def, min, max) => {
    const raw = values[flag] ?? process.env[env];
    const v = raw === undefined ? def : Number(raw);
    if (!Number.isFinite(v) || v < min || v > max) throw new Error(`--${flag} / ${env}: ${raw} is not in [${min}, ${max}]`);
    return v;
  };
  return {
    duration: num("duration", "BENCH_DURATION", 10, 1, 600),
    connections: Math.round(num("connections", "BENCH_CONNECTIONS", 10, 1, 1000)),
    rounds: Math.round(num("rounds", "BENCH_ROUNDS", 3, 1, 50)),
    warmup: num("warmup", "BENCH_WARMUP", 3, 0, 120),
    backendProcs: Math.round(num("backend-procs", "BENCH_BACKEND_PROCS", Math.min(2, os.cpus().length), 1, 64)),
    logBaseline: Boolean(values["log-baseline"]) || process.env.BENCH_LOG_BASELINE === "1",
    rustBaseline: Boolean(values["rust-baseline"]) || process.env.BENCH_RUST_BASELINE === "1",
    outDir: path.resolve(values.out ?? process.env.BENCH_OUT ?? path.join(ROOT, "bench/out")),
  };
}

async function main() {
  const opt = options();
  const startedAt = new Date();
  const nTargets = 3 + (opt.logBaseline ? 1 : 0) + (opt.rustBaseline ? 1 : 0);
  const estimateS = opt.rounds * nTargets * (opt.duration + 1.5) + nTargets * opt.warmup + 15;
  // Global bound on the whole run, whatever happens.
  setTimeout(() => cleanupAndExit(2, `run exceeded ${Math.round(estimateS * 2 + 120)} s`), (estimateS * 2 + 120) * 1000).unref();

  ensureBuild();
  if (opt.rustBaseline) buildRustPassthrough();

  const workerdVersion = spawnSync(WORKERD, ["--version"], { encoding: "utf8" }).stdout.trim();
  const git = (args) => spawnSync("git", args, { cwd: ROOT, encoding: "utf8" }).stdout?.trim();
  const env = {
    node: process.version,
    workerd: workerdVersion,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    loadavgAtStart: os.loadavg().map((x) => +x.toFixed(2)),
    gitHead: git(["rev-parse", "--short", "HEAD"]),
    gitDirty: Boolean(git(["status", "--porcelain", "--", "worker", "shared"])),
    worker: {
      indexJsSha256: sha256(path.join(BUILD, "index.js")),
      wasmSha256: sha256(path.join(BUILD, "index_bg.wasm")),
      wasmBytes: fs.statSync(path.join(BUILD, "index_bg.wasm")).size,
      builtAt: fs.statSync(path.join(BUILD, "index_bg.wasm")).mtime.toISOString(),
    },
    ...(opt.rustBaseline && {
      rsPassthrough: {
        gitDirty: Boolean(git(["status", "--porcelain", "--", "bench/rs-passthrough"])),
        indexJsSha256: sha256(path.join(RS_BUILD, "index.js")),
        wasmSha256: sha256(path.join(RS_BUILD, "index_bg.wasm")),
        wasmBytes: fs.statSync(path.join(RS_BUILD, "index_bg.wasm")).size,
        builtAt: fs.statSync(path.join(RS_BUILD, "index_bg.wasm")).mtime.toISOString(),
      },
    }),
  };

  console.log(
    `edgegate load comparison: ${opt.rounds} rounds × ${nTargets} targets × ${opt.duration} s, ${opt.connections} connections, ` +
      `warm-up ${opt.warmup} s/target, backend ${opt.backendProcs} process(es); ~${Math.round(estimateS)} s`,
  );
  console.log(`${env.workerd}, node ${env.node}, ${env.cpus} CPUs, load average at start ${env.loadavgAtStart.join(" ")}`);

  const backend = await startBackend(opt.backendProcs);
  const workDir = path.join(opt.outDir, "load-work");
  const configs = writeWorkerdConfigs(workDir, backend.url, { rustPassthrough: opt.rustBaseline });
  const wdPass = await startWorkerd("passthrough", configs.passthrough);
  const wdEdge = await startWorkerd("edgegate", configs.edgegate);
  const wdLog = opt.logBaseline ? await startWorkerd("passthrough-log", configs.passthroughLog) : null;
  const wdRs = opt.rustBaseline ? await startWorkerd("rs-passthrough", configs.rsPassthrough) : null;
  const loadgen = await startLoadGen();

  const targets = [
    { key: "a", name: "direct", url: backend.url + REQUEST_PATH, workerdPid: null },
    { key: "b", name: "pass-through", url: wdPass.url + REQUEST_PATH, workerdPid: wdPass.pid },
    { key: "c", name: "edgegate", url: wdEdge.url + REQUEST_PATH, workerdPid: wdEdge.pid },
    ...(wdLog ? [{ key: "d", name: "pass-through+log", url: wdLog.url + REQUEST_PATH, workerdPid: wdLog.pid }] : []),
    ...(wdRs ? [{ key: "e", name: "rust pass-through", url: wdRs.url + REQUEST_PATH, workerdPid: wdRs.pid }] : []),
  ];
  for (const t of targets) await check(t);

  const runParams = (t, duration) => ({ url: t.url, connections: opt.connections, duration, timeout: 10, expectBody: BACKEND_BODY });

  if (opt.warmup > 0) {
    process.stdout.write("warm-up:");
    for (const t of targets) {
      const r = await loadgen.run(runParams(t, opt.warmup));
      process.stdout.write(` ${t.name} ${fmt(r.rps)} req/s;`);
    }
    process.stdout.write("\n");
  }

  const rounds = [];
  for (let round = 1; round <= opt.rounds; round++) {
    for (const t of targets) {
      await sleep(500); // let the previous round's connections close
      const wd0 = t.workerdPid ? procCpuMs(t.workerdPid) : 0;
      const be0 = backend.pids.reduce((s, p) => s + procCpuMs(p), 0);
      const m0 = machineCpu();
      const r = await loadgen.run(runParams(t, opt.duration));
      const wd1 = t.workerdPid ? procCpuMs(t.workerdPid) : 0;
      const be1 = backend.pids.reduce((s, p) => s + procCpuMs(p), 0);
      const m1 = machineCpu();
      const served = r.ok + r.non2xx;
      const wallMs = m1.totalMs - m0.totalMs; // all CPUs
      const ourMs = (wd1 - wd0) + (be1 - be0) + r.loadgenCpuMs;
      const rec = {
        round,
        target: t.key,
        name: t.name,
        ...r,
        histogram: undefined,
        workerdCpuMs: t.workerdPid ? wd1 - wd0 : null,
        workerdCpuUsPerReq: t.workerdPid ? ((wd1 - wd0) * 1000) / served : null,
        // Share of one core the workerd process used during the round (~100%: it is saturated,
        // and throughput ≈ 1 / CPU per request).
        workerdUtilPct: t.workerdPid ? (100 * (wd1 - wd0)) / (r.durationS * 1000) : null,
        backendCpuUsPerReq: ((be1 - be0) * 1000) / served,
        loadgenCpuUsPerReq: (r.loadgenCpuMs * 1000) / served,
        machineBusyPct: (100 * (m1.busyMs - m0.busyMs)) / wallMs,
        // Busy CPU not spent in our processes (other jobs on the machine, kernel work not
        // charged to a process), as % of all CPUs: a noise indicator.
        otherBusyPct: (100 * Math.max(0, m1.busyMs - m0.busyMs - ourMs)) / wallMs,
      };
      rounds.push({ rec, hist: r.histogram });
      console.log(
        `round ${round} ${t.key} ${t.name.padEnd(17)} ${fmt(r.rps).padStart(7)} req/s  p50 ${fmt(r.latencyMs.p50, 2)} ms  p99 ${fmt(r.latencyMs.p99, 2)} ms` +
          (t.workerdPid ? `  workerd ${fmt(rec.workerdCpuUsPerReq)} µs/req, ${fmt(rec.workerdUtilPct)}% of a core` : "") +
          `  machine busy ${fmt(rec.machineBusyPct)}%` +
          (r.errors || r.non2xx || r.timeouts || r.mismatches ? `  ERRORS ${r.errors} non2xx ${r.non2xx} timeouts ${r.timeouts} mismatches ${r.mismatches}` : ""),
      );
    }
  }

  // ------------------------------------------------------------------------- summarise
  const summary = {};
  for (const t of targets) {
    const mine = rounds.filter((x) => x.rec.target === t.key);
    const merged = hdr.build({ bitBucketSize: 64, autoResize: true, lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
    for (const x of mine) merged.add(hdr.decodeFromCompressedBase64(x.hist));
    const served = mine.reduce((s, x) => s + x.rec.ok + x.rec.non2xx, 0);
    const sum = (k) => mine.reduce((s, x) => s + (x.rec[k] ?? 0), 0);
    summary[t.key] = {
      name: t.name,
      rounds: mine.length,
      rpsMedian: median(mine.map((x) => x.rec.rps)),
      rpsMin: Math.min(...mine.map((x) => x.rec.rps)),
      rpsMax: Math.max(...mine.map((x) => x.rec.rps)),
      // Latency over all rounds' responses (merged histogram, µs resolution).
      p50Ms: merged.getValueAtPercentile(50) / 1000,
      p99Ms: merged.getValueAtPercentile(99) / 1000,
      requests: served,
      errors: sum("errors"), non2xx: sum("non2xx"), timeouts: sum("timeouts"), mismatches: sum("mismatches"),
      workerdCpuUsPerReq: t.workerdPid ? (sum("workerdCpuMs") * 1000) / served : null,
      workerdUtilPct: t.workerdPid ? median(mine.map((x) => x.rec.workerdUtilPct)) : null,
      backendCpuUsPerReq: median(mine.map((x) => x.rec.backendCpuUsPerReq)),
      loadgenCpuUsPerReq: median(mine.map((x) => x.rec.loadgenCpuUsPerReq)),
      machineBusyPct: median(mine.map((x) => x.rec.machineBusyPct)),
      otherBusyPct: median(mine.map((x) => x.rec.otherBusyPct)),
    };
  }
  const paired = (num, den) =>
    median(Array.from({ length: opt.rounds }, (_, i) => {
      const n = rounds.find((x) => x.rec.round === i + 1 && x.rec.target === num).rec.rps;
      const d = rounds.find((x) => x.rec.round === i + 1 && x.rec.target === den).rec.rps;
      return n / d;
    }));
  const { a, b, c, d, e } = summary;
  const ratios = {
    edgegateOverPassthrough: c.rpsMedian / b.rpsMedian,
    edgegateOverPassthroughPairedMedian: paired("c", "b"),
    passthroughOverDirect: b.rpsMedian / a.rpsMedian,
    passthroughOverDirectPairedMedian: paired("b", "a"),
    edgegateOverDirect: c.rpsMedian / a.rpsMedian,
    addedP50MsEdgegateVsPassthrough: c.p50Ms - b.p50Ms,
    addedP99MsEdgegateVsPassthrough: c.p99Ms - b.p99Ms,
    addedWorkerdCpuUsPerReq: c.workerdCpuUsPerReq - b.workerdCpuUsPerReq,
    workerdCpuEdgegateOverPassthrough: c.workerdCpuUsPerReq / b.workerdCpuUsPerReq,
    ...(d && {
      logBaselineOverPassthrough: d.rpsMedian / b.rpsMedian,
      logBaselineAddedWorkerdCpuUsPerReq: d.workerdCpuUsPerReq - b.workerdCpuUsPerReq,
    }),
    ...(e && {
      // e vs b: the same work through workers-rs + wasm-bindgen's glue instead of plain JS.
      rustPassthroughOverPassthrough: e.rpsMedian / b.rpsMedian,
      rustPassthroughOverPassthroughPairedMedian: paired("e", "b"),
      rustPassthroughAddedWorkerdCpuUsPerReq: e.workerdCpuUsPerReq - b.workerdCpuUsPerReq,
      workerdCpuRustPassthroughOverPassthrough: e.workerdCpuUsPerReq / b.workerdCpuUsPerReq,
      // c vs e: what edgegate's own work costs on top of the glue.
      edgegateOverRustPassthrough: c.rpsMedian / e.rpsMedian,
      edgegateOverRustPassthroughPairedMedian: paired("c", "e"),
      edgegateAddedWorkerdCpuUsPerReqOverRustPassthrough: c.workerdCpuUsPerReq - e.workerdCpuUsPerReq,
      workerdCpuEdgegateOverRustPassthrough: c.workerdCpuUsPerReq / e.workerdCpuUsPerReq,
    }),
  };

  console.log("");
  console.log(
    table(
      ["target", "req/s (median)", "min–max", "p50 ms", "p99 ms", "workerd CPU µs/req", "workerd util", "backend µs/req", "loadgen µs/req", "machine busy", "other busy", "errors"],
      targets.map((t) => {
        const s = summary[t.key];
        return [
          `${t.key} ${s.name}`, fmt(s.rpsMedian), `${fmt(s.rpsMin)}–${fmt(s.rpsMax)}`, fmt(s.p50Ms, 2), fmt(s.p99Ms, 2),
          s.workerdCpuUsPerReq === null ? "-" : fmt(s.workerdCpuUsPerReq), s.workerdUtilPct === null ? "-" : `${fmt(s.workerdUtilPct)}%`, fmt(s.backendCpuUsPerReq), fmt(s.loadgenCpuUsPerReq),
          `${fmt(s.machineBusyPct)}%`, `${fmt(s.otherBusyPct)}%`, String(s.errors + s.non2xx + s.timeouts + s.mismatches),
        ];
      }),
      ["l"],
    ),
  );
  const pct = (x) => `${fmt(100 * x, 1)}%`;
  console.log("");
  console.log(`edgegate / pass-through throughput: ${pct(ratios.edgegateOverPassthrough)} (median of per-round ratios ${pct(ratios.edgegateOverPassthroughPairedMedian)})`);
  console.log(`pass-through / direct throughput:   ${pct(ratios.passthroughOverDirect)} (median of per-round ratios ${pct(ratios.passthroughOverDirectPairedMedian)})`);
  console.log(`edgegate / direct throughput:       ${pct(ratios.edgegateOverDirect)}`);
  console.log(`edgegate vs pass-through latency:   p50 ${ratios.addedP50MsEdgegateVsPassthrough >= 0 ? "+" : ""}${fmt(ratios.addedP50MsEdgegateVsPassthrough, 2)} ms, p99 ${ratios.addedP99MsEdgegateVsPassthrough >= 0 ? "+" : ""}${fmt(ratios.addedP99MsEdgegateVsPassthrough, 2)} ms`);
  console.log(`workerd CPU per request:            pass-through ${fmt(b.workerdCpuUsPerReq)} µs, edgegate ${fmt(c.workerdCpuUsPerReq)} µs (+${fmt(ratios.addedWorkerdCpuUsPerReq)} µs, ×${fmt(ratios.workerdCpuEdgegateOverPassthrough, 2)})`);
  if (d) console.log(`pass-through+log / pass-through:    ${pct(ratios.logBaselineOverPassthrough)} throughput, +${fmt(ratios.logBaselineAddedWorkerdCpuUsPerReq)} µs workerd CPU per request (cost of one access-log line)`);
  if (e) {
    const signed = (x) => `${x >= 0 ? "+" : ""}${fmt(x)}`;
    console.log(
      `rust pass-through / JS pass-through: ${pct(ratios.rustPassthroughOverPassthrough)} throughput (median of per-round ratios ${pct(ratios.rustPassthroughOverPassthroughPairedMedian)}); ` +
        `workerd CPU per request ${fmt(e.workerdCpuUsPerReq)} vs ${fmt(b.workerdCpuUsPerReq)} µs (${signed(ratios.rustPassthroughAddedWorkerdCpuUsPerReq)} µs, ×${fmt(ratios.workerdCpuRustPassthroughOverPassthrough, 2)}): the workers-rs + wasm-bindgen glue`,
    );
    console.log(
      `edgegate / rust pass-through:        ${pct(ratios.edgegateOverRustPassthrough)} throughput (median of per-round ratios ${pct(ratios.edgegateOverRustPassthroughPairedMedian)}); ` +
        `workerd CPU per request ${fmt(c.workerdCpuUsPerReq)} vs ${fmt(e.workerdCpuUsPerReq)} µs (${signed(ratios.edgegateAddedWorkerdCpuUsPerReqOverRustPassthrough)} µs, ×${fmt(ratios.workerdCpuEdgegateOverRustPassthrough, 2)}): edgegate's own work`,
    );
  }
  console.log(`edgegate ≥ 90% of pass-through throughput: ${ratios.edgegateOverPassthrough >= 0.9 ? "YES" : "NO"}`);
  if (a.rpsMedian < 1.5 * b.rpsMedian) console.log("WARNING: direct is not well above pass-through: the backend or the load tool may be the bottleneck.");
  const totalErrors = Object.values(summary).reduce((s, x) => s + x.errors + x.non2xx + x.timeouts + x.mismatches, 0);
  if (totalErrors) console.log(`WARNING: ${totalErrors} failed requests (see JSON)`);

  const result = {
    kind: "edgegate-load-comparison",
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    method:
      "workerd serve (same binary) with generated capnp configs, one process per worker; autocannon in a child process; " +
      `node:http cluster backend; interleaved rounds ${targets.map((t) => t.key).join(",")}; CPU from /proc/<pid>/stat utime+stime`,
    options: { ...opt, outDir: undefined, requestPath: REQUEST_PATH },
    env: { ...env, loadavgAtEnd: os.loadavg().map((x) => +x.toFixed(2)), clkTck: CLK_TCK },
    targets: Object.fromEntries(targets.map((t) => [t.key, { name: t.name, url: t.url }])),
    summary,
    ratios,
    rounds: rounds.map((x) => x.rec),
  };
  fs.mkdirSync(opt.outDir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, "-");
  const outFile = path.join(opt.outDir, `load-${stamp}.json`);
  fs.writeFileSync(outFile, JSON.stringify(result, null, 2) + "\n");
  fs.copyFileSync(outFile, path.join(opt.outDir, "load-latest.json"));
  console.log(`\nJSON: ${path.relative(process.cwd(), outFile) || outFile} (also load-latest.json)`);
}

try {
  await main();
  await cleanupAndExit(0);
} catch (e) {
  if (!isCleaningUp()) {
    console.error(e?.stack || e);
    await cleanupAndExit(1, "error");
  }
}
