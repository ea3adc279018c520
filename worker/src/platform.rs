//! The core's platform traits on Workers: `Date.now()`, `crypto.getRandomValues`, console
//! logging, KV reads and `fetch` with a timeout.

use crate::body::WorkerBody;
use crate::convert::{apply_edits, JsHeaders};
use edgegate_core::auth::{JwsAlgorithm, PublicKey};
use edgegate_core::headers::HeaderList;
use edgegate_core::platform::{
    ClientCertificate, ClientCertificates, ClientGeo, Clock, Control, CounterCall, CounterReply,
    Counters, Crypto, Http, HttpRequest, HttpResponse, Instances, Kv, Log, PlatformError, Random,
    Secrets, SharedCache, Upstream, UpstreamError, UpstreamRequest, UpstreamResponse,
};
use futures_util::future::{select, Either};
use std::time::Duration;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::Env;

/// The KV binding that holds the config pointer and versions.
pub const CONFIG_KV_BINDING: &str = "EDGEGATE_CONFIG";

/// Workers' implementation of the platform traits, built per request over its bindings and
/// the client's `Headers` (upstream requests start from a native copy of them). Bindings are
/// looked up only when used (most requests read no KV).
pub struct WorkerPlatform {
    env: Env,
    request: Option<web_sys::Request>,
}

impl WorkerPlatform {
    /// A platform over this request's bindings and the request itself (its headers are the
    /// base of upstream requests; its `cf` object gives client certificates). A missing KV
    /// binding makes every KV read fail (so the gateway answers 503 `no_config` and logs why)
    /// rather than failing here.
    pub fn new(env: &Env, request: &web_sys::Request) -> Self {
        WorkerPlatform {
            env: env.clone(),
            request: Some(Clone::clone(request)),
        }
    }

    /// A platform for work that is not a client request (cron): upstream requests start
    /// from empty headers.
    pub fn without_request(env: &Env) -> Self {
        WorkerPlatform {
            env: env.clone(),
            request: None,
        }
    }
}

thread_local! {
    // `crypto` is looked up once per isolate, not per request.
    static CRYPTO: Option<web_sys::Crypto> = js_sys::Reflect::get(&js_sys::global(), &"crypto".into())
        .ok()
        .and_then(|c| c.dyn_into::<web_sys::Crypto>().ok());
}

