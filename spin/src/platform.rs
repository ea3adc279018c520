//! The core's platform traits on Spin: key-value for config and the shared cache, variables
//! for secrets, outbound `wasi:http` for backends and the control plane, Redis for exact
//! counters and the emergency overrides (key-value for both when there is no Redis: the
//! counters are then approximate under concurrency), and in-wasm crypto. No decisions: each
//! method is a representation change.

use crate::body::SpinBody;
use crate::timer::sleep_ms;
use edgegate_core::auth::soft_crypto::SoftCrypto;
use edgegate_core::auth::{JwsAlgorithm, PublicKey};
use edgegate_core::control::{ControlCall, ControlReply, ControlState, OBJECT_NAME};
use edgegate_core::headers::HeaderList;
use edgegate_core::platform::{
    ClientCertificate, ClientCertificates, ClientGeo, Clock, Control, CounterCall, CounterReply,
    Counters, Crypto, Http, HttpRequest, HttpResponse, Instances, Kv, Log, PlatformError, Random,
    Secrets, SharedCache, Upstream, UpstreamError, UpstreamRequest, UpstreamResponse,
};
use futures::future::{select, Either};
use spin_sdk::http::{
    ErrorCode, Fields, IncomingResponse, Method, OutgoingRequest, Scheme, SendError,
};
use spin_sdk::key_value::Store;
use std::cell::OnceCell;

/// The key-value store holding config, snapshot and cache entries (spin.toml
/// `key_value_stores`).
pub const STORE: &str = "default";
/// The Spin variable naming the Redis server for exact counters (`redis://host:port`).
pub const REDIS_VARIABLE: &str = "redis_address";
/// Key prefix of [`SharedCache`] entries in the store.
const CACHE_PREFIX: &str = "edgegate-cache:";
/// Redis key prefix of rate-limit counters (`edgegate:counter:<counter key>`).
const COUNTER_PREFIX: &str = "edgegate:counter:";
/// Key-value key prefix of rate-limit counters when there is no Redis
/// (`edgegate-counter:<counter key>`).
const COUNTER_KV_PREFIX: &str = "edgegate-counter:";
/// About one write in this many (of key-value counters without Redis, and of shared-cache
/// entries) also sweeps the store for entries of the same kind that have expired: key-value has
/// no TTL, so a client that never comes back, or a token seen once, would leave its key
/// forever.
const SWEEP_ONE_IN: u64 = 512;
/// At most this many keys are read by one sweep, from a random place in the key list (the
/// rest wait for later sweeps).
const SWEEP_MAX_KEYS: usize = 256;
/// Redis key prefix of the emergency overrides (`edgegate:control:global`), and their
/// key-value key prefix when there is no Redis (`edgegate-control:global`).
const CONTROL_REDIS_PREFIX: &str = "edgegate:control:";
const CONTROL_KV_PREFIX: &str = "edgegate-control:";
/// Optimistic-transaction attempts per counter or control call before it is reported as
/// unreachable. Between attempts a conflicting call waits a random 0..2^n ms (n = attempt, at
/// most 32 ms), so contenders on a hot key spread out instead of colliding again.
const COUNTER_ATTEMPTS: u32 = 64;
const COUNTER_MAX_BACKOFF_MS: u64 = 32;

/// The platform of one request.
pub struct SpinPlatform {
    store: OnceCell<Result<Store, String>>,
    redis: OnceCell<Result<spin_sdk::redis::Connection, String>>,
}

impl SpinPlatform {
    /// A platform for one request; the store and the Redis connection open on first use.
    pub fn new() -> Self {
        Self {
            store: OnceCell::new(),
            redis: OnceCell::new(),
        }
    }

