//! Request and response bodies as they pass through the gateway on Spin: bytes the gateway
//! holds, or a `wasi:http` stream read chunk by chunk (a client's request body, a backend's
//! response body), never collected unless the core asks for a replayable copy.

use futures::stream::{Stream, StreamExt as _};
use futures::SinkExt as _;
use spin_sdk::http::IncomingResponse;
use std::pin::Pin;

/// A chunk stream as spin-sdk returns it.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Vec<u8>, String>>>>;

/// A body on its way through the gateway.
pub enum SpinBody {
    /// In memory (empty, buffered for replay, or made by the gateway).
    Bytes(Vec<u8>),
    /// A stream still to be read.
    Stream(StreamBody),
}

/// A streamed body. When it is a backend's response body, the response resource is kept
/// until the stream is dropped: the stream (a child resource) must go first, and dropping
/// the response early would cancel the exchange.
pub struct StreamBody {
    // Field order is drop order: the stream before its response.
    stream: ChunkStream,
    _response: Option<IncomingResponse>,
}

impl SpinBody {
    /// A client's request body stream.
    pub fn from_stream(stream: ChunkStream) -> Self {
        SpinBody::Stream(StreamBody {
            stream,
            _response: None,
        })
    }

    /// A backend's response body, keeping `response` alive as long as the body.
    pub fn from_response(response: IncomingResponse) -> Self {
        let stream = response
            .take_body_stream()
            .map(|r| r.map_err(|e| format!("{e:?}")));
        SpinBody::Stream(StreamBody {
            stream: Box::pin(stream),
            _response: Some(response),
        })
    }

    /// Reads the whole body, failing once it passes `limit` bytes or the stream breaks.
    pub async fn collect(self, limit: u64) -> Result<Vec<u8>, String> {
        self.read_limited(limit).await.map_err(|e| match e {
            None => format!("body over {limit} bytes"),
            Some(detail) => detail,
        })
    }

    /// Reads the whole body, stopping as soon as it passes `limit` bytes.
    ///
    /// Errors: `None` when the body is longer than `limit`; `Some(detail)` when the stream
    /// broke.
    pub async fn read_limited(self, limit: u64) -> Result<Vec<u8>, Option<String>> {
        match self {
            SpinBody::Bytes(b) if b.len() as u64 > limit => Err(None),
            SpinBody::Bytes(b) => Ok(b),
            SpinBody::Stream(mut s) => {
                let mut out = Vec::new();
                while let Some(chunk) = s.stream.next().await {
                    out.extend_from_slice(&chunk.map_err(Some)?);
                    if out.len() as u64 > limit {
                        return Err(None);
                    }
                }
                Ok(out)
            }
        }
    }

    /// Writes the body into `sink` chunk by chunk, then closes it.
    ///
    /// Errors: reading the source or writing the sink failed (the sink is dropped, which ends
    /// the body early; the peer sees a truncated message).
    pub async fn pipe<S, E>(self, sink: S) -> Result<(), String>
    where
        S: futures::Sink<Vec<u8>, Error = E>,
        E: std::fmt::Debug,
    {
        let mut sink = std::pin::pin!(sink);
        match self {
            SpinBody::Bytes(b) => {
                if !b.is_empty() {
                    sink.send(b).await.map_err(|e| format!("{e:?}"))?;
                }
            }
            SpinBody::Stream(mut s) => {
                while let Some(chunk) = s.stream.next().await {
                    sink.send(chunk?).await.map_err(|e| format!("{e:?}"))?;
                }
            }
        }
        sink.close().await.map_err(|e| format!("{e:?}"))
    }
}
