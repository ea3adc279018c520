//! Spin request → core [`RequestHead`], core response → Spin response. No decisions: only
//! representation changes, and Spin's own trigger headers (`spin-*`) are kept from the core.

use crate::body::SpinBody;
use edgegate_core::access_log::event_line;
use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{GatewayResponse, RequestHead, ResponseBody};
use spin_sdk::http::{Fields, IncomingRequest, Method, OutgoingResponse, ResponseOutparam};

/// The headers Spin's HTTP trigger adds to every request. They describe the platform's routing,
/// not the client's request, so they are not forwarded.
const SPIN_HEADERS: &[&str] = &[
    "spin-full-url",
    "spin-path-info",
    "spin-matched-route",
    "spin-raw-component-route",
    "spin-component-route",
    "spin-base-path",
    "spin-client-addr",
];

fn method_str(m: &Method) -> String {
    match m {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(s) => s.clone(),
    }
}

/// The client's IP from `spin-client-addr` (`1.2.3.4:5678` or `[::1]:5678`), without port.
fn client_ip(addr: &str) -> Option<String> {
    let host = match addr.strip_prefix('[') {
        Some(rest) => rest.split(']').next()?,
        None => addr.rsplit_once(':').map_or(addr, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// The core's view of a Spin request, and its body: a stream, or empty bytes when the
/// request declares no length and its body turns out to be empty (see
/// [`SpinBody::from_request`]).
pub fn inbound(req: IncomingRequest) -> (RequestHead, SpinBody) {
    let mut headers = HeaderList::new();
    let (mut full_url, mut client_addr, mut host) = (String::new(), None, None);
    for (name, value) in req.headers().entries() {
        let Ok(value) = String::from_utf8(value) else {
            continue;
        };
        match name.as_str() {
            "spin-full-url" => full_url = value,
            "spin-client-addr" => client_addr = Some(value),
            n if SPIN_HEADERS.contains(&n) => {}
            n => {
                if n == "host" {
                    host = Some(value.clone());
                }
                headers.append(n, value);
            }
        }
    }
    // wasi:http hides the Host header from components (a forbidden header); Spin gives the
    // request's scheme and authority in `spin-full-url` (and as the request's authority).
    let (scheme, url_authority) = match full_url.split_once("://") {
        Some((s, rest)) => (
            s.to_ascii_lowercase(),
            rest.split(['/', '?'])
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        None => ("http".to_string(), String::new()),
    };
    let host = host
        .or_else(|| req.authority())
        .filter(|h| !h.is_empty())
        .unwrap_or(url_authority);
    let path_with_query = req.path_with_query().unwrap_or_else(|| "/".into());
    let (path, query) = match path_with_query.split_once('?') {
        Some((p, q)) => (p.to_string(), (!q.is_empty()).then(|| q.to_string())),
        None => (path_with_query, None),
    };
    let head = RequestHead {
        method: method_str(&req.method()),
        scheme,
        host,
        path,
        query,
        headers,
        client_ip: client_addr.and_then(|a| client_ip(&a)),
    };
    // Without a declared length the body may be empty or chunked (wasi:http hides
    // Transfer-Encoding): SpinBody::from_request peeks at its first chunk to tell.
    let peek = match head.headers.get("content-length") {
        None => true,
        Some(len) => len.trim() == "0",
    };
    (head, SpinBody::from_request(req, peek))
}

/// Sends the core's answer: head first, then the body streamed through.
///
/// A header the runtime refuses (a forbidden name or an invalid value) is dropped and logged;
/// a body that breaks midway ends the response early (the client sees a truncated body).
pub async fn outbound(resp: GatewayResponse<SpinBody>, out: ResponseOutparam) {
    let headers = resp.header_list();
    let fields = Fields::new();
    for (name, value) in headers.iter() {
        if let Err(e) = fields.append(name, value.as_bytes()) {
            log_event(
                "spin_header_refused",
                serde_json::json!({"name": name, "error": format!("{e:?}")}),
            );
        }
    }
    let response = OutgoingResponse::new(fields);
    let _ = response.set_status_code(resp.status);
    let sink = response.take_body();
    out.set(response);
    let body = match resp.body {
        ResponseBody::Upstream(b) => b,
        ResponseBody::Bytes(b) => SpinBody::Bytes(b),
    };
    if let Err(e) = body.pipe(sink).await {
        log_event("response_body_broken", serde_json::json!({ "error": e }));
    }
}

/// One operational event line on stdout, in the core's format.
fn log_event(name: &str, fields: serde_json::Value) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    println!("{}", event_line(name, now_ms, fields));
}