    /// The request's Redis connection (one per request, shared by its counter calls).
    ///
    /// Errors: no `redis_address` variable (or an empty one), or the connection failed.
    fn redis(&self) -> Result<&spin_sdk::redis::Connection, PlatformError> {
        self.redis
            .get_or_init(|| {
                let addr = spin_sdk::variables::get(REDIS_VARIABLE)
                    .ok()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| format!("no {REDIS_VARIABLE} variable: no counters"))?;
                spin_sdk::redis::Connection::open(&addr).map_err(|e| format!("redis open: {e:?}"))
            })
            .as_ref()
            .map_err(|e| PlatformError(e.clone()))
    }

    /// True when a Redis server is named (`redis_address` set and not empty), whether or not
    /// it can be reached.
    fn redis_configured(&self) -> bool {
        spin_sdk::variables::get(REDIS_VARIABLE).is_ok_and(|a| !a.is_empty())
    }

    /// One read-modify-write of the value at Redis `key` as an optimistic transaction: WATCH
    /// the key, GET it, run `step` on it (in wasm), and when `step` returns a new value,
    /// MULTI/SET/EXEC (`SET .. PX ttl` when `step` gives the value a lifetime in ms); a
    /// concurrent change aborts the EXEC and `step` runs again on the new value. With `read_first`, a plain GET comes first and the transaction runs only when
    /// `step` wants to write (one round trip for reads that change nothing).
    ///
    /// The request's calls share one connection, and WATCH is per connection: nothing
    /// between WATCH and EXEC awaits (the Redis calls are synchronous; the only await is the
    /// backoff before WATCH), so two calls of one request never interleave there.
    ///
    /// Errors: no Redis, a Redis command failed, `step` failed, or [`COUNTER_ATTEMPTS`]
    /// conflicts in a row.
    async fn redis_update<R>(
        &self,
        key: &str,
        read_first: bool,
        mut step: impl FnMut(Option<Vec<u8>>) -> Result<(R, Option<Write>), PlatformError>,
    ) -> Result<R, PlatformError> {
        use spin_sdk::redis::{RedisParameter as P, RedisResult};
        let err =
            |what: &str, e: spin_sdk::redis::Error| PlatformError(format!("redis {what}: {e:?}"));
        let conn = self.redis()?;
        let bin = |s: &str| P::Binary(s.as_bytes().to_vec());
        if read_first {
            let raw = conn.get(key).map_err(|e| err("GET", e))?;
            if let (reply, None) = step(raw)? {
                return Ok(reply);
            }
        }
        for attempt in 0..COUNTER_ATTEMPTS {
            if attempt > 0 {
                let cap = (1u64 << attempt.min(5)).min(COUNTER_MAX_BACKOFF_MS);
                sleep_ms(self.next_u64() % (cap + 1)).await;
            }
            conn.execute("WATCH", &[bin(key)])
                .map_err(|e| err("WATCH", e))?;
            let raw = conn.get(key).map_err(|e| err("GET", e))?;
            let (reply, write) = match step(raw) {
                Ok(r) => r,
                Err(e) => {
                    let _ = conn.execute("UNWATCH", &[]);
                    return Err(e);
                }
            };
            let Some(write) = write else {
                conn.execute("UNWATCH", &[])
                    .map_err(|e| err("UNWATCH", e))?;
                return Ok(reply);
            };
            let mut set = vec![bin(key), P::Binary(write.value)];
            if let Some(ms) = write.ttl_ms {
                set.extend([bin("PX"), P::Int64(ms.clamp(1, i64::MAX as u64) as i64)]);
            }
            conn.execute("MULTI", &[]).map_err(|e| err("MULTI", e))?;
            conn.execute("SET", &set).map_err(|e| err("SET", e))?;
            let exec = conn.execute("EXEC", &[]).map_err(|e| err("EXEC", e))?;
            if !matches!(exec.as_slice(), [RedisResult::Nil] | []) {
                return Ok(reply);
            }
        }
        Err(PlatformError(format!(
            "{key}: {COUNTER_ATTEMPTS} conflicting updates in a row"
        )))
    }

    /// One counter call on the key-value store (no Redis): read the state, apply the call,
    /// write it back. Not atomic (Spin key-value has no compare-and-set): see
    /// [`Counters::counter`] for what that costs. The stored value is the 8-byte big-endian
    /// unix-ms time at which the state is back to empty (the reply's `reset_ms` after its
    /// `at_ms`)
    /// followed by the JSON state; a state past that time is read as empty, and a call that
    /// leaves nothing counted deletes the key.
    ///
    /// Errors: the store could not be read or written, or holds a value that is not a state.
    async fn counter_kv(&self, call: &CounterCall) -> Result<CounterReply, PlatformError> {
        let key = format!("{COUNTER_KV_PREFIX}{}", call.key);
        let now = self.now_ms();
        let mut state = match self.get_bytes(&key).await? {
            Some(raw) => decode_kv_counter(&key, &raw, now)?.unwrap_or_default(),
            None => Default::default(),
        };
        let (reply, changed) = call.apply(&mut state, now);
        if changed {
            if reply.decision.reset_ms == 0 {
                self.delete(&key).await?;
            } else {
                let mut raw = reply
                    .at_ms
                    .saturating_add(reply.decision.reset_ms)
                    .to_be_bytes()
                    .to_vec();
                serde_json::to_writer(&mut raw, &state)
                    .map_err(|e| PlatformError(format!("counter state: {e}")))?;
                self.put_bytes(&key, &raw).await?;
            }
            if self.next_u64().is_multiple_of(SWEEP_ONE_IN) {
                self.sweep(COUNTER_KV_PREFIX, |key, raw| {
                    !matches!(decode_kv_counter(key, raw, now), Ok(Some(_)))
                });
            }
        }
        Ok(reply)
    }

    /// Deletes keys under `prefix` whose value `expired(key, value)` says has expired: at
    /// most [`SWEEP_MAX_KEYS`] read, starting at a random place among the prefix's keys (so
    /// live keys at the front do not hide expired ones behind them). Best effort: errors end
    /// the sweep silently (the write it rides on has already succeeded).
    fn sweep(&self, prefix: &str, expired: impl Fn(&str, &[u8]) -> bool) {
        let Ok(store) = self.store() else { return };
        let Ok(keys) = store.get_keys() else { return };
        let keys: Vec<&String> = keys.iter().filter(|k| k.starts_with(prefix)).collect();
        if keys.is_empty() {
            return;
        }
        let start = (self.next_u64() % keys.len() as u64) as usize;
        for key in keys
            .iter()
            .cycle()
            .skip(start)
            .take(SWEEP_MAX_KEYS.min(keys.len()))
        {
            let gone = match store.get(key) {
                Ok(Some(raw)) => expired(key, &raw),
                Ok(None) => false,
                Err(_) => return,
            };
            if gone && store.delete(key).is_err() {
                return;
            }
        }
    }

    fn store(&self) -> Result<&Store, PlatformError> {
        self.store
            .get_or_init(|| Store::open(STORE).map_err(|e| format!("key-value {STORE:?}: {e:?}")))
            .as_ref()
            .map_err(|e| PlatformError(e.clone()))
    }
}

