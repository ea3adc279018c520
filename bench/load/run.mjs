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

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  BUILD, RS_BUILD, REQUEST_PATH, BACKEND_BODY, CLK_TCK, runMain, boundRun, parseBenchArgs, numFlag, backendProcsOption,
  outDirOption, git, benchEnv, envLine, median, sha256, startBackend, writeWorkerdConfigs, startWorkerd, startLoadGen,
  warmUp, runRounds, summariseRounds, failed, warnFailed, writeResult, check, fmt, table, ensureBuild, buildRustPassthrough,
} from "./lib.mjs";

// ---------------------------------------------------------------------------------- options

function options() {
  const values = parseBenchArgs(["duration", "connections", "rounds", "warmup", "backend-procs", "out", "help"], {
    "log-baseline": { type: "boolean" },
    "rust-baseline": { type: "boolean" },
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
  return {
    duration: numFlag(values, "duration", "BENCH_DURATION", 10, 1, 600),
    connections: Math.round(numFlag(values, "connections", "BENCH_CONNECTIONS", 10, 1, 1000)),
    rounds: Math.round(numFlag(values, "rounds", "BENCH_ROUNDS", 3, 1, 50)),
    warmup: numFlag(values, "warmup", "BENCH_WARMUP", 3, 0, 120),
    backendProcs: backendProcsOption(values),
    logBaseline: Boolean(values["log-baseline"]) || process.env.BENCH_LOG_BASELINE === "1",
    rustBaseline: Boolean(values["rust-baseline"]) || process.env.BENCH_RUST_BASELINE === "1",
    outDir: outDirOption(values),
  };
}

async function main() {
  const opt = options();
  const startedAt = new Date();
  const nTargets = 3 + (opt.logBaseline ? 1 : 0) + (opt.rustBaseline ? 1 : 0);
  const estimateS = opt.rounds * nTargets * (opt.duration + 1.5) + nTargets * opt.warmup + 15;
  boundRun(estimateS);

  ensureBuild();
  if (opt.rustBaseline) buildRustPassthrough();

  const env = {
    ...benchEnv(),
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
  console.log(envLine(env));

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

  await warmUp(loadgen, targets, runParams, opt.warmup, (t) => t.name);
  const rounds = await runRounds({
    rounds: opt.rounds, targets, loadgen, backendPids: backend.pids, params: runParams, duration: opt.duration, pauseMs: 500, pad: [17, 7],
  });
  const summary = summariseRounds(rounds, targets);

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
          `${fmt(s.machineBusyPct)}%`, `${fmt(s.otherBusyPct)}%`, String(failed(s)),
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
  warnFailed(summary);

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
  writeResult(opt.outDir, "load", startedAt, result);
}

await runMain(main);
