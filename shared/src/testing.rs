//! An in-memory platform for pipeline tests and benchmarks (feature `testing`): a manual
//! clock, deterministic randomness, a map for KV, captured log lines and a scripted upstream.

use crate::auth::soft_crypto::SoftCrypto;
use crate::headers::HeaderList;

use crate::platform::{
    ClientCertificate, ClientCertificates, ClientGeo, Clock, Control, CounterCall, CounterReply,
    Counters, Crypto, Http, HttpRequest, HttpResponse, Instances, Kv, Log, PlatformError, Random,
    Secrets, SharedCache, Upstream, UpstreamError, UpstreamRequest, UpstreamResponse,
};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// A body in the fake platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeBody {
    /// No body.
    Empty,
    /// A body in memory (replayable).
    Bytes(Vec<u8>),
    /// A body that can be read once (like a network stream).
    Stream(Vec<u8>),
}

impl FakeBody {
    /// The bytes, whatever the kind.
    pub fn bytes(&self) -> &[u8] {
        match self {
            FakeBody::Empty => &[],
            FakeBody::Bytes(b) | FakeBody::Stream(b) => b,
        }
    }
}

/// A request as the fake upstream received it: the core's [`UpstreamRequest`] with its header
/// edits applied to the client's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRequest {
    /// Method.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// The headers as sent.
    pub headers: HeaderList,
    /// The declared body length.
    pub content_length: Option<u64>,
    /// The response-head timeout.
    pub timeout_ms: u64,
}

/// What the scripted control-plane HTTP (IdP, Registry) does for one request.
pub type HttpScript =
    Box<dyn Fn(&HttpRequest, &FakePlatform) -> Result<HttpResponse, PlatformError>>;

/// What the scripted upstream does for one request.
pub type UpstreamScript = Box<
    dyn Fn(
        &SentRequest,
        &FakeBody,
        &FakePlatform,
    ) -> Result<UpstreamResponse<FakeBody>, UpstreamError>,
>;

/// The fake host. Build with [`FakePlatform::new`], script the upstream with
/// [`FakePlatform::on_upstream`], seed KV with [`FakePlatform::kv_put`].
pub struct FakePlatform {
    now: Cell<u64>,
    seed: Cell<u64>,
    kv: RefCell<HashMap<String, Vec<u8>>>,
    country: RefCell<Option<String>>,
    counters: RefCell<HashMap<String, crate::ratelimit::CounterState>>,
    counters_down: Cell<bool>,
    counter_calls: Cell<u32>,
    control: RefCell<crate::control::ControlState>,
    control_down: Cell<bool>,
    control_calls: Cell<u32>,
    kv_down: Cell<bool>,
    kv_yields: Cell<bool>,
    kv_reads: Cell<u32>,
    kv_writes: Cell<u32>,
    kv_writes_down: Cell<bool>,
    logs: RefCell<Vec<String>>,
    script: RefCell<Option<UpstreamScript>>,
    sent: RefCell<Vec<(SentRequest, FakeBody)>>,
    http: RefCell<Option<HttpScript>>,
    http_sent: RefCell<Vec<HttpRequest>>,
    http_yields: Cell<bool>,
    secrets: RefCell<HashMap<String, String>>,
    verifications: Cell<u32>,
    shared: RefCell<HashMap<String, (Vec<u8>, u64)>>,
    client_certificate: RefCell<Option<ClientCertificate>>,
    supports_certificates: Cell<bool>,
    reuses_instances: Cell<bool>,
    shared_reads_down: Cell<bool>,
    shared_writes_down: Cell<bool>,
}

impl Default for FakePlatform {
    fn default() -> Self {
        Self::new()
    }
}

impl FakePlatform {
    /// A platform at time 1,700,000,000,000 ms whose upstream answers 200 with an empty body.
    pub fn new() -> Self {
        FakePlatform {
            now: Cell::new(1_700_000_000_000),
            seed: Cell::new(0x9e37_79b9_7f4a_7c15),
            kv: RefCell::new(HashMap::new()),
            country: RefCell::new(None),
            counters: RefCell::new(HashMap::new()),
            counters_down: Cell::new(false),
            counter_calls: Cell::new(0),
            control: RefCell::new(crate::control::ControlState::default()),
            control_down: Cell::new(false),
            control_calls: Cell::new(0),
            kv_down: Cell::new(false),
            kv_yields: Cell::new(false),
            kv_reads: Cell::new(0),
            kv_writes: Cell::new(0),
            kv_writes_down: Cell::new(false),
            logs: RefCell::new(Vec::new()),
            script: RefCell::new(None),
            sent: RefCell::new(Vec::new()),
            http: RefCell::new(None),
            http_sent: RefCell::new(Vec::new()),
            http_yields: Cell::new(false),
            secrets: RefCell::new(HashMap::new()),
            verifications: Cell::new(0),
            shared: RefCell::new(HashMap::new()),
            client_certificate: RefCell::new(None),
            supports_certificates: Cell::new(true),
            reuses_instances: Cell::new(true),
            shared_reads_down: Cell::new(false),
            shared_writes_down: Cell::new(false),
        }
    }

