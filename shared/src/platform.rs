//! The platform traits: everything the core asks of the host (Workers, Spin, or the fake).
//!
//! "Name the data, let the driver fetch it, then decide": stages never do I/O; the pipeline
//! driver calls these traits. No `Send` bounds: both hosts are single-threaded.
#![allow(async_fn_in_trait)]

use crate::headers::{HeaderEdits, HeaderList, HeaderRead};

/// Wall-clock time in milliseconds since the Unix epoch, and waiting.
pub trait Clock {
    /// Now. On Workers this is `Date.now()`, which advances only across I/O in production.
    fn now_ms(&self) -> u64;

    /// Waits about `ms` milliseconds on a timer of the current request (used to poll shared
    /// state another request is filling in, never to delay a response on purpose).
    async fn sleep_ms(&self, ms: u64);
}

/// Randomness for ids (request ids, trace ids) and random load balancing.
pub trait Random {
    /// Fills `buf` with random bytes. Must not fail (hosts use their CSPRNG).
    fn fill(&self, buf: &mut [u8]);

    /// A uniform random `u64`.
    fn next_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
}

/// Structured log output: one JSON object per line (Workers Logs / Logpush, Spin stdout).
pub trait Log {
    /// Writes one line (already JSON).
    fn log_line(&self, line: &str);
}

/// A failure of the platform itself (KV unreachable, body stream broken), with detail for
/// the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformError(pub String);

impl std::fmt::Display for PlatformError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Read access to the key-value store that holds config (Workers KV, Spin key-value).
pub trait Kv {
    /// The value of `key` as text, `None` if absent.
    ///
    /// Errors: the store could not be reached.
    async fn get_text(&self, key: &str) -> Result<Option<String>, PlatformError>;

    /// The value of `key` as bytes, `None` if absent (binary values: snapshot shards).
    ///
    /// Errors: the store could not be reached.
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, PlatformError>;

    /// Stores `value` as text under `key`, replacing what was there. Writers (the Registry
    /// sync, admin activation) only; requests never write.
    ///
    /// Workers KV takes at most one write per second per key, and a write reaches other
    /// locations eventually (up to 60 s): a reader elsewhere may still see the old value, or
    /// the new value of one key before that of another (so write what a key refers to first).
    ///
    /// Errors: the store could not be reached or refused the write (rate limit, value size).
    async fn put_text(&self, key: &str, value: &str) -> Result<(), PlatformError>;

    /// Stores binary `value` under `key` (snapshot shards); as [`Kv::put_text`].
    ///
    /// Errors: the store could not be reached or refused the write.
    async fn put_bytes(&self, key: &str, value: &[u8]) -> Result<(), PlatformError>;

    /// Removes `key`; removing an absent key succeeds. Like writes, deletes reach other
    /// locations eventually: delete only what no reader can still need.
    ///
    /// Errors: the store could not be reached.
    async fn delete(&self, key: &str) -> Result<(), PlatformError>;
}

/// A request the core wants sent to a backend instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// Method, as the client sent it.
    pub method: String,
    /// Absolute URL of the instance, path and query.
    pub url: String,
    /// The headers to send, as edits to the client's request headers (hop-by-hop and
    /// spoofable fields, `host` and `content-length` removed; forwarding and trace fields set).
    pub headers: HeaderEdits,
    /// The request body length when the client declared one.
    pub content_length: Option<u64>,
    /// Give up waiting for response headers after this long.
    pub timeout_ms: u64,
}

/// A backend's response head with its (unread) body. `H` is the host's header map.
#[derive(Debug)]
pub struct UpstreamResponse<B, H = HeaderList> {
    /// Status code.
    pub status: u16,
    /// Response headers as received (read through [`HeaderRead`], never copied whole).
    pub headers: H,
    /// The body, streamed through untouched.
    pub body: B,
}

/// Why an upstream attempt produced no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// The connection failed or broke before response headers (safe to retry for
    /// idempotent methods). Detail for the log.
    Connect(String),
    /// No response headers within the timeout (not retried: the backend may be working on it).
    Timeout,
    /// The host refused to build the request (a header value it does not accept): nothing was
    /// sent; the gateway answers 500 and does not fail over.
    Invalid(String),
}

/// Sending requests upstream. `Body` is the host's body type; the core never reads it, so
/// bodies stream through in both directions.
pub trait Upstream {
    /// The host's request/response body (a stream, bytes, or nothing).
    type Body;
    /// The host's response header map.
    type Headers: HeaderRead;

