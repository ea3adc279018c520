//! Runtime request/response ⇄ the core's types.

use crate::body::WorkerBody;
use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{GatewayResponse, RequestHead, ResponseBody};
use wasm_bindgen::{JsCast, JsValue};
use worker::{Request, Response, Result};

/// Collects a `Headers` object into a [`HeaderList`] (entries come lower-cased, with each
/// `set-cookie` separate).
pub fn header_list(headers: &web_sys::Headers) -> HeaderList {
    let mut list = HeaderList::new();
    if let Ok(Some(iter)) = js_sys::try_iter(headers) {
        for entry in iter.flatten() {
            let pair: js_sys::Array = entry.unchecked_into();
            if let (Some(n), Some(v)) = (pair.get(0).as_string(), pair.get(1).as_string()) {
                list.append(&n, v);
            }
        }
    }
    list
}

/// A `Headers` object from a [`HeaderList`]. Fails only on a value the runtime rejects.
pub fn js_headers(list: &HeaderList) -> std::result::Result<web_sys::Headers, JsValue> {
    let headers = web_sys::Headers::new()?;
    for (n, v) in list.iter() {
        headers.append(n, v)?;
    }
    Ok(headers)
}

/// The core's view of an incoming request. The client address is `CF-Connecting-IP`.
pub fn inbound(req: &Request) -> Result<(RequestHead, WorkerBody)> {
    let url = req.url()?;
    let inner = req.inner();
    let headers = header_list(&inner.headers());
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => headers.get("host").unwrap_or_default().to_string(),
    };
    let head = RequestHead {
        method: inner.method(),
        scheme: url.scheme().to_string(),
        host,
        path: url.path().to_string(),
        query: url.query().map(str::to_string),
        client_ip: headers.get("cf-connecting-ip").map(str::to_string),
        headers,
    };
    let body = match inner.body() {
        Some(stream) => WorkerBody::Stream(stream),
        None => WorkerBody::Empty,
    };
    Ok((head, body))
}

/// The runtime response for the core's answer; upstream bodies stream straight through.
pub fn outbound(resp: GatewayResponse<WorkerBody>) -> Result<Response> {
    let init = web_sys::ResponseInit::new();
    init.set_status(resp.status);
    init.set_headers(&js_headers(&resp.headers)?.into());
    let js = match resp.body {
        ResponseBody::Upstream(WorkerBody::Stream(s)) => {
            web_sys::Response::new_with_opt_readable_stream_and_init(Some(&s), &init)
        }
        ResponseBody::Upstream(WorkerBody::Bytes(b)) => {
            web_sys::Response::new_with_opt_buffer_source_and_init(Some(&b), &init)
        }
        ResponseBody::Upstream(WorkerBody::Empty) => {
            web_sys::Response::new_with_opt_str_and_init(None, &init)
        }
        ResponseBody::Bytes(mut bytes) => {
            web_sys::Response::new_with_opt_u8_array_and_init(Some(&mut bytes), &init)
        }
    }?;
    Ok(Response::from(js))
}
