//! The core's platform traits on Workers: `Date.now()`, `crypto.getRandomValues`, console
//! logging, KV reads and `fetch` with a timeout.

use crate::body::WorkerBody;
use crate::convert::{header_list, js_headers};
use edgegate_core::platform::{
    Clock, Kv, Log, PlatformError, Random, Upstream, UpstreamError, UpstreamRequest,
    UpstreamResponse,
};
use futures_util::future::{select, Either};
use std::time::Duration;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::Env;

/// The KV binding that holds the config pointer and versions.
pub const CONFIG_KV_BINDING: &str = "EDGEGATE_CONFIG";

/// Workers' implementation of the platform traits, built per request from the bindings.
pub struct WorkerPlatform {
    kv: Option<worker::kv::KvStore>,
}

impl WorkerPlatform {
    /// Looks up the bindings. A missing KV binding makes every KV read fail (so the gateway
    /// answers 503 `no_config` and logs why) instead of failing the request here.
    pub fn new(env: &Env) -> Self {
        WorkerPlatform {
            kv: env.kv(CONFIG_KV_BINDING).ok(),
        }
    }
}

fn js_error(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|err| String::from(err.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

impl Clock for WorkerPlatform {
    fn now_ms(&self) -> u64 {
        worker::Date::now().as_millis()
    }
}

impl Random for WorkerPlatform {
    fn fill(&self, buf: &mut [u8]) {
        let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into())
            .ok()
            .and_then(|c| c.dyn_into::<web_sys::Crypto>().ok());
        // Workers always has crypto; should it ever be missing, ids are still unique enough
        // from the clock, and nothing security-relevant depends on them.
        let filled = crypto.is_some_and(|c| c.get_random_values_with_u8_array(buf).is_ok());
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
            .kv
            .as_ref()
            .ok_or_else(|| PlatformError(format!("no KV binding {CONFIG_KV_BINDING}")))?;
        kv.get(key)
            .text()
            .await
            .map_err(|e| PlatformError(e.to_string()))
    }
}

impl Upstream for WorkerPlatform {
    type Body = WorkerBody;

    async fn send(
        &self,
        req: &UpstreamRequest,
        body: WorkerBody,
    ) -> Result<UpstreamResponse<WorkerBody>, UpstreamError> {
        let connect = |e: JsValue| UpstreamError::Connect(js_error(e));
        let init = web_sys::RequestInit::new();
        init.set_method(&req.method);
        init.set_headers(&js_headers(&req.headers).map_err(connect)?.into());
        // A gateway passes redirects back to the client; it never follows them itself.
        init.set_redirect(web_sys::RequestRedirect::Manual);
        match (&body, req.content_length) {
            // A stream of declared length goes through workerd's FixedLengthStream so the
            // backend gets `Content-Length` rather than chunked encoding (many backends
            // require it for uploads); the bytes still stream.
            (WorkerBody::Stream(s), Some(len)) => {
                init.set_body(&fixed_length(s, len).unwrap_or_else(|_| s.clone().into()))
            }
            _ => {
                if let Some(b) = body.as_js() {
                    init.set_body(&b);
                }
            }
        }
        let controller = web_sys::AbortController::new().map_err(connect)?;
        init.set_signal(Some(&controller.signal()));
        let request = web_sys::Request::new_with_str_and_init(&req.url, &init).map_err(connect)?;
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let fetch = JsFuture::from(global.fetch_with_request(&request));
        let timeout = worker::Delay::from(Duration::from_millis(req.timeout_ms));
        match select(fetch, timeout).await {
            Either::Left((Ok(resp), _)) => {
                let resp: web_sys::Response = resp.unchecked_into();
                Ok(UpstreamResponse {
                    status: resp.status(),
                    headers: header_list(&resp.headers()),
                    body: resp.body().map_or(WorkerBody::Empty, WorkerBody::Stream),
                })
            }
            Either::Left((Err(e), _)) => Err(connect(e)),
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

/// `stream` piped into `new FixedLengthStream(len)`; returns its readable side as the body. The pipe's promise is
/// given a no-op rejection handler: a client that aborts mid-upload makes the upstream fetch
/// fail, which the caller already reports.
fn fixed_length(stream: &web_sys::ReadableStream, len: u64) -> Result<JsValue, JsValue> {
    use js_sys::{Function, Reflect};
    let global = js_sys::global();
    let ctor: Function = Reflect::get(&global, &"FixedLengthStream".into())?.dyn_into()?;
    let args = js_sys::Array::of1(&JsValue::from_f64(len as f64));
    let pair = Reflect::construct(&ctor, &args)?;
    let readable = Reflect::get(&pair, &"readable".into())?;
    let writable = Reflect::get(&pair, &"writable".into())?;
    let pipe_to: Function = Reflect::get(stream, &"pipeTo".into())?.dyn_into()?;
    let done: js_sys::Promise = pipe_to.call1(stream, &writable)?.dyn_into()?;
    IGNORE_REJECTION.with(|ignore| {
        let _ = done.catch(ignore);
    });
    Ok(readable)
}