pub(crate) fn js_error(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|err| String::from(err.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

impl Clock for WorkerPlatform {
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }

    /// A timer of this request (`setTimeout`), so waiting never depends on another request.
    async fn sleep_ms(&self, ms: u64) {
        worker::Delay::from(Duration::from_millis(ms)).await;
    }
}

impl Random for WorkerPlatform {
    fn fill(&self, buf: &mut [u8]) {
        let filled = CRYPTO.with(|c| {
            c.as_ref()
                .is_some_and(|c| c.get_random_values_with_u8_array(buf).is_ok())
        });
        // Workers always has crypto; should it ever be missing, ids are still unique enough
        // from the clock, and nothing security-relevant depends on them.
        if !filled {
            let mut x = self.now_ms() | 1;
            for b in buf {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
        }
    }
}

impl Log for WorkerPlatform {
    fn log_line(&self, line: &str) {
        worker::console_log!("{}", line);
    }
}

impl Kv for WorkerPlatform {
    async fn get_text(&self, key: &str) -> Result<Option<String>, PlatformError> {
        let kv = self
            .env
            .kv(CONFIG_KV_BINDING)
            .map_err(|_| PlatformError(format!("no KV binding {CONFIG_KV_BINDING}")))?;
        kv.get(key)
            .text()
            .await
            .map_err(|e| PlatformError(e.to_string()))
    }

    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, PlatformError> {
        let kv = self
            .env
            .kv(CONFIG_KV_BINDING)
            .map_err(|_| PlatformError(format!("no KV binding {CONFIG_KV_BINDING}")))?;
        kv.get(key)
            .bytes()
            .await
            .map_err(|e| PlatformError(e.to_string()))
    }

    async fn put_text(&self, key: &str, value: &str) -> Result<(), PlatformError> {
        let err = |e: worker::kv::KvError| PlatformError(format!("{key}: {e}"));
        self.kv()?
            .put(key, value)
            .map_err(err)?
            .execute()
            .await
            .map_err(err)
    }

    async fn put_bytes(&self, key: &str, value: &[u8]) -> Result<(), PlatformError> {
        let err = |e: worker::kv::KvError| PlatformError(format!("{key}: {e}"));
        self.kv()?
            .put_bytes(key, value)
            .map_err(err)?
            .execute()
            .await
            .map_err(err)
    }

    async fn delete(&self, key: &str) -> Result<(), PlatformError> {
        self.kv()?
            .delete(key)
            .await
            .map_err(|e| PlatformError(format!("{key}: {e}")))
    }
}

impl WorkerPlatform {
    /// The config KV binding; a missing binding is a platform error (not a panic).
    fn kv(&self) -> Result<worker::kv::KvStore, PlatformError> {
        self.env
            .kv(CONFIG_KV_BINDING)
            .map_err(|_| PlatformError(format!("no KV binding {CONFIG_KV_BINDING}")))
    }
}

impl Upstream for WorkerPlatform {
    type Body = WorkerBody;
    type Headers = JsHeaders;

    async fn send(
        &self,
        _inbound: &HeaderList,
        req: &UpstreamRequest,
        body: WorkerBody,
    ) -> Result<UpstreamResponse<WorkerBody, JsHeaders>, UpstreamError> {
        let connect = |e: JsValue| UpstreamError::Connect(js_error(e));
        let init = web_sys::RequestInit::new();
        init.set_method(&req.method);
        // A native copy of the client's headers with only the core's edits applied.
        let headers = match &self.request {
            Some(request) => web_sys::Headers::new_with_headers(&request.headers()),
            None => web_sys::Headers::new(),
        }
        .map_err(connect)?;
        // A value the runtime refuses (it checks header syntax) is not the backend's fault.
        apply_edits(&headers, &req.headers).map_err(|e| UpstreamError::Invalid(js_error(e)))?;
        init.set_headers(&headers.into());
        // A gateway passes redirects back to the client; it never follows them itself.
        init.set_redirect(web_sys::RequestRedirect::Manual);
        // A streamed body goes through a native identity stream (workerd's FixedLengthStream
        // when the length is declared, so the backend gets `Content-Length` rather than chunked
        // encoding); the pipe's completion tells when the upload is done.
        let mut upload_done = None;
        match &body {
            WorkerBody::Stream(s) => match pipe_through(s, req.content_length) {
                Ok((readable, done)) => {
                    init.set_body(&readable);
                    upload_done = Some(JsFuture::from(done));
                }
                Err(_) => init.set_body(&s.clone().into()),
            },
            other => {
                if let Some(b) = other.as_js() {
                    init.set_body(&b);
                }
            }
        }
        // With nothing to upload, the response-head timeout is a native AbortSignal.timeout
        // (no timer or controller of ours). With a streamed upload, the timer starts when the
        // upload is done (as Envoy's route timeout), so it is ours.
        let controller = match upload_done {
            None => {
                init.set_signal(Some(&web_sys::AbortSignal::timeout_with_f64(
                    req.timeout_ms as f64,
                )));
                None
            }
            Some(_) => {
                let c = web_sys::AbortController::new().map_err(connect)?;
                init.set_signal(Some(&c.signal()));
                Some(c)
            }
        };
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let fetch = JsFuture::from(global.fetch_with_str_and_init(&req.url, &init));
        let (Some(done), Some(controller)) = (upload_done, controller) else {
            return match fetch.await {
                Ok(resp) => response_head(resp),
                Err(e) if is_timeout(&e) => Err(UpstreamError::Timeout),
                Err(e) => Err(connect(e)),
            };
        };
        let fetch = match select(fetch, done).await {
            Either::Left((answer, _)) => return response_head(answer.map_err(connect)?),
            Either::Right((_, pending)) => pending,
        };
        let timeout = worker::Delay::from(Duration::from_millis(req.timeout_ms));
        match select(fetch, timeout).await {
            Either::Left((answer, _)) => response_head(answer.map_err(connect)?),
            Either::Right(_) => {
                controller.abort();
                Err(UpstreamError::Timeout)
            }
        }
    }

    fn try_clone_body(&self, body: &WorkerBody) -> Option<WorkerBody> {
        match body {
            WorkerBody::Empty => Some(WorkerBody::Empty),
            // fetch copies a buffer body when the request is built, so the array can be reused.
            WorkerBody::Bytes(b) => Some(WorkerBody::Bytes(b.clone())),
            WorkerBody::Stream(_) => None,
        }
    }

    async fn buffer_body(&self, body: WorkerBody, limit: u64) -> Result<WorkerBody, PlatformError> {
        let WorkerBody::Stream(stream) = body else {
            return Ok(body);
        };
        let err = |e: JsValue| PlatformError(js_error(e));
        let reader = web_sys::Response::new_with_opt_readable_stream(Some(&stream)).map_err(err)?;
        let buffer = JsFuture::from(reader.array_buffer().map_err(err)?)
            .await
            .map_err(err)?;
        let bytes = js_sys::Uint8Array::new(&buffer);
        if u64::from(bytes.length()) > limit {
            return Err(PlatformError(format!(
                "body of {} bytes exceeds the replay limit {limit}",
                bytes.length()
            )));
        }
        Ok(WorkerBody::Bytes(bytes))
    }

    fn empty_body(&self) -> WorkerBody {
        WorkerBody::Empty
    }
}

thread_local! {
    // One no-op rejection handler per isolate (not one leaked closure per upload).
    static IGNORE_REJECTION: wasm_bindgen::closure::Closure<dyn FnMut(JsValue)> =
        wasm_bindgen::closure::Closure::new(|_: JsValue| {});
}

/// True for the rejection of a fetch whose `AbortSignal.timeout` fired (a `TimeoutError`).
fn is_timeout(e: &JsValue) -> bool {
    js_sys::Reflect::get(e, &"name".into())
        .ok()
        .and_then(|n| n.as_string())
        .as_deref()
        == Some("TimeoutError")
}

/// The core's view of a fetch response: status, headers and the unread body stream.
fn response_head(resp: JsValue) -> Result<UpstreamResponse<WorkerBody, JsHeaders>, UpstreamError> {
    let resp: web_sys::Response = resp.unchecked_into();
    Ok(UpstreamResponse {
        status: resp.status(),
        headers: JsHeaders(resp.headers()),
        body: resp.body().map_or(WorkerBody::Empty, WorkerBody::Stream),
    })
}

/// Pipes `stream` into a native identity stream (`FixedLengthStream(len)` when the length is
/// known, else `IdentityTransformStream`). Returns the readable side, to send as the body, and
/// a promise that settles when the whole body has been written (it never rejects: a client
/// that aborts mid-upload makes the fetch fail, which the caller reports).
fn pipe_through(
    stream: &web_sys::ReadableStream,
    len: Option<u64>,
) -> Result<(JsValue, js_sys::Promise), JsValue> {
    use js_sys::{Function, Reflect};
    let global = js_sys::global();
    let (ctor_name, args) = match len {
        Some(len) => (
            "FixedLengthStream",
            js_sys::Array::of1(&JsValue::from_f64(len as f64)),
        ),
        None => ("IdentityTransformStream", js_sys::Array::new()),
    };
    let ctor: Function = Reflect::get(&global, &ctor_name.into())?.dyn_into()?;
    let pair = Reflect::construct(&ctor, &args)?;
    let readable = Reflect::get(&pair, &"readable".into())?;
    let writable = Reflect::get(&pair, &"writable".into())?;
    let pipe_to: Function = Reflect::get(stream, &"pipeTo".into())?.dyn_into()?;
    let piped: js_sys::Promise = pipe_to.call1(stream, &writable)?.dyn_into()?;
    let done = IGNORE_REJECTION.with(|ignore| piped.catch(ignore));
    Ok((readable, done))
}

impl Crypto for WorkerPlatform {
    async fn verify_signature(
        &self,
        alg: JwsAlgorithm,
        key: &PublicKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, PlatformError> {
        #[cfg(feature = "wasm-crypto")]
        return edgegate_core::auth::soft_crypto::verify(alg, key, signing_input, signature);
        #[cfg(not(feature = "wasm-crypto"))]
        crate::crypto::verify(alg, key, signing_input, signature).await
    }

    async fn sign_ed25519(
        &self,
        key_id: &str,
        seed: &[u8; 32],
        message: &[u8],
    ) -> Result<Vec<u8>, PlatformError> {
        #[cfg(feature = "wasm-crypto")]
        return {
            let _ = key_id;
            Ok(edgegate_core::auth::soft_crypto::sign_ed25519(
                seed, message,
            ))
        };
        #[cfg(not(feature = "wasm-crypto"))]
        crate::crypto::sign_ed25519(key_id, seed, message).await
    }
}

impl Http for WorkerPlatform {
    async fn fetch_buffered(
        &self,
        req: &HttpRequest,
        max_body: usize,
    ) -> Result<HttpResponse, PlatformError> {
        let err = |e: JsValue| PlatformError(js_error(e));
        let init = web_sys::RequestInit::new();
        init.set_method(&req.method);
        let headers = web_sys::Headers::new().map_err(err)?;
        for (n, v) in &req.headers {
            headers.append(n, v).map_err(err)?;
        }
        init.set_headers(&headers.into());
        if let Some(body) = &req.body {
            init.set_body(&js_sys::Uint8Array::from(body.as_slice()).into());
        }
        // The timeout covers the whole exchange, body included.
        init.set_signal(Some(&web_sys::AbortSignal::timeout_with_f64(
            req.timeout_ms as f64,
        )));
        // Keys and tokens are trusted only from the configured URL: a 3xx is a failed fetch.
        init.set_redirect(web_sys::RequestRedirect::Manual);
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let resp: web_sys::Response =
            JsFuture::from(global.fetch_with_str_and_init(&req.url, &init))
                .await
                .map_err(|e| {
                    if is_timeout(&e) {
                        PlatformError("timeout".into())
                    } else {
                        err(e)
                    }
                })?
                .unchecked_into();
        let declared = resp
            .headers()
            .get("content-length")
            .ok()
            .flatten()
            .and_then(|v| v.parse::<usize>().ok());
        let too_large = || PlatformError(format!("body over {max_body} bytes"));
        if declared.is_some_and(|n| n > max_body) {
            return Err(too_large());
        }
        // Without a Content-Length (chunked) the cap is enforced while reading: the stream is
        // cancelled as soon as it passes `max_body`, never buffered whole.
        let stream = resp.body().map_or(WorkerBody::Empty, WorkerBody::Stream);
        let body = crate::body::read_limited(stream, max_body)
            .await
            .map_err(|e| e.map_or_else(too_large, PlatformError))?;
        Ok(HttpResponse {
            status: resp.status(),
            headers: crate::convert::header_list(&resp.headers()),
            body,
        })
    }
}

impl Secrets for WorkerPlatform {
    fn secret(&self, name: &str) -> Option<String> {
        self.env.secret(name).ok().map(|s| s.to_string())
    }
}

/// The Cache API (`caches.default`): shared by the isolates of one location.
impl SharedCache for WorkerPlatform {
    async fn shared_get(&self, key: &str) -> Result<Option<Vec<u8>>, PlatformError> {
        let cache = worker::Cache::default();
        match cache.get(shared_cache_url(key), false).await {
            Ok(Some(mut resp)) => resp
                .bytes()
                .await
                .map(Some)
                .map_err(|e| PlatformError(e.to_string())),
            Ok(None) => Ok(None),
            Err(e) => Err(PlatformError(e.to_string())),
        }
    }

    async fn shared_put(&self, key: &str, value: &[u8], ttl_s: u64) -> Result<(), PlatformError> {
        if ttl_s == 0 {
            return Ok(());
        }
        let err = |e: worker::Error| PlatformError(e.to_string());
        let headers = worker::Headers::new();
        headers
            .set("cache-control", &format!("max-age={ttl_s}"))
            .map_err(err)?;
        let resp = worker::Response::from_bytes(value.to_vec())
            .map_err(err)?
            .with_headers(headers);
        worker::Cache::default()
            .put(shared_cache_url(key), resp)
            .await
            .map_err(err)
    }
}

/// The Cache API is keyed by URL: a host no request can name.
fn shared_cache_url(key: &str) -> String {
    format!("https://edgegate.internal/{key}")
}

/// `request.cf.tlsClientAuth`: the client certificate as Cloudflare's edge verified it (mTLS
/// must be enabled for the zone). Read only when a route accepts `mtls`.
impl Counters for WorkerPlatform {
    /// One `POST` to the key's object, built and read through the JS APIs directly (a
    /// `web_sys::Request` with a string body, the stub's own `fetch`, one `text()`), not
    /// through workers-rs' `Request`/`Response` wrappers, which cost CPU on every call.
    async fn counter(&self, call: &CounterCall) -> Result<CounterReply, PlatformError> {
        let fail = |e: String| PlatformError(format!("counter {}: {e}", call.key));
        let body = serde_json::to_string(call).map_err(|e| fail(e.to_string()))?;
        let text = self
            .object_call(
                edgegate_durable_objects::COUNTER_BINDING,
                &call.key,
                "https://counter/",
                &body,
            )
            .await
            .map_err(fail)?;
        serde_json::from_str(&text).map_err(|e| fail(e.to_string()))
    }
}

/// The emergency overrides: the one `Control` object, over the same raw stub fetch.
impl Control for WorkerPlatform {
    async fn control(
        &self,
        call: &edgegate_core::control::ControlCall,
    ) -> Result<edgegate_core::control::ControlReply, PlatformError> {
        let fail = |e: String| PlatformError(format!("control object: {e}"));
        let body = serde_json::to_string(call).map_err(|e| fail(e.to_string()))?;
        let text = self
            .object_call(
                edgegate_durable_objects::CONTROL_BINDING,
                edgegate_core::control::OBJECT_NAME,
                "https://control/",
                &body,
            )
            .await
            .map_err(fail)?;
        serde_json::from_str(&text).map_err(|e| fail(e.to_string()))
    }
}

impl WorkerPlatform {
    /// One `POST` of `body` to the Durable Object `name` of namespace `binding`, built and
    /// read through the JS APIs directly (a `web_sys::Request` with a string body, the stub's
    /// own `fetch`, one `text()`), not through workers-rs' `Request`/`Response` wrappers,
    /// which cost CPU on every call. Returns the 200 answer's text.
    ///
    /// Errors: no such binding, the call failed, or the object answered another status.
    async fn object_call(
        &self,
        binding: &str,
        name: &str,
        url: &str,
        body: &str,
    ) -> Result<String, String> {
        let js = |e: JsValue| format!("{e:?}");
        let stub: worker::worker_sys::DurableObject = self
            .env
            .durable_object(binding)
            .and_then(|ns| ns.get_by_name(name))
            .map_err(|e| e.to_string())?
            .into_rpc();
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        init.set_body(&JsValue::from_str(body));
        let req = web_sys::Request::new_with_str_and_init(url, &init).map_err(js)?;
        let resp: web_sys::Response = JsFuture::from(stub.fetch_with_request(&req).map_err(js)?)
            .await
            .map_err(js)?
            .dyn_into()
            .map_err(js)?;
        let text = JsFuture::from(resp.text().map_err(js)?)
            .await
            .map_err(js)?
            .as_string()
            .unwrap_or_default();
        if resp.status() != 200 {
            return Err(format!("answered {}: {text}", resp.status()));
        }
        Ok(text)
    }
}

impl ClientGeo for WorkerPlatform {
    fn client_country(&self) -> Option<String> {
        let cf = js_sys::Reflect::get(self.request.as_ref()?, &"cf".into()).ok()?;
        js_sys::Reflect::get(&cf, &"country".into())
            .ok()?
            .as_string()
            .filter(|c| !c.is_empty())
    }
}

/// An isolate serves many requests: the core's in-memory state carries over.
impl Instances for WorkerPlatform {
    fn reuses_instances(&self) -> bool {
        true
    }
}

impl ClientCertificates for WorkerPlatform {
    fn supports_client_certificates(&self) -> bool {
        true
    }

    fn client_certificate(&self) -> Option<ClientCertificate> {
        let cf = js_sys::Reflect::get(self.request.as_ref()?, &"cf".into()).ok()?;
        let auth = js_sys::Reflect::get(&cf, &"tlsClientAuth".into())
            .ok()
            .filter(|v| v.is_object())?;
        let field = |name: &str| -> String {
            js_sys::Reflect::get(&auth, &name.into())
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_default()
        };
        let verified = field("certVerified");
        Some(ClientCertificate {
            presented: field("certPresented") == "1",
            verified: verified == "SUCCESS",
            failure: (verified != "SUCCESS").then_some(verified),
            revoked: field("certRevoked") == "1",
            fingerprint_sha256: field("certFingerprintSHA256").to_ascii_lowercase(),
            subject_dn: field("certSubjectDNRFC2253"),
            issuer_dn: field("certIssuerDNRFC2253"),
        })
    }
}
