// (b) The baseline: a plain JavaScript pass-through worker. Rewrites the request URL to the
// backend (env.BACKEND, e.g. "http://127.0.0.1:9100") keeping path and query, forwards method,
// headers and body, and returns the backend's response as it is (streamed, not buffered).
//
// With env.LOG === "1" (run.mjs --log-baseline, target d) it also writes one JSON line per
// request with console.log, shaped and sized like edgegate's access-log line, to measure what
// that logging alone costs in workerd.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const target = new URL(url.pathname + url.search, env.BACKEND);
    if (env.LOG !== "1") return fetch(new Request(target, request));
    const start = Date.now();
    const response = await fetch(new Request(target, request));
    console.log(
      JSON.stringify({
        kind: "access",
        time: new Date(start).toISOString(),
        request_id: crypto.randomUUID().replaceAll("-", ""),
        trace_id: crypto.randomUUID().replaceAll("-", ""),
        method: request.method,
        host: url.host,
        path: url.pathname,
        client_ip: null,
        route: "get-item",
        api: "bench",
        version: "v1",
        environment: "default",
        status: response.status,
        error_code: null,
        error_detail: null,
        bytes_in: null,
        bytes_out: Number(response.headers.get("content-length")) || null,
        upstream: env.BACKEND,
        attempts: 1,
        gateway_ms: 0,
        backend_ms: Date.now() - start,
        config_version: "bench-1",
      }),
    );
    return response;
  },
};