impl Clock for SpinPlatform {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    async fn sleep_ms(&self, ms: u64) {
        sleep_ms(ms).await
    }
}

impl Random for SpinPlatform {
    fn fill(&self, buf: &mut [u8]) {
        let bytes = wasi::random::random::get_random_bytes(buf.len() as u64);
        buf.copy_from_slice(&bytes[..buf.len()]);
    }
}

impl Log for SpinPlatform {
    fn log_line(&self, line: &str) {
        println!("{line}");
    }
}

impl Kv for SpinPlatform {
    async fn get_text(&self, key: &str) -> Result<Option<String>, PlatformError> {
        match self.get_bytes(key).await? {
            Some(b) => String::from_utf8(b)
                .map(Some)
                .map_err(|_| PlatformError(format!("{key}: not UTF-8"))),
            None => Ok(None),
        }
    }

    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, PlatformError> {
        self.store()?
            .get(key)
            .map_err(|e| PlatformError(format!("key-value get {key}: {e:?}")))
    }

    async fn put_text(&self, key: &str, value: &str) -> Result<(), PlatformError> {
        self.put_bytes(key, value.as_bytes()).await
    }

    async fn put_bytes(&self, key: &str, value: &[u8]) -> Result<(), PlatformError> {
        self.store()?
            .set(key, value)
            .map_err(|e| PlatformError(format!("key-value set {key}: {e:?}")))
    }

