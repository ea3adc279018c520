//! The body type the core carries through without reading it.

use wasm_bindgen::JsValue;

/// A request or response body on Workers.
pub enum WorkerBody {
    /// No body.
    Empty,
    /// A stream, passed through untouched (never buffered whole).
    Stream(web_sys::ReadableStream),
    /// Bytes in memory (a body buffered so a failover can resend it).
    Bytes(js_sys::Uint8Array),
}

impl WorkerBody {
    /// The body as a JS value for `RequestInit.body`, or None.
    pub fn as_js(&self) -> Option<JsValue> {
        match self {
            WorkerBody::Empty => None,
            WorkerBody::Stream(s) => Some(s.clone().into()),
            WorkerBody::Bytes(b) => Some(b.clone().into()),
        }
    }
}
