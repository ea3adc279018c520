#!/usr/bin/env node
// Where does the worker's time go? Runs the pass-through worker (b) and edgegate (c) under
// `workerd serve` with the V8 inspector on, drives each with the same load as run.mjs, and
// records a V8 CPU profile (Chrome DevTools protocol, Profiler domain) of the worker's isolate
// during the load. Prints the self time per request by category (wasm, wasm-bindgen JS glue,
// runtime built-ins such as fetch/console.log, GC, native "(program)") and the top functions;
// writes the .cpuprofile files (open them in Chrome DevTools → Performance) and a JSON summary
// under bench/out/.
//
// The profiler and the attached inspector add overhead: use the absolute numbers from run.mjs
// and the shares from this script.
//
//   node bench/load/profile.mjs [--duration 8] [--connections 10] [--interval 100] [--top 25]

import fs from "node:fs";
import path from "node:path";
import {
  ROOT, REQUEST_PATH, runMain, parseBenchArgs, numOption, outDirOption, procCpuMs, startBackend, writeWorkerdConfigs,
  startWorkerd, startLoadGen, inspector, check, fmt, table, ensureBuild, BACKEND_BODY,
} from "./lib.mjs";

function options() {
  const values = parseBenchArgs(["duration", "connections", "out"], {
    interval: { type: "string" },
    top: { type: "string" },
  });
  return {
    duration: numOption(values.duration ?? process.env.BENCH_DURATION, 8, 1, 120, "--duration"),
    connections: Math.round(numOption(values.connections ?? process.env.BENCH_CONNECTIONS, 10, 1, 1000, "--connections")),
    interval: Math.round(numOption(values.interval, 100, 10, 10_000, "--interval")),
    top: Math.round(numOption(values.top, 25, 1, 500, "--top")),
    outDir: outDirOption(values),
  };
}

function category(frame) {
  const { functionName: fn, url } = frame;
  if (fn === "(idle)") return "idle";
  if (fn === "(program)") return "native (program)";
  if (fn === "(garbage collector)") return "GC";
  if (fn === "(root)") return "root";
  if (url.startsWith("wasm://")) return "wasm (edgegate)";
  if (url.endsWith("index.js")) return "JS glue (wasm-bindgen index.js)";
  if (url.includes("passthrough-worker")) return "JS (pass-through worker)";
  return "runtime built-ins";
}

// Operations worth naming, matched on the function names in a sample's stack. wasm-bindgen's
// JS shims are named __wbg_<method>_<hash>; match the prefix so a rebuild does not break this.
// "inclusive": a sample counts if any frame on its stack matches (the operation and what it
// calls); "self": only the sampled frame itself. Markers overlap; do not add them up.
const MARKERS = [
  { label: "console.log (edgegate: access-log line)", mode: "inclusive", re: /^__wbg_log_|^log$/ },
  { label: "upstream fetch() call (sync part)", mode: "inclusive", re: /^__wbg_fetch_|^fetch$/ },
  { label: "Headers: build/iterate/append via JS", mode: "inclusive", re: /^__wbg_(append|next|done|value|iterator|headers)_|convert::header_list|convert::js_headers|^Headers$/ },
  { label: "new Request / new Response", mode: "inclusive", re: /^Request$|^Response$|^__wbg_new_with_/ },
  { label: "timeout timer + AbortController", mode: "inclusive", re: /setTimeout|clearTimeout|AbortController|^abort$|worker::delay|Delay/ },
  { label: "request.cf getter", mode: "inclusive", re: /^__wbg_cf_/ },
  { label: "random id + clock", mode: "inclusive", re: /Random>::fill|getRandomValues|Clock>::now_ms|^__wbg_new_0_|getTime/ },
  { label: "async glue: futures/promises/microtasks (self)", mode: "self", re: /queueMicrotask|js_sys::futures|wasm_bindgen_futures|closures::_::invoke|^__wbg_then_|^__wbg_resolve_|^then$|^__wbg_new_typed|Promise|cb_unref|destroy_closure/ },
  { label: "wasm allocator (self)", mode: "self", re: /dlmalloc|__rdl_|__rust_alloc|__rust_dealloc|__rust_realloc|__wbindgen_malloc|__wbindgen_realloc|__wbindgen_free|externref_table/ },
  { label: "JS <-> wasm transitions (self)", mode: "self", re: /^wasm-to-js$|^js-to-wasm/ },
];

function markerTimes(profile, selfUs, requests) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  return MARKERS.map((m) => {
    let us = 0;
    for (const [id, t] of selfUs) {
      let hit = false;
      if (m.mode === "self") hit = m.re.test(byId.get(id).callFrame.functionName);
      else for (let q = id, k = 0; q !== undefined && k < 200 && !hit; q = parent.get(q), k++) hit = m.re.test(byId.get(q).callFrame.functionName);
      if (hit) us += t;
    }
    return { label: m.label, mode: m.mode, usPerReq: us / requests };
  });
}