    /// Scripts the control-plane HTTP (JWKS, discovery, …).
    pub fn on_http(
        &self,
        f: impl Fn(&HttpRequest, &FakePlatform) -> Result<HttpResponse, PlatformError> + 'static,
    ) {
        *self.http.borrow_mut() = Some(Box::new(f));
    }

    /// The control-plane requests made so far.
    pub fn http_sent(&self) -> Vec<HttpRequest> {
        self.http_sent.borrow().clone()
    }

    /// Makes every control-plane request suspend once before answering (so that concurrent
    /// requests interleave at it, as with a real network).
    pub fn set_http_yields(&self, yields: bool) {
        self.http_yields.set(yields);
    }

    /// Sets a secret.
    pub fn set_secret(&self, name: &str, value: &str) {
        self.secrets
            .borrow_mut()
            .insert(name.to_string(), value.to_string());
    }

    /// How many asymmetric signature verifications were made.
    pub fn verifications(&self) -> u32 {
        self.verifications.get()
    }

    /// Sets the client certificate the next requests present.
    pub fn set_client_certificate(&self, cert: Option<ClientCertificate>) {
        *self.client_certificate.borrow_mut() = cert;
    }

    /// Makes the platform one without client certificates (as Spin).
    pub fn set_supports_client_certificates(&self, supports: bool) {
        self.supports_certificates.set(supports);
    }

    /// Makes the platform one that runs every request in a fresh instance (as Spin) or one
    /// that reuses instances (as Workers, the default).
    pub fn set_reuses_instances(&self, reuses: bool) {
        self.reuses_instances.set(reuses);
    }

    /// Makes the shared cache fail: reads (`shared_get`) and/or writes (`shared_put`) return
    /// an error, as an unreachable Cache API or key-value store does.
    pub fn set_shared_cache_down(&self, reads: bool, writes: bool) {
        self.shared_reads_down.set(reads);
        self.shared_writes_down.set(writes);
    }

    /// Moves the clock forward.
    pub fn advance(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
    }

    /// Sets a KV value.
    pub fn kv_put(&self, key: &str, value: &str) {
        self.kv_put_bytes(key, value.as_bytes());
    }

    /// Sets the client country the edge reports (`request.cf.country`).
    pub fn set_country(&self, country: Option<&str>) {
        *self.country.borrow_mut() = country.map(str::to_string);
    }

    /// Makes rate-limit counters unreachable (true) or reachable (false).
    pub fn set_counters_down(&self, down: bool) {
        self.counters_down.set(down);
    }

    /// Counter calls made so far (reachable or not).
    pub fn counter_calls(&self) -> u32 {
        self.counter_calls.get()
    }

    /// Makes the control object unreachable (true) or reachable (false).
    pub fn set_control_down(&self, down: bool) {
        self.control_down.set(down);
    }

    /// Control-object calls made so far (reachable or not).
    pub fn control_calls(&self) -> u32 {
        self.control_calls.get()
    }

    /// The control object's state (as another isolate's admin call would have left it).
    pub fn control_state(&self) -> crate::control::ControlState {
        self.control.borrow().clone()
    }

    /// Runs a call on the control object directly (another isolate's admin call).
    pub fn control_apply(
        &self,
        call: &crate::control::ControlCall,
    ) -> crate::control::ControlReply {
        call.apply(&mut self.control.borrow_mut(), self.now_ms()).0
    }

    /// Sets a binary KV value.
    pub fn kv_put_bytes(&self, key: &str, value: &[u8]) {
        self.kv.borrow_mut().insert(key.to_string(), value.to_vec());
    }

    /// Removes a KV value.
    pub fn kv_delete(&self, key: &str) {
        self.kv.borrow_mut().remove(key);
    }

    /// Makes KV reads fail (true) or work (false).
    pub fn set_kv_down(&self, down: bool) {
        self.kv_down.set(down);
    }