    /// Spin's `delete` of an absent key succeeds, as the trait asks.
    async fn delete(&self, key: &str) -> Result<(), PlatformError> {
        self.store()?
            .delete(key)
            .map_err(|e| PlatformError(format!("key-value delete {key}: {e:?}")))
    }
}

fn method(m: &str) -> Method {
    match m.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ => Method::Other(m.to_string()),
    }
}

/// `http://host:port/path?q` → (scheme, authority, path with query).
fn split_url(url: &str) -> Option<(Scheme, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(cut);
    Some((scheme, authority, if path.is_empty() { "/" } else { path }))
}

fn fields_to_list(fields: &Fields) -> HeaderList {
    let mut list = HeaderList::new();
    for (name, value) in fields.entries() {
        if let Ok(v) = String::from_utf8(value) {
            list.append(&name, v);
        }
    }
    list
}

fn upstream_error(url: &str, e: SendError) -> UpstreamError {
    match e {
        SendError::Http(ErrorCode::HttpRequestDenied) => {
            UpstreamError::Connect(format!("{url}: not in allowed_outbound_hosts"))
        }
        SendError::RequestConversion(e) => UpstreamError::Invalid(e.to_string()),
        e => UpstreamError::Connect(format!("{e:?}")),
    }
}

impl Upstream for SpinPlatform {
    type Body = SpinBody;
    type Headers = HeaderList;

    /// Streams the request body while waiting for the response head; the timeout starts
    /// once the body has been sent. A response that arrives before the body is sent ends
    /// the upload there.
    async fn send(
        &self,
        inbound: &HeaderList,
        req: &UpstreamRequest,
        body: SpinBody,
    ) -> Result<UpstreamResponse<SpinBody, HeaderList>, UpstreamError> {
        let (scheme, authority, path) = split_url(&req.url)
            .ok_or_else(|| UpstreamError::Invalid(format!("bad upstream URL {:?}", req.url)))?;
        let fields = Fields::new();
        for (name, value) in req.headers.apply(inbound).iter() {
            fields
                .append(name, value.as_bytes())
                .map_err(|e| UpstreamError::Invalid(format!("header {name}: {e:?}")))?;
        }
        if let Some(len) = req.content_length {
            fields
                .set("content-length", &[len.to_string().into_bytes()])
                .map_err(|e| UpstreamError::Invalid(format!("content-length: {e:?}")))?;
        }
        let out = OutgoingRequest::new(fields);
        let invalid = |what: &str| UpstreamError::Invalid(format!("{what} of {}", req.url));
        out.set_method(&method(&req.method))
            .map_err(|()| invalid("method"))?;
        out.set_scheme(Some(&scheme))
            .map_err(|()| invalid("scheme"))?;
        out.set_authority(Some(authority))
            .map_err(|()| invalid("authority"))?;
        out.set_path_with_query(Some(path))
            .map_err(|()| invalid("path"))?;
        let sink = out.take_body();

        let response = std::pin::pin!(spin_sdk::http::send::<_, IncomingResponse>(out));
        let upload_then_timer = std::pin::pin!(async {
            let sent = body.pipe(sink).await;
            sleep_ms(req.timeout_ms).await;
            sent
        });
        match select(response, upload_then_timer).await {
            Either::Left((Ok(resp), _)) => Ok(UpstreamResponse {
                status: resp.status(),
                headers: fields_to_list(&resp.headers()),
                body: SpinBody::from_response(resp),
            }),
            Either::Left((Err(e), _)) => Err(upstream_error(&req.url, e)),
            Either::Right((Ok(()), _)) => Err(UpstreamError::Timeout),
            Either::Right((Err(e), _)) => Err(UpstreamError::Connect(format!(
                "{}: sending the request body: {e}",
                req.url
            ))),
        }
    }

