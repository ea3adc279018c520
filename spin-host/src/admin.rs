//! The admin endpoint (its own listener, never reachable through the component's port): lets
//! tests seed and inspect key-value stores while the host runs.
//!
//! | request | answer |
//! |---|---|
//! | `GET /health` | 200 `ok` |
//! | `GET /kv/{store}` | 200, JSON array of the store's keys |
//! | `GET /kv/{store}/{key}` | 200 with the value's bytes, or 404 |
//! | `PUT /kv/{store}/{key}` (body: the value) | 204 |
//! | `DELETE /kv/{store}/{key}` | 204 (also when absent) |
//! | `POST /cron` | runs the component's `handle-cron-event` once on a fresh instance, as the spin-trigger-cron plugin does on each tick: 204, or 500 with the error |
//!
//! `{store}` and `{key}` are percent-decoded (`config%3Aactive` and `config:active` are the
//! same key). An unknown store is 404; a write that cannot be persisted is 500.

use crate::kv::KvError;
use crate::server::Host;
use crate::state::Shared;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use tokio::net::TcpListener;
use wasmtime_wasi_http::io::TokioIo;

/// Serves the admin endpoint on `listener` until the process ends.
pub async fn serve(listener: TcpListener, host: Arc<Host>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let host = host.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let host = host.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, &host).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn handle(req: Request<hyper::body::Incoming>, host: &Host) -> Response<Full<Bytes>> {
    let shared: &Shared = host.shared();
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if path == "/health" {
        return reply(StatusCode::OK, "ok");
    }
    if path == "/cron" {
        if method != Method::POST {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        return match host.cron_event(now).await {
            Ok(()) => reply(StatusCode::NO_CONTENT, ""),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        };
    }
    let Some(rest) = path.strip_prefix("/kv/") else {
        return reply(StatusCode::NOT_FOUND, "unknown admin path");
    };
    let (store, key) = match rest.split_once('/') {
        Some((s, k)) => (percent_decode(s), Some(percent_decode(k))),
        None => (percent_decode(rest), None),
    };
    let (Some(store), key) = (store, key) else {
        return reply(StatusCode::BAD_REQUEST, "bad percent-encoding");
    };
    if !shared.kv.has(&store) {
        return reply(StatusCode::NOT_FOUND, format!("no store {store:?}"));
    }
    let result = match (method, key) {
        (Method::GET, None) => shared
            .kv
            .keys(&store)
            .map(|keys| reply(StatusCode::OK, serde_json::json!(keys).to_string())),
        (_, Some(None)) => return reply(StatusCode::BAD_REQUEST, "bad percent-encoding"),
        (Method::GET, Some(Some(key))) => shared.kv.get(&store, &key).map(|v| match v {
            Some(v) => reply(StatusCode::OK, v),
            None => reply(StatusCode::NOT_FOUND, ""),
        }),
        (Method::PUT, Some(Some(key))) => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes().to_vec(),
                Err(e) => return reply(StatusCode::BAD_REQUEST, format!("reading body: {e}")),
            };
            shared
                .kv
                .set(&store, &key, body)
                .map(|()| reply(StatusCode::NO_CONTENT, ""))
        }
        (Method::DELETE, Some(Some(key))) => shared
            .kv
            .delete(&store, &key)
            .map(|()| reply(StatusCode::NO_CONTENT, "")),
        _ => return reply(StatusCode::METHOD_NOT_ALLOWED, ""),
    };
    result.unwrap_or_else(|e| match e {
        KvError::AccessDenied => reply(StatusCode::NOT_FOUND, "no such store"),
        KvError::Io(m) => reply(StatusCode::INTERNAL_SERVER_ERROR, m),
    })
}

/// Decodes `%XX` escapes; None for a malformed escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_escapes() {
        assert_eq!(
            percent_decode("config%3Aactive").as_deref(),
            Some("config:active")
        );
        assert_eq!(percent_decode("a%2").as_deref(), None);
        assert_eq!(percent_decode("%zz").as_deref(), None);
        assert_eq!(percent_decode("%ff").as_deref(), None);
    }
}