    /// Makes every KV read suspend once before answering, as a real store does, so that
    /// concurrent requests interleave at their KV reads.
    pub fn set_kv_yields(&self, yields: bool) {
        self.kv_yields.set(yields);
    }

    /// How many KV reads were made.
    pub fn kv_reads(&self) -> u32 {
        self.kv_reads.get()
    }

    /// How many KV writes (`put_text` / `put_bytes`) were attempted.
    pub fn kv_writes(&self) -> u32 {
        self.kv_writes.get()
    }

    /// Makes KV writes and deletes fail (true) while reads keep working (false: they work).
    pub fn set_kv_writes_down(&self, down: bool) {
        self.kv_writes_down.set(down);
    }

    /// Every KV key, sorted (to check what a writer left behind).
    pub fn kv_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.kv.borrow().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// A KV value as text, read directly (no read counted, never fails).
    pub fn kv_text(&self, key: &str) -> Option<String> {
        self.kv
            .borrow()
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Scripts the upstream.
    pub fn on_upstream(
        &self,
        f: impl Fn(
                &SentRequest,
                &FakeBody,
                &FakePlatform,
            ) -> Result<UpstreamResponse<FakeBody>, UpstreamError>
            + 'static,
    ) {
        *self.script.borrow_mut() = Some(Box::new(f));
    }

    /// The requests sent upstream so far, with their bodies.
    pub fn sent(&self) -> Vec<(SentRequest, FakeBody)> {
        self.sent.borrow().clone()
    }

    /// Takes the log lines written so far.
    pub fn take_logs(&self) -> Vec<String> {
        std::mem::take(&mut self.logs.borrow_mut())
    }

    /// A 200 response with these headers and body.
    pub fn ok(headers: &[(&str, &str)], body: &[u8]) -> UpstreamResponse<FakeBody> {
        UpstreamResponse {
            status: 200,
            headers: HeaderList::from_pairs(headers.iter().map(|(n, v)| (*n, v.to_string()))),
            body: FakeBody::Stream(body.to_vec()),
        }
    }
}

impl Clock for FakePlatform {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }

    /// Lets other tasks run; the manual clock does not move.
    async fn sleep_ms(&self, _ms: u64) {
        YieldOnce(false).await;
    }
}

impl Random for FakePlatform {
    fn fill(&self, buf: &mut [u8]) {
        for b in buf {
            // xorshift64*: deterministic, good enough for ids in tests.
            let mut x = self.seed.get();
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.seed.set(x);
            *b = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
    }
}

impl Log for FakePlatform {
    fn log_line(&self, line: &str) {
        self.logs.borrow_mut().push(line.to_string());
    }
}

impl Kv for FakePlatform {
    async fn get_text(&self, key: &str) -> Result<Option<String>, PlatformError> {
        match self.get_bytes(key).await? {
            None => Ok(None),
            Some(b) => String::from_utf8(b)
                .map(Some)
                .map_err(|_| PlatformError(format!("{key} is not UTF-8"))),
        }
    }

    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, PlatformError> {
        self.kv_reads.set(self.kv_reads.get() + 1);
        if self.kv_yields.get() {
            YieldOnce(false).await;
        }
        if self.kv_down.get() {
            return Err(PlatformError("kv unreachable".into()));
        }
        Ok(self.kv.borrow().get(key).cloned())
    }

    async fn put_text(&self, key: &str, value: &str) -> Result<(), PlatformError> {
        self.put_bytes(key, value.as_bytes()).await
    }

    async fn put_bytes(&self, key: &str, value: &[u8]) -> Result<(), PlatformError> {
        self.kv_writes.set(self.kv_writes.get() + 1);
        if self.kv_yields.get() {
            YieldOnce(false).await;
        }
        if self.kv_down.get() || self.kv_writes_down.get() {
            return Err(PlatformError("kv unreachable".into()));
        }
        self.kv.borrow_mut().insert(key.to_string(), value.to_vec());
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), PlatformError> {
        if self.kv_yields.get() {
            YieldOnce(false).await;
        }
        if self.kv_down.get() || self.kv_writes_down.get() {
            return Err(PlatformError("kv unreachable".into()));
        }
        self.kv.borrow_mut().remove(key);
        Ok(())
    }
}

impl Upstream for FakePlatform {
    type Body = FakeBody;
    type Headers = HeaderList;