    fn try_clone_body(&self, body: &SpinBody) -> Option<SpinBody> {
        match body {
            SpinBody::Bytes(b) => Some(SpinBody::Bytes(b.clone())),
            SpinBody::Stream(_) => None,
        }
    }

    async fn buffer_body(&self, body: SpinBody, limit: u64) -> Result<SpinBody, PlatformError> {
        body.collect(limit)
            .await
            .map(SpinBody::Bytes)
            .map_err(PlatformError)
    }

    fn empty_body(&self) -> SpinBody {
        SpinBody::Bytes(Vec::new())
    }
}

impl Crypto for SpinPlatform {
    async fn verify_signature(
        &self,
        alg: JwsAlgorithm,
        key: &PublicKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, PlatformError> {
        SoftCrypto
            .verify_signature(alg, key, signing_input, signature)
            .await
    }

    async fn sign_ed25519(
        &self,
        key_id: &str,
        seed: &[u8; 32],
        message: &[u8],
    ) -> Result<Vec<u8>, PlatformError> {
        SoftCrypto.sign_ed25519(key_id, seed, message).await
    }
}

impl Http for SpinPlatform {
    /// One control-plane exchange over outbound `wasi:http`, the timeout covering all of it
    /// (the response body included). The response body is read as a stream and the read stops
    /// as soon as it passes `max_body` (a declared `Content-Length` over it fails before any
    /// byte is read), so an oversized answer is never held whole, chunked or not.
    ///
    /// Errors (each naming the URL): not an absolute URL, a header or method the runtime
    /// refuses, connection failure, `timed out`, `body over <max_body> bytes`, or a response
    /// body that broke midway.
    async fn fetch_buffered(
        &self,
        req: &HttpRequest,
        max_body: usize,
    ) -> Result<HttpResponse, PlatformError> {
        let url = req.url.as_str();
        let fail = |what: String| PlatformError(format!("{url}: {what}"));
        let (scheme, authority, path) =
            split_url(url).ok_or_else(|| fail("not an absolute URL".into()))?;
        let fields = Fields::new();
        for (name, value) in &req.headers {
            fields
                .append(name, value.as_bytes())
                .map_err(|e| fail(format!("header {name}: {e:?}")))?;
        }
        let body = req.body.clone().unwrap_or_default();
        if req.body.is_some() {
            fields
                .set("content-length", &[body.len().to_string().into_bytes()])
                .map_err(|e| fail(format!("content-length: {e:?}")))?;
        }
        let out = OutgoingRequest::new(fields);
        out.set_method(&method(&req.method))
            .map_err(|()| fail(format!("method {:?}", req.method)))?;
        out.set_scheme(Some(&scheme))
            .map_err(|()| fail("scheme".into()))?;
        out.set_authority(Some(authority))
            .map_err(|()| fail("authority".into()))?;
        out.set_path_with_query(Some(path))
            .map_err(|()| fail("path".into()))?;
        let sink = out.take_body();

        let exchange = std::pin::pin!(async {
            let response = spin_sdk::http::send::<_, IncomingResponse>(out);
            let upload = SpinBody::Bytes(body).pipe(sink);
            let (response, upload) = futures::future::join(response, upload).await;
            let resp = response.map_err(|e| fail(format!("{e:?}")))?;
            upload.map_err(|e| fail(format!("sending the request body: {e}")))?;
            let status = resp.status();
            let headers = fields_to_list(&resp.headers());
            let too_large = || fail(format!("body over {max_body} bytes"));
            let declared = headers
                .get("content-length")
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n > max_body as u64) {
                return Err(too_large());
            }
            let body = SpinBody::from_response(resp)
                .read_limited(max_body as u64)
                .await
                .map_err(|e| e.map_or_else(too_large, fail))?;
            Ok(HttpResponse {
                status,
                headers,
                body,
            })
        });
        let timer = std::pin::pin!(sleep_ms(req.timeout_ms));
        match select(exchange, timer).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => Err(fail("timed out".into())),
        }
    }
}

