// Why a scenario does not (yet) pass on Spin, in one place. Each constant is the reason string
// of a `{ skip: onSpin && X }` (a permanent platform difference: the scenario cannot be
// expressed there) or a `{ todo: onSpin && X }` (a missing feature or a bug of the Spin build
// or the core: the test still runs and reports, and starts passing once it is fixed).

// --- todo: missing on Spin, to be fixed -------------------------------------------------

export const RR_POSITION =
  "spin: round robin starts at the first instance on every request (a fresh instance per request keeps no position)";

export const GET_FAILOVER =
  "spin: a request without Content-Length (GET) is never failed over: the adapter hands every body over as a stream " +
  "(wasi:http hides Transfer-Encoding, so 'no body' and a chunked body look alike) and the core cannot replay a stream";

// --- skip: permanent platform differences ------------------------------------------------

export const NO_CRON =
  "spin: no cron — Spin's HTTP trigger has no scheduled() handler (the Registry sync runs through the admin API there)";

export const WASI_HIDES_CONNECTION =
  "spin: wasi:http (wasmtime-wasi-http, in Spin as in the test host) removes the Connection header before the " +
  "component sees it, in requests and in backend responses, so the gateway cannot drop the fields it names";

export const IPV4_CLIENTS_ONLY =
  "spin: the client address is the socket's peer, and the test host listens on 127.0.0.1 only (no IPv6 client)";

// (todo) Config in key-value without a last good version:
export const NO_LAST_GOOD_CONFIG =
  "spin: a fresh instance per request has no last good config: a pointer to an invalid, missing or non-JSON " +
  "version answers 503 no_config instead of serving the previous version (the core needs a last-good marker in key-value)";

export const ACTIVATION_EVERY_REQUEST =
  "spin: config_activated is logged on every request with previous: null (a fresh instance per request; " +
  "the core should log it only when the version differs from a key-value marker)";

export const NO_CONTROL_OBJECT =
  "spin: there is no Control Durable Object to write into directly (the overrides are one Redis or key-value " +
  "value); every request is a fresh instance that reads them, which the IP-block test covers";

// (todo) Approximate rate limits (shared/src/ratelimit Limiter leases):
export const APPROX_LEASES =
  "spin: approximate rate limits lease `lease` units per request and the unused ones die with the instance " +
  "(no refund): a limit admits about limit / lease requests";

// (skip / diagnostic) Counter objects:
export const NO_COUNTER_OBJECT =
  "spin: no rate-limit counter Durable Object to read directly (the counters are Redis values the core's " +
  "CounterCall::apply reads and writes in wasm)";
export const NO_STAND_IN_COUNTERS =
  "spin: no stand-in counter class (a second Worker's Durable Object); the Spin equivalent, an unreachable Redis, " +
  "runs in the test beside it";

// (todo) The Registry sync on Spin:

export const HTTP_BUFFERS_WHOLE_BODY =
  "spin: the adapter's Http::fetch_buffered (spin_sdk::http::send into a buffered Response) reads the whole answer " +
  "before the size cap is checked: a 256 MB chunked Registry answer is read to its end (and held in wasm memory)";

// (todo) ABAC:
export const NO_CEDAR =
  "spin: the component is built without the core's `cedar` feature, so an ABAC config is refused " +
  "(config_rejected: 'this build has no Cedar support'); the Spin-only test asserts that refusal";

// (skip) request.cf:
export const NO_CLIENT_GEO =
  "spin: no request.cf — the client's country (ClientGeo) is a Cloudflare edge fact Spin does not have";

export const NO_LAST_GOOD_SNAPSHOT =
  "spin: a fresh instance per request has no last good Registry snapshot: a corrupted snapshot under the manifest " +
  "leaves nothing to serve (snapshot_rejected with serving null) instead of keeping the previous one";

// (skip) Client certificates:
export const NO_CLIENT_CERTIFICATES =
  "spin: the component cannot see client certificates (no request.cf.tlsClientAuth; Spin terminates TLS without " +
  "passing the peer certificate on), so an `mtls` config is refused there — the Spin-only test asserts that";
