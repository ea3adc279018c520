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

/// Reads a body whole (an admin request's, or a buffered fetch's response), at most `limit`
/// bytes, chunk by chunk: a longer body is not buffered past the limit, and its stream is
/// cancelled. Errors: `None` when it is longer than `limit`, `Some(detail)` when the stream
/// broke.
pub async fn read_limited(body: WorkerBody, limit: usize) -> Result<Vec<u8>, Option<String>> {
    use js_sys::{Function, Reflect, Uint8Array};
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    let stream = match body {
        WorkerBody::Empty => return Ok(Vec::new()),
        WorkerBody::Bytes(b) if b.length() as usize > limit => return Err(None),
        WorkerBody::Bytes(b) => return Ok(b.to_vec()),
        WorkerBody::Stream(s) => s,
    };
    let broke = |e: JsValue| Some(crate::platform::js_error(e));
    let reader = Reflect::get(&stream, &"getReader".into())
        .and_then(|f| f.dyn_into::<Function>())
        .and_then(|f| f.call0(&stream))
        .map_err(broke)?;
    let read: Function = Reflect::get(&reader, &"read".into())
        .and_then(|f| f.dyn_into::<Function>())
        .map_err(broke)?;
    let mut out = Vec::new();
    loop {
        let promise: js_sys::Promise = read
            .call0(&reader)
            .and_then(|p| p.dyn_into())
            .map_err(broke)?;
        let chunk = JsFuture::from(promise).await.map_err(broke)?;
        if Reflect::get(&chunk, &"done".into()).is_ok_and(|d| d.is_truthy()) {
            return Ok(out);
        }
        let value = Reflect::get(&chunk, &"value".into()).map_err(broke)?;
        let bytes = Uint8Array::new(&value);
        if out.len() + bytes.length() as usize > limit {
            if let Ok(cancel) =
                Reflect::get(&reader, &"cancel".into()).and_then(|f| f.dyn_into::<Function>())
            {
                let _ = cancel.call0(&reader);
            }
            return Err(None);
        }
        out.extend_from_slice(&bytes.to_vec());
    }
}