impl Secrets for SpinPlatform {
    /// Spin variable names are lower case: the config's `INTERNAL_JWT_SECRET` is the Spin
    /// variable `internal_jwt_secret`.
    fn secret(&self, name: &str) -> Option<String> {
        spin_sdk::variables::get(&name.to_ascii_lowercase()).ok()
    }
}

impl SharedCache for SpinPlatform {
    async fn shared_get(&self, key: &str) -> Result<Option<Vec<u8>>, PlatformError> {
        let key = format!("{CACHE_PREFIX}{key}");
        let Some(raw) = self.get_bytes(&key).await? else {
            return Ok(None);
        };
        let Some((expiry, value)) = raw.split_first_chunk::<8>() else {
            return Ok(None);
        };
        Ok((u64::from_be_bytes(*expiry) > self.now_ms()).then(|| value.to_vec()))
    }

    /// Stores `value` with its expiry in front; about one put in [`SWEEP_ONE_IN`] also deletes
    /// expired entries (a verified token's record, a round-robin position of a removed pool).
    async fn shared_put(&self, key: &str, value: &[u8], ttl_s: u64) -> Result<(), PlatformError> {
        let now = self.now_ms();
        let expiry = now.saturating_add(ttl_s.saturating_mul(1000));
        let mut raw = expiry.to_be_bytes().to_vec();
        raw.extend_from_slice(value);
        self.store()?
            .set(&format!("{CACHE_PREFIX}{key}"), &raw)
            .map_err(|e| PlatformError(format!("key-value set: {e:?}")))?;
        if self.next_u64().is_multiple_of(SWEEP_ONE_IN) {
            self.sweep(CACHE_PREFIX, |_, raw| {
                raw.split_first_chunk::<8>()
                    .is_none_or(|(expiry, _)| u64::from_be_bytes(*expiry) <= now)
            });
        }
        Ok(())
    }
}

/// Spin runs a fresh component instance for every HTTP request: nothing in memory outlives it.
impl Instances for SpinPlatform {
    fn reuses_instances(&self) -> bool {
        false
    }
}

impl ClientCertificates for SpinPlatform {
    fn supports_client_certificates(&self) -> bool {
        false
    }

    fn client_certificate(&self) -> Option<ClientCertificate> {
        None
    }
}

impl ClientGeo for SpinPlatform {
    fn client_country(&self) -> Option<String> {
        None
    }
}

/// A value [`SpinPlatform::redis_update`] writes, with its lifetime (`PX`), if it has one.
struct Write {
    value: Vec<u8>,
    ttl_ms: Option<u64>,
}

