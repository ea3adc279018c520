//! Runtime request/response ⇄ the core's types.
//!
//! Crossing the JS/wasm boundary is the expensive part of a request on Workers (each string
//! is encoded or decoded), so header lists cross as one JSON string each way rather than one
//! call per entry.

use crate::body::WorkerBody;
use edgegate_core::headers::{HeaderEdits, HeaderList, HeaderRead};
use edgegate_core::pipeline::{GatewayResponse, RequestHead, ResponseBody, ResponseHeaders};
use wasm_bindgen::JsValue;

/// Collects a `Headers` object into a [`HeaderList`] (entries come lower-cased, with each
/// `set-cookie` separate): `JSON.stringify(Array.from(headers))`, parsed in wasm.
pub fn header_list(headers: &web_sys::Headers) -> HeaderList {
    let pairs = js_sys::Array::from(headers);
    let json = js_sys::JSON::stringify(&pairs)
        .ok()
        .and_then(|s| s.as_string())
        .unwrap_or_default();
    HeaderList::from_pairs(serde_json::from_str::<Vec<(String, String)>>(&json).unwrap_or_default())
}

/// A `Headers` object from a [`HeaderList`]: `new Headers(JSON.parse(pairs))`. Fails only on a
/// value the runtime rejects.
pub fn js_headers(list: &HeaderList) -> Result<web_sys::Headers, JsValue> {
    let pairs: Vec<(&str, &str)> = list.iter().collect();
    let json = serde_json::to_string(&pairs).map_err(|e| JsValue::from_str(&e.to_string()))?;
    web_sys::Headers::new_with_str_sequence_sequence(&js_sys::JSON::parse(&json)?)
}

/// A JS `Headers` object as the core reads it: one `get` per field it asks for.
pub struct JsHeaders(pub web_sys::Headers);

impl HeaderRead for JsHeaders {
    fn get_header(&self, name: &str) -> Option<String> {
        self.0.get(name).ok().flatten()
    }
}

#[wasm_bindgen::prelude::wasm_bindgen(inline_js = "
export function applyHeaderEdits(headers, edits) {
  const e = JSON.parse(edits);
  for (const name of e[0]) headers.delete(name);
  for (const [name, value] of e[1]) headers.set(name, value);
}")]
extern "C" {
    /// Applies `[[removals], [[name, value], ...]]` to a `Headers` object in one call: each
    /// edit would otherwise be its own JS/wasm crossing.
    #[wasm_bindgen::prelude::wasm_bindgen(js_name = applyHeaderEdits, catch)]
    fn apply_header_edits(headers: &web_sys::Headers, edits: &str) -> Result<(), JsValue>;
}

/// Applies the core's edits to a mutable `Headers` object (removals, then sets).
pub fn apply_edits(headers: &web_sys::Headers, edits: &HeaderEdits) -> Result<(), JsValue> {
    if edits.removals().is_empty() && edits.sets().is_empty() {
        return Ok(());
    }
    let json = serde_json::to_string(&(edits.removals(), edits.sets()))
        .map_err(|e| JsValue::from_str(&e.to_string()))?;
    apply_header_edits(headers, &json)
}

/// Splits an absolute request URL into (scheme, host with port, path, query). The runtime
/// hands over a URL it has already parsed and normalized, so no URL parser is needed here.
fn split_url(url: &str) -> (&str, &str, &str, Option<&str>) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    let target = target.split_once('#').map_or(target, |(t, _)| t);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    (
        scheme,
        authority,
        if path.is_empty() { "/" } else { path },
        query,
    )
}

/// The core's view of an incoming request. The client address is `CF-Connecting-IP`.
pub fn inbound(req: &web_sys::Request) -> (RequestHead, WorkerBody) {
    let url = req.url();
    let (scheme, host, path, query) = split_url(&url);
    let headers = header_list(&req.headers());
    let head = RequestHead {
        method: req.method(),
        scheme: scheme.to_string(),
        host: host.to_string(),
        path: path.to_string(),
        query: query.map(str::to_string),
        client_ip: headers.get("cf-connecting-ip").map(str::to_string),
        headers,
    };
    let body = req.body().map_or(WorkerBody::Empty, WorkerBody::Stream);
    (head, body)
}

/// The runtime response for the core's answer; upstream bodies stream straight through and
/// upstream headers are copied natively, with only the core's edits crossing from wasm.
pub fn outbound(
    resp: GatewayResponse<WorkerBody, JsHeaders>,
) -> Result<web_sys::Response, JsValue> {
    let init = web_sys::ResponseInit::new();
    init.set_status(resp.status);
    let edits = match resp.headers {
        ResponseHeaders::Own(list) => {
            init.set_headers(&js_headers(&list)?.into());
            None
        }
        ResponseHeaders::Upstream(JsHeaders(base), edits) => {
            init.set_headers(&base.into());
            Some(edits)
        }
    };
    let response = match resp.body {
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
    if let Some(edits) = edits {
        apply_edits(&response.headers(), &edits)?;
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::split_url;

    #[test]
    fn url_split_table() {
        for (url, want) in [
            (
                "https://api.example.com/users/1?x=1",
                ("https", "api.example.com", "/users/1", Some("x=1")),
            ),
            (
                "http://127.0.0.1:8787/",
                ("http", "127.0.0.1:8787", "/", None),
            ),
            (
                "http://[::1]:8787/a?b#c",
                ("http", "[::1]:8787", "/a", Some("b")),
            ),
            ("http://h", ("http", "h", "/", None)),
            ("http://h?q", ("http", "h", "/", Some("q"))),
        ] {
            assert_eq!(split_url(url), want, "{url}");
        }
    }
}
