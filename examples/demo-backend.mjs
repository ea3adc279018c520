// The demo backend for `scripts/dev.sh`: four tiny services on 127.0.0.1 that answer every
// request with JSON describing what they received, so you can see what edgegate forwards
// (path rewrite, forwarding headers, request id, traceparent). Ports match
// examples/demo-config.json. Stops on SIGINT/SIGTERM.
import http from "node:http";

const services = [
  [9101, "users-service-v1"],
  [9102, "users-service-v2-a"],
  [9103, "users-service-v2-b"],
  [9104, "orders-service-v3"],
];

const servers = services.map(([port, name]) =>
  http
    .createServer((req, res) => {
      let bytes = 0;
      req.on("data", (chunk) => (bytes += chunk.length));
      req.on("end", () => {
        const body = JSON.stringify(
          { service: name, method: req.method, url: req.url, body_bytes: bytes, headers: req.headers },
          null,
          2,
        );
        res.writeHead(200, { "content-type": "application/json", "x-served-by": name });
        res.end(body + "\n");
      });
    })
    .listen(port, "127.0.0.1", () => console.log(`demo backend ${name} on http://127.0.0.1:${port}`)),
);

const stop = () => {
  for (const s of servers) s.close();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