    /// Sends one request and waits for the response head, at most `req.timeout_ms` after the
    /// request body has been sent. `inbound` are the client's request headers, which
    /// `req.headers` edits (hosts that keep their own copy of them may ignore it).
    ///
    /// Errors: [`UpstreamError::Connect`] if no response head arrived because of the
    /// connection, [`UpstreamError::Timeout`] if the timeout passed first.
    async fn send(
        &self,
        inbound: &HeaderList,
        req: &UpstreamRequest,
        body: Self::Body,
    ) -> Result<UpstreamResponse<Self::Body, Self::Headers>, UpstreamError>;

    /// A copy of `body` that can be sent again, if the body is in memory (empty or
    /// buffered); `None` for a stream.
    fn try_clone_body(&self, body: &Self::Body) -> Option<Self::Body>;

    /// Reads a streamed body into memory so it can be replayed; at most `limit` bytes.
    ///
    /// Errors: the stream broke, or it is longer than `limit`.
    async fn buffer_body(&self, body: Self::Body, limit: u64) -> Result<Self::Body, PlatformError>;

    /// A body for a request that has none.
    fn empty_body(&self) -> Self::Body;
}

/// Signature verification for the asymmetric JWS algorithms (WebCrypto on Workers, in-wasm
/// code on Spin, native code in the fake platform). HMAC is verified inside the core.
pub trait Crypto {
    /// True if `signature` is `key`'s signature over `signing_input` with `alg`; false for a
    /// wrong signature. Hosts may cache the imported key under `key.cache_id`.
    ///
    /// Errors: the host cannot use the key (import failed) or has no such algorithm.
    async fn verify_signature(
        &self,
        alg: crate::auth::JwsAlgorithm,
        key: &crate::auth::PublicKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, PlatformError>;

    /// Signs `message` with the Ed25519 key of `seed` (minted tokens). `key_id` is a stable id
    /// of the key, under which hosts may cache its imported form.
    ///
    /// Errors: the host cannot use the key.
    async fn sign_ed25519(
        &self,
        key_id: &str,
        seed: &[u8; 32],
        message: &[u8],
    ) -> Result<Vec<u8>, PlatformError>;
}

/// A control-plane request (JWKS, discovery, introspection), its body read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body, if any.
    pub body: Option<Vec<u8>>,
    /// Give up after this long (whole exchange).
    pub timeout_ms: u64,
}

/// A control-plane response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: HeaderList,
    /// The body, read whole.
    pub body: Vec<u8>,
}

/// Control-plane HTTP: small requests whose responses the core reads whole. Redirects are
/// never followed (a 3xx is returned as it is): keys and tokens are only ever trusted from the
/// configured URL.
pub trait Http {
    /// Sends `req` and reads the response body, at most `max_body` bytes.
    ///
    /// Errors: connection failure, timeout, or a body longer than `max_body`.
    async fn fetch_buffered(
        &self,
        req: &HttpRequest,
        max_body: usize,
    ) -> Result<HttpResponse, PlatformError>;
}

/// Deployment secrets (Worker secrets, Spin variables).
pub trait Secrets {
    /// The secret's value, `None` if it is not set.
    fn secret(&self, name: &str) -> Option<String>;
}

/// A cache shared by the isolates of one location (the Cache API on Workers): control-plane
/// data such as JWKS is fetched once per location, not once per isolate.
pub trait SharedCache {
    /// The value stored under `key`, if present and not expired.
    ///
    /// Errors: the cache could not be read (callers carry on without it).
    async fn shared_get(&self, key: &str) -> Result<Option<Vec<u8>>, PlatformError>;

    /// Stores `value` under `key` for `ttl_s` seconds.
    ///
    /// Errors: the cache could not be written (callers carry on without it).
    async fn shared_put(&self, key: &str, value: &[u8], ttl_s: u64) -> Result<(), PlatformError>;
}

/// A client certificate as the edge verified it (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientCertificate {
    /// The client presented a certificate.
    pub presented: bool,
    /// The edge verified it against the configured CA (and it had not expired).
    pub verified: bool,
    /// Why verification failed, if it did (for the log).
    pub failure: Option<String>,
    /// The edge knows it is revoked.
    pub revoked: bool,
    /// SHA-256 fingerprint, lower-case hex without separators.
    pub fingerprint_sha256: String,
    /// Subject DN, RFC 2253.
    pub subject_dn: String,
    /// Issuer DN, RFC 2253.
    pub issuer_dn: String,
}

/// Client certificates of the current request (`request.cf.tlsClientAuth` on Workers).
pub trait ClientCertificates {
    /// True if this platform can report client certificates at all. Where it cannot, a
    /// config that accepts `mtls` is refused when it is loaded.
    fn supports_client_certificates(&self) -> bool;

    /// The current request's certificate details; `None` when the platform has none to give.
    fn client_certificate(&self) -> Option<ClientCertificate>;
}

