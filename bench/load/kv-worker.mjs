// An in-memory KV namespace for workerd: the service behind a `kvNamespace` binding. workerd
// turns `env.NS.get(key)` into `GET /<url-encoded key>?urlencoded=true` to this service (the
// protocol miniflare's namespace.worker.js implements); 200 with the value, 404 when missing.
// Read-only: the entries come from the seed module written by run.mjs.
import seed from "./kv-seed.json";

const entries = new Map(Object.entries(seed));

export default {
  async fetch(request) {
    const url = new URL(request.url);
    let key = url.pathname.slice(1);
    if (url.searchParams.get("urlencoded")?.toLowerCase() === "true") key = decodeURIComponent(key);
    if (request.method !== "GET") return new Response("read-only bench KV", { status: 405 });
    if (key === "") {
      // list(): keys only, no pagination (the gateway does not list).
      const keys = [...entries.keys()].map((name) => ({ name }));
      return Response.json({ keys, list_complete: true, cacheStatus: null });
    }
    const value = entries.get(key);
    if (value === undefined) return new Response("Not Found", { status: 404 });
    return new Response(value);
  },
};
