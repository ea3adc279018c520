//! Spin request → core [`RequestHead`], core response → Spin response. No decisions: only
//! representation changes, and Spin's own trigger headers (`spin-*`) are kept from the core.

use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{GatewayResponse, RequestHead, ResponseBody};
use spin_sdk::http::{Method, Request, Response};

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

/// The core's view of a Spin request, and its (buffered) body.
pub fn inbound(req: &Request) -> (RequestHead, Vec<u8>) {
    let header = |name: &str| {
        req.header(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let mut headers = HeaderList::new();
    for (name, value) in req.headers() {
        if SPIN_HEADERS.contains(&name) {
            continue;
        }
        if let Some(v) = value.as_str() {
            headers.append(name, v);
        }
    }
    // wasi:http hides the Host header from components (a forbidden header); Spin gives the
    // request's scheme and authority in `spin-full-url`.
    let full_url = header("spin-full-url").unwrap_or_default();
    let (scheme, authority) = match full_url.split_once("://") {
        Some((s, rest)) => (
            s.to_ascii_lowercase(),
            rest.split(['/', '?'])
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        None => ("http".to_string(), String::new()),
    };
    let host = header("host").unwrap_or(authority);
    let query = req.query();
    let head = RequestHead {
        method: method_str(req.method()),
        scheme,
        host,
        path: req.path().to_string(),
        query: (!query.is_empty()).then(|| query.to_string()),
        headers,
        client_ip: header("spin-client-addr").and_then(|a| client_ip(&a)),
    };
    (head, req.body().to_vec())
}

/// The Spin response for the core's answer.
pub fn outbound(resp: GatewayResponse<Vec<u8>>) -> Response {
    let headers = resp.header_list();
    let body = match resp.body {
        ResponseBody::Upstream(b) | ResponseBody::Bytes(b) => b,
    };
    let mut builder = Response::builder();
    builder.status(resp.status);
    for (name, value) in headers.iter() {
        builder.header(name, value);
    }
    builder.body(body).build()
}