/// How long the gateway's in-memory state lives on this host.
pub trait Instances {
    /// True when one instance (an isolate) serves many requests one after another, so what
    /// the core keeps in memory (config and snapshot caches, verified tokens, the round-robin
    /// position, rate-limit leases) carries over to the next request: Workers. False when
    /// every request runs in a fresh instance (Spin HTTP components): the core then keeps
    /// such state in the platform's shared stores, or picks a strategy that needs none.
    fn reuses_instances(&self) -> bool;
}

/// One call on a rate-limit counter: the protocol of the counter Durable Object (JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CounterCall {
    /// The counter's key (one object per key).
    pub key: String,
    /// The algorithm and its parameters (the object resets a state kept for others).
    pub algorithm: crate::ratelimit::Algorithm,
    /// What to do.
    pub op: CounterOp,
}

/// What a [`CounterCall`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CounterOp {
    /// Check and consume `cost` units (exact mode).
    Consume {
        /// Units.
        cost: u64,
    },
    /// Take up to `want` units for the isolate to spend locally (approximate mode).
    Lease {
        /// Units wanted.
        want: u64,
    },
    /// Give back `n` unused units of a lease.
    Refund {
        /// Units.
        n: u64,
        /// The lease's [`CounterReply::at_ms`] (so units go back to the window they came from).
        leased_at_ms: u64,
    },
    /// Read without changing.
    Peek,
    /// Start over (admin).
    Reset,
}

/// A counter's answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CounterReply {
    /// Units granted (consume: the cost or 0; lease: 0..=want).
    pub granted: u64,
    /// The decision after the call.
    pub decision: crate::ratelimit::Decision,
    /// The counter's clock after the call (unix ms; for refunds of a lease).
    pub at_ms: u64,
}

impl CounterCall {
    /// Runs the call on a counter's state at `now_ms`: what the counter object does with
    /// it (and the fake platform). Returns the reply and whether the state changed (and must
    /// be stored). Never fails.
    pub fn apply(
        &self,
        state: &mut crate::ratelimit::CounterState,
        now_ms: u64,
    ) -> (CounterReply, bool) {
        let alg = &self.algorithm;
        let (granted, decision, changed) = match self.op {
            CounterOp::Consume { cost } => {
                let d = alg.consume(state, now_ms, cost);
                (if d.allowed { cost } else { 0 }, d, true)
            }
            CounterOp::Lease { want } => {
                let (granted, d) = alg.lease(state, now_ms, want);
                (granted, d, true)
            }
            CounterOp::Refund { n, leased_at_ms } => {
                alg.refund_leased(state, now_ms, leased_at_ms, n);
                (0, alg.peek(state, now_ms), n > 0)
            }
            CounterOp::Peek => (0, alg.peek(state, now_ms), false),
            CounterOp::Reset => {
                state.reset();
                (0, alg.peek(state, now_ms), true)
            }
        };
        let reply = CounterReply {
            granted,
            decision,
            at_ms: state.last_seen_ms().max(now_ms),
        };
        (reply, changed)
    }
}

/// Rate-limit counters shared by every isolate (Durable Objects on Workers).
pub trait Counters {
    /// Runs one call on the counter `call.key`, atomically.
    ///
    /// Errors: the counter could not be reached (the policy's failure mode decides).
    async fn counter(&self, call: &CounterCall) -> Result<CounterReply, PlatformError>;
}

/// The emergency overrides' store, shared by every isolate (one Durable Object on Workers).
pub trait Control {
    /// Runs one call on the control object ([`crate::control::ControlCall::apply`]),
    /// atomically, and returns its reply (the outcome and the whole state after it).
    ///
    /// Errors: the object could not be reached, or answered something that is not a reply.
    async fn control(
        &self,
        call: &crate::control::ControlCall,
    ) -> Result<crate::control::ControlReply, PlatformError>;
}

/// Where the current request comes from, as the edge knows it (`request.cf` on Workers).
pub trait ClientGeo {
    /// The client's country (ISO 3166-1 alpha-2, e.g. `DE`); `None` when unknown.
    fn client_country(&self) -> Option<String>;
}

/// Everything the pipeline needs from a host.
pub trait Platform:
    Clock
    + Random
    + Log
    + Kv
    + Upstream
    + Crypto
    + Http
    + Secrets
    + SharedCache
    + ClientCertificates
    + Instances
    + ClientGeo
    + Counters
    + Control
{
}

impl<
        T: Clock
            + Random
            + Log
            + Kv
            + Upstream
            + Crypto
            + Http
            + Secrets
            + SharedCache
            + ClientCertificates
            + Instances
            + ClientGeo
            + Counters
            + Control,
    > Platform for T
{
}
