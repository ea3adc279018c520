// Why a scenario does not (yet) pass on Spin, in one place. Each constant is the reason string
// of a `{ skip: onSpin && X }` (a permanent platform difference: the scenario cannot be
// expressed there) or a `{ todo: onSpin && X }` (a missing feature or a bug of the Spin build
// or the core: the test still runs and reports, and starts passing once it is fixed).

// --- skip: permanent platform differences ------------------------------------------------

export const NO_CRON =
  "spin: the cron's config refresh has no counterpart to test: every Spin request is a fresh instance that reads " +
  "the config pointer itself, and the lazy tick (the cron's stand-in, fired by gw.scheduled()) is idle when there " +
  "is neither a Registry nor an identity provider to serve";

export const WASI_HIDES_CONNECTION =
  "spin: wasi:http (wasmtime-wasi-http, in Spin as in the test host) removes the Connection header before the " +
  "component sees it, in requests and in backend responses, so the gateway cannot drop the fields it names";

export const IPV4_CLIENTS_ONLY =
  "spin: the client address is the socket's peer, and the test host listens on 127.0.0.1 only (no IPv6 client)";

export const NO_CONTROL_OBJECT =
  "spin: there is no Control Durable Object to write into directly (the overrides are one Redis or key-value " +
  "value); every request is a fresh instance that reads them, which the IP-block test covers";


// (skip / diagnostic) Counter objects:
export const NO_COUNTER_OBJECT =
  "spin: no rate-limit counter Durable Object to read directly (the counters are Redis values the core's " +
  "CounterCall::apply reads and writes in wasm)";
export const NO_STAND_IN_COUNTERS =
  "spin: no stand-in counter class (a second Worker's Durable Object); the Spin equivalent, an unreachable Redis, " +
  "runs in the test beside it";
export const KV_COUNTERS_WITHOUT_REDIS =
  "spin: there is no 'no counter store' case: without redis_address the counters live in key-value " +
  "(approximate under concurrency, spin/README.md), so requests are counted, not failed; the unreachable " +
  "Redis case tests on_error there";

// (todo) The Registry sync on Spin:

// (skip) request.cf:
export const NO_CLIENT_GEO =
  "spin: no request.cf — the client's country (ClientGeo) is a Cloudflare edge fact Spin does not have";

// (skip) Client certificates:
export const NO_CLIENT_CERTIFICATES =
  "spin: the component cannot see client certificates (no request.cf.tlsClientAuth; Spin terminates TLS without " +
  "passing the peer certificate on), so an `mtls` config is refused there — the Spin-only test asserts that";