/// A key-value counter value (8-byte big-endian expiry, JSON state): the state, or `None`
/// when it has expired (it is then equivalent to an empty state).
///
/// Errors: a value too short or whose state does not parse.
fn decode_kv_counter(
    key: &str,
    raw: &[u8],
    now: u64,
) -> Result<Option<edgegate_core::ratelimit::CounterState>, PlatformError> {
    let bad = |what: String| PlatformError(format!("counter state {key}: {what}"));
    let (expiry, json) = raw
        .split_first_chunk::<8>()
        .ok_or_else(|| bad("shorter than its expiry".into()))?;
    if u64::from_be_bytes(*expiry) <= now {
        return Ok(None);
    }
    serde_json::from_slice(json)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

impl Counters for SpinPlatform {
    /// One counter call, the call applied in wasm (the core's [`CounterCall::apply`]):
    ///
    /// - **`redis_address` set**: an optimistic Redis transaction
    ///   ([`SpinPlatform::redis_update`]) under `edgegate:counter:<key>`: the new state is
    ///   written only if no one else changed it in between, else the call runs again on the
    ///   new state. Exact under concurrency. The key expires (`PX`) when the state would be
    ///   back to empty (the decision's `reset_ms`). If Redis cannot be reached the call fails
    ///   (no fallback to key-value, which would split the count in two).
    /// - **no Redis**: key-value read-modify-write under `edgegate-counter:<key>`
    ///   ([`SpinPlatform::counter_kv`]). **Approximate**: Spin key-value has no
    ///   compare-and-set, so concurrent requests on one key can each read the same count
    ///   and each be admitted: a limit can over-admit by at most the number of requests
    ///   racing on the key at once (each read-modify-write is two store calls, well under a
    ///   millisecond on a local store). Sequential requests are counted exactly. This holds
    ///   for exact-mode limits too.
    async fn counter(&self, call: &CounterCall) -> Result<CounterReply, PlatformError> {
        if !self.redis_configured() {
            return self.counter_kv(call).await;
        }
        let key = format!("{COUNTER_PREFIX}{}", call.key);
        self.redis_update(&key, false, |raw| {
            let mut state = match raw {
                Some(raw) => serde_json::from_slice(&raw)
                    .map_err(|e| PlatformError(format!("counter state {key}: {e}")))?,
                None => Default::default(),
            };
            let (reply, changed) = call.apply(&mut state, self.now_ms());
            let write = changed
                .then(|| serde_json::to_vec(&state))
                .transpose()
                .map_err(|e| PlatformError(format!("counter state: {e}")))?
                .map(|value| Write {
                    value,
                    // Empty again after reset_ms: the key can go (at least 1 ms: PX 0 is an
                    // error).
                    ttl_ms: Some(reply.decision.reset_ms.max(1)),
                });
            Ok((reply, write))
        })
        .await
    }
}

fn decode_control(key: &str, raw: Option<Vec<u8>>) -> Result<ControlState, PlatformError> {
    match raw {
        Some(raw) => serde_json::from_slice(&raw)
            .map_err(|e| PlatformError(format!("control state {key}: {e}"))),
        None => Ok(ControlState::default()),
    }
}

fn encode_control(state: &ControlState) -> Result<Vec<u8>, PlatformError> {
    serde_json::to_vec(state).map_err(|e| PlatformError(format!("control state: {e}")))
}

impl Control for SpinPlatform {
    /// The emergency overrides, one JSON [`ControlState`] run through the core's
    /// [`ControlCall::apply`], stored where the deployment can change it atomically:
    ///
    /// - **`redis_address` set**: in Redis under `edgegate:control:global`, by the same
    ///   optimistic transaction as the counters (a read is one plain GET; a change, or a read
    ///   that drops expired blocks, is WATCH/GET/MULTI/SET/EXEC, retried on conflict). Exact
    ///   under concurrent admin calls. If Redis cannot be reached the call fails (there is no
    ///   fallback to key-value, which would split the state in two).
    /// - **no Redis**: in Spin key-value under `edgegate-control:global`, read-modify-write.
    ///   Spin key-value has no compare-and-set, so two admin changes made at the same moment
    ///   can lose one (the later write wins; both callers are told their change was made).
    ///   Reads never write (the expired blocks a read drops are dropped in its reply, and stored
    ///   with the next change), so gateway requests never race an admin change.
    async fn control(&self, call: &ControlCall) -> Result<ControlReply, PlatformError> {
        if self.redis_configured() {
            let key = format!("{CONTROL_REDIS_PREFIX}{OBJECT_NAME}");
            return self
                .redis_update(&key, matches!(call, ControlCall::Read), |raw| {
                    let mut state = decode_control(&key, raw)?;
                    let (reply, changed) = call.apply(&mut state, self.now_ms());
                    let write = changed.then(|| encode_control(&state)).transpose()?;
                    Ok((
                        reply,
                        write.map(|value| Write {
                            value,
                            ttl_ms: None,
                        }),
                    ))
                })
                .await;
        }
        let key = format!("{CONTROL_KV_PREFIX}{OBJECT_NAME}");
        let mut state = decode_control(&key, self.get_bytes(&key).await?)?;
        let (reply, changed) = call.apply(&mut state, self.now_ms());
        if changed && !matches!(call, ControlCall::Read) {
            self.put_bytes(&key, &encode_control(&state)?).await?;
        }
        Ok(reply)
    }
}
