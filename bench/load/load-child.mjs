// The load generator, in its own process so it shares no event loop with the orchestrator,
// the backend or anything else. run.mjs forks it once and sends one message per run:
//   {type:"run", id, url, connections, duration, expectBody, timeout}
// and gets back {type:"result", id, ...}. Optional (auth.mjs):
//   headers: {name: value}     the same extra headers on every request
//   tokensFile: path           a JSON array of tokens: every request carries the next one as
//                              `Authorization: Bearer <token>` (autocannon `requests` with a
//                              `setupRequest`, so each request is rebuilt), cycling through the
//                              list in order, one cursor shared by all connections
//   tokenCursor: name          the cursor to continue (default: tokensFile); it persists across
//                              runs, so successive runs against the same worker go on cycling
//                              instead of starting over (which would repeat recent tokens)
//   overallRate: n             at most n requests/s over all connections (autocannon overallRate;
//                              profile-auth.mjs --rate)
// The result then also has tokensSent (requests built with a token).
// Uses autocannon's programmatic API; latency is recorded from autocannon's per-response event
// into an HDR histogram with microsecond resolution (autocannon's own histogram has 1 ms
// resolution, too coarse for sub-ms latency).
import fs from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const autocannon = require("autocannon");
const hdr = require("hdr-histogram-js");

function newHistogram() {
  return hdr.build({
    bitBucketSize: 64,
    autoResize: true,
    lowestDiscernibleValue: 1,
    highestTrackableValue: 120_000_000,
    numberOfSignificantValueDigits: 3,
  });
}

const tokenLists = new Map(); // tokensFile -> array of tokens
const cursors = new Map(); // tokenCursor -> next index

function tokenRequests(msg) {
  let tokens = tokenLists.get(msg.tokensFile);
  if (!tokens) {
    tokens = JSON.parse(fs.readFileSync(msg.tokensFile, "utf8")).map((t) => `Bearer ${t}`);
    if (!tokens.length) throw new Error(`no tokens in ${msg.tokensFile}`);
    tokenLists.set(msg.tokensFile, tokens);
  }
  const cursor = msg.tokenCursor ?? msg.tokensFile;
  const counter = { sent: 0 };
  // One request template; autocannon rebuilds it (calling setupRequest) before every request,
  // and every connection shares this closure, hence the cursor.
  const setupRequest = (req) => {
    const i = cursors.get(cursor) ?? 0;
    cursors.set(cursor, (i + 1) % tokens.length);
    counter.sent += 1;
    req.headers.authorization = tokens[i];
    return req;
  };
  return { requests: [{ setupRequest }], counter };
}

async function runOnce(msg) {
  const tokenSetup = msg.tokensFile ? tokenRequests(msg) : null;
  const hist = newHistogram();
  let ok = 0;
  let other = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const result = await new Promise((resolve, reject) => {
    const inst = autocannon(
      {
        url: msg.url,
        connections: msg.connections,
        duration: msg.duration,
        pipelining: 1,
        timeout: msg.timeout,
        // autocannon refuses expectBody with `requests`; verifyBody is the same check.
        ...(msg.expectBody && !tokenSetup && { expectBody: msg.expectBody }),
        ...(msg.expectBody && tokenSetup && { verifyBody: (body) => body === msg.expectBody }),
        ...(msg.headers && { headers: msg.headers }),
        // Open-ish load at a fixed rate (requests/s over all connections) instead of as fast as
        // possible: profile-auth.mjs --rate, so compared targets see the same arrival pattern.
        ...(msg.overallRate && { overallRate: msg.overallRate }),
        ...(tokenSetup && { requests: tokenSetup.requests }),
      },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
    inst.on("response", (_client, statusCode, _bytes, responseTimeMs) => {
      if (statusCode >= 200 && statusCode < 300) {
        ok += 1;
        hist.recordValue(Math.max(1, Math.round(responseTimeMs * 1000)));
      } else {
        other += 1;
      }
    });
  });
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const durationS = result.duration || wallS;
  const lat = (q) => hist.getValueAtPercentile(q) / 1000;
  const out = {
    type: "result",
    id: msg.id,
    durationS,
    ok,
    non2xx: other,
    rps: ok / durationS,
    errors: result.errors,
    timeouts: result.timeouts,
    mismatches: result.mismatches,
    latencyMs: {
      p50: lat(50),
      p90: lat(90),
      p99: lat(99),
      max: hist.maxValue / 1000,
      mean: hist.mean / 1000,
    },
    // Encoded so the orchestrator can merge rounds into one histogram per target.
    histogram: hdr.encodeIntoCompressedBase64(hist),
    loadgenCpuMs: (cpu.user + cpu.system) / 1000,
    ...(tokenSetup && { tokensSent: tokenSetup.counter.sent }),
  };
  hist.destroy?.();
  return out;
}

process.on("disconnect", () => process.exit(0));
process.on("message", async (msg) => {
  if (msg?.type !== "run") return;
  try {
    process.send(await runOnce(msg));
  } catch (e) {
    process.send({ type: "error", id: msg.id, error: String(e?.stack || e) });
  }
});
process.send({ type: "ready" });