    async fn send(
        &self,
        inbound: &HeaderList,
        req: &UpstreamRequest,
        body: FakeBody,
    ) -> Result<UpstreamResponse<FakeBody>, UpstreamError> {
        let sent = SentRequest {
            method: req.method.clone(),
            url: req.url.clone(),
            headers: req.headers.apply(inbound),
            content_length: req.content_length,
            timeout_ms: req.timeout_ms,
        };
        self.sent.borrow_mut().push((sent.clone(), body.clone()));
        let script = self.script.borrow();
        match script.as_ref() {
            Some(f) => f(&sent, &body, self),
            None => Ok(FakePlatform::ok(&[], b"")),
        }
    }

    fn try_clone_body(&self, body: &FakeBody) -> Option<FakeBody> {
        match body {
            FakeBody::Stream(_) => None,
            other => Some(other.clone()),
        }
    }

    async fn buffer_body(&self, body: FakeBody, limit: u64) -> Result<FakeBody, PlatformError> {
        if body.bytes().len() as u64 > limit {
            return Err(PlatformError("body longer than declared".into()));
        }
        Ok(FakeBody::Bytes(body.bytes().to_vec()))
    }

    fn empty_body(&self) -> FakeBody {
        FakeBody::Empty
    }
}

/// A future that is pending once (waking itself), then ready.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

impl Crypto for FakePlatform {
    async fn verify_signature(
        &self,
        alg: crate::auth::JwsAlgorithm,
        key: &crate::auth::PublicKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, PlatformError> {
        self.verifications.set(self.verifications.get() + 1);
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

impl Http for FakePlatform {
    async fn fetch_buffered(
        &self,
        req: &HttpRequest,
        max_body: usize,
    ) -> Result<HttpResponse, PlatformError> {
        self.http_sent.borrow_mut().push(req.clone());
        if self.http_yields.get() {
            YieldOnce(false).await;
        }
        let script = self.http.borrow();
        let resp = match script.as_ref() {
            Some(f) => f(req, self)?,
            None => return Err(PlatformError("no HTTP script".into())),
        };
        if resp.body.len() > max_body {
            return Err(PlatformError(format!("body over {max_body} bytes")));
        }
        Ok(resp)
    }
}

impl Secrets for FakePlatform {
    fn secret(&self, name: &str) -> Option<String> {
        self.secrets.borrow().get(name).cloned()
    }
}

impl SharedCache for FakePlatform {
    async fn shared_get(&self, key: &str) -> Result<Option<Vec<u8>>, PlatformError> {
        if self.shared_reads_down.get() {
            return Err(PlatformError("shared cache unreachable".into()));
        }
        let now = self.now_ms();
        Ok(self
            .shared
            .borrow()
            .get(key)
            .filter(|(_, until)| now < *until)
            .map(|(v, _)| v.clone()))
    }

    async fn shared_put(&self, key: &str, value: &[u8], ttl_s: u64) -> Result<(), PlatformError> {
        if self.shared_writes_down.get() {
            return Err(PlatformError("shared cache unreachable".into()));
        }
        let until = self.now_ms().saturating_add(ttl_s.saturating_mul(1000));
        self.shared
            .borrow_mut()
            .insert(key.to_string(), (value.to_vec(), until));
        Ok(())
    }
}

impl Counters for FakePlatform {
    async fn counter(&self, call: &CounterCall) -> Result<CounterReply, PlatformError> {
        self.counter_calls.set(self.counter_calls.get() + 1);
        if self.counters_down.get() {
            return Err(PlatformError("counter unreachable".into()));
        }
        let now = self.now_ms();
        let mut counters = self.counters.borrow_mut();
        let state = counters.entry(call.key.clone()).or_default();
        Ok(call.apply(state, now).0)
    }
}

impl Control for FakePlatform {
    /// Suspends once (like a round trip, so concurrent requests interleave), then applies the
    /// call to the in-memory state.
    async fn control(
        &self,
        call: &crate::control::ControlCall,
    ) -> Result<crate::control::ControlReply, PlatformError> {
        self.control_calls.set(self.control_calls.get() + 1);
        YieldOnce(false).await;
        if self.control_down.get() {
            return Err(PlatformError("control object unreachable".into()));
        }
        Ok(self.control_apply(call))
    }
}

impl ClientGeo for FakePlatform {
    fn client_country(&self) -> Option<String> {
        self.country.borrow().clone()
    }
}

impl Instances for FakePlatform {
    fn reuses_instances(&self) -> bool {
        self.reuses_instances.get()
    }
}

impl ClientCertificates for FakePlatform {
    fn supports_client_certificates(&self) -> bool {
        self.supports_certificates.get()
    }

    fn client_certificate(&self) -> Option<ClientCertificate> {
        self.client_certificate.borrow().clone()
    }
}