/** Self time per function and per category, in µs per request. */
function analyse(profile, requests) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map();
  // samples[i] ran for timeDeltas[i + 1] (the delta to the next sample).
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + dt);
  }
  const fns = new Map();
  const cats = new Map();
  let total = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    const f = node.callFrame;
    const cat = category(f);
    total += us;
    cats.set(cat, (cats.get(cat) ?? 0) + us);
    const key = `${f.functionName || "(anonymous)"}  [${cat === "runtime built-ins" ? "built-in" : cat === "wasm (edgegate)" ? "wasm" : (f.url.split("/").pop() || "-") + ":" + (f.lineNumber + 1)}]`;
    fns.set(key, { name: key, category: cat, us: (fns.get(key)?.us ?? 0) + us });
  }
  const perReq = (us) => us / requests;
  return {
    profiledMs: total / 1000,
    markers: markerTimes(profile, selfUs, requests),
    categories: [...cats].map(([name, us]) => ({ name, usPerReq: perReq(us), share: us / total })).sort((a, b) => b.usPerReq - a.usPerReq),
    functions: [...fns.values()].map((x) => ({ ...x, usPerReq: perReq(x.us), share: x.us / total })).sort((a, b) => b.us - a.us),
  };
}

async function main() {
  const opt = options();
  ensureBuild();
  console.log(`profiling pass-through and edgegate under workerd with the inspector: ${opt.duration} s each, ${opt.connections} connections, sampling every ${opt.interval} µs`);
  const backend = await startBackend(1);
  const configs = writeWorkerdConfigs(path.join(opt.outDir, "profile-work"), backend.url);
  const targets = [
    { key: "b", name: "pass-through", wd: await startWorkerd("passthrough", configs.passthrough, { inspector: true }) },
    { key: "c", name: "edgegate", wd: await startWorkerd("edgegate", configs.edgegate, { inspector: true }) },
  ];
  const loadgen = await startLoadGen();
  const params = (t, duration) => ({ url: t.wd.url + REQUEST_PATH, connections: opt.connections, duration, timeout: 10, expectBody: BACKEND_BODY });
  for (const t of targets) {
    await check({ ...t, url: t.wd.url + REQUEST_PATH });
    await loadgen.run(params(t, 3)); // warm-up, not profiled
  }

  fs.mkdirSync(opt.outDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const results = {};
  for (const t of targets) {
    const cdp = await inspector(`ws://127.0.0.1:${t.wd.inspectorPort}/main`);
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: opt.interval });
    const cpu0 = procCpuMs(t.wd.pid);
    await cdp.send("Profiler.start");
    const r = await loadgen.run(params(t, opt.duration));
    const { profile } = await cdp.send("Profiler.stop");
    const cpu1 = procCpuMs(t.wd.pid);
    cdp.close();
    const served = r.ok + r.non2xx;
    const file = path.join(opt.outDir, `profile-${t.name}-${stamp}.cpuprofile`);
    fs.writeFileSync(file, JSON.stringify(profile));
    const a = analyse(profile, served);
    results[t.key] = { name: t.name, rps: r.rps, requests: served, errors: r.errors + r.non2xx + r.timeouts + r.mismatches, workerdCpuUsPerReq: ((cpu1 - cpu0) * 1000) / served, cpuprofile: path.relative(ROOT, file), ...a };
    console.log(`\n== ${t.key} ${t.name}: ${fmt(r.rps)} req/s while profiling, workerd process CPU ${fmt(results[t.key].workerdCpuUsPerReq)} µs/req, isolate thread profiled ${fmt(a.profiledMs)} ms`);
    console.log(table(["category", "µs/req (self)", "share"], a.categories.map((c) => [c.name, fmt(c.usPerReq, 1), `${fmt(100 * c.share, 1)}%`]), ["l"]));
    console.log("");
    console.log(table(["operation", "µs/req"], a.markers.filter((m) => m.usPerReq >= 0.05).map((m) => [m.label, fmt(m.usPerReq, 1)]), ["l"]));
    console.log("");
    console.log(table(["function (self time)", "µs/req", "share"], a.functions.slice(0, opt.top).map((f) => [f.name.length > 110 ? f.name.slice(0, 107) + "…" : f.name, fmt(f.usPerReq, 1), `${fmt(100 * f.share, 1)}%`]), ["l"]));
    console.log(`profile: ${results[t.key].cpuprofile}`);
  }
  const out = path.join(opt.outDir, `profile-${stamp}.json`);
  fs.writeFileSync(out, JSON.stringify({ kind: "edgegate-load-profile", options: { ...opt, outDir: undefined }, results }, null, 2) + "\n");
  console.log(`\nJSON: ${path.relative(process.cwd(), out)}`);
}

await runMain(main);
