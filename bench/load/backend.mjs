// The benchmark backend: a minimal node:http server on 127.0.0.1 that answers every request
// with the same small JSON body. Runs as a node:cluster of N processes so it is not the
// bottleneck. Started by run.mjs with child_process.fork; options come as argv:
//   node backend.mjs <port> <processes>
// The primary reports {type:"ready", port, pids} over IPC once every process listens, and
// everything exits when the parent goes away (IPC disconnect) or on SIGTERM/SIGINT.
import cluster from "node:cluster";
import http from "node:http";

const port = Number(process.argv[2]);
const procs = Math.max(1, Number(process.argv[3] || 1));
if (!Number.isInteger(port) || port <= 0) throw new Error(`backend: bad port ${process.argv[2]}`);

const BODY = JSON.stringify({ id: "42", name: "bench item", price: 9.5, tags: ["a", "b"], ok: true });

if (cluster.isPrimary) {
  const pids = [];
  let listening = 0;
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const w of Object.values(cluster.workers)) w?.process.kill("SIGTERM");
    // Bounded: give the workers a moment, then leave regardless.
    setTimeout(() => process.exit(0), 500).unref();
  };
  process.on("disconnect", stop);
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  cluster.on("exit", (w, code, signal) => {
    if (!stopping) {
      console.error(`backend worker ${w.process.pid} died (${code ?? signal}); stopping`);
      stop();
    }
  });
  cluster.on("listening", () => {
    listening += 1;
    if (listening === procs) process.send?.({ type: "ready", port, pids: [process.pid, ...pids] });
  });
  for (let i = 0; i < procs; i++) pids.push(cluster.fork().process.pid);
} else {
  const body = Buffer.from(BODY);
  const headers = { "content-type": "application/json", "content-length": String(body.length) };
  const server = http.createServer((req, res) => {
    // Drain any request body (the benchmark sends none), then answer.
    req.resume();
    res.writeHead(200, headers);
    res.end(body);
  });
  // Longer than any round, so keep-alive connections from workerd and the load tool are not
  // closed under them (a close racing a reused connection would show up as errors).
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 130_000;
  server.listen(port, "127.0.0.1");
  process.on("disconnect", () => process.exit(0));
}
