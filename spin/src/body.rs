//! Request and response bodies as they pass through the gateway on Spin: bytes the gateway
//! holds, or a `wasi:http` stream read chunk by chunk (a client's request body, a backend's
//! response body), never collected unless the core asks for a replayable copy.

use futures::stream::{Stream, StreamExt as _};
use futures::SinkExt as _;
use spin_executor::CancelOnDropToken;
use spin_sdk::http::{IncomingRequest, IncomingResponse};
use spin_sdk::wit::wasi::http0_2_0::types::IncomingBody;
use std::pin::Pin;
use std::task::Poll;
use wasi::io::streams::{InputStream, StreamError};

/// Bytes asked for per read of an incoming body (as spin-sdk reads them).
const READ_SIZE: u64 = 16 * 1024;

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

    /// A client's request body. With `peek` (the request declares no length, or 0), the
    /// first chunk is read before the core sees the request: wasi:http hides
    /// `Transfer-Encoding`, so a request without a body and a chunked one look alike, and only
    /// the stream tells them apart. A stream that ends at once becomes an empty (replayable)
    /// body, so a GET can fail over; otherwise the chunk read is put back in front of the
    /// rest, which still streams (nothing beyond the first chunk is read ahead).
    ///
    /// The first read blocks the instance until the client sends a first byte or ends the
    /// body; nothing else runs in the instance before the request is handed to the core.
    pub fn from_request(req: IncomingRequest, peek: bool) -> Self {
        let Some(incoming) = Incoming::open(req) else {
            // The body was taken already (it never is: the request is new): nothing to read.
            return SpinBody::Bytes(Vec::new());
        };
        if !peek {
            return SpinBody::from_stream(Box::pin(incoming.into_stream()));
        }
        let first = match incoming.read_first() {
            Ok(Some(chunk)) => Ok(chunk),
            Ok(None) => return SpinBody::Bytes(Vec::new()),
            Err(e) => Err(e),
        };
        let rest = incoming.into_stream();
        SpinBody::from_stream(Box::pin(futures::stream::iter([first]).chain(rest)))
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

/// A `wasi:http` incoming body read as a chunk stream (spin-sdk's own reader, which this
/// crate cannot reach once the body stream has been taken to peek at it). On drop the input
/// stream goes first (a child resource), then the body is finished.
struct Incoming {
    stream_and_body: Option<(InputStream, IncomingBody)>,
    wait: Option<CancelOnDropToken>,
}

impl Incoming {
    /// The request's body stream; `None` if its body was already taken.
    fn open(req: IncomingRequest) -> Option<Self> {
        let body = req.consume().ok()?;
        let stream = body.stream().ok()?;
        Some(Incoming {
            stream_and_body: Some((stream, body)),
            wait: None,
        })
    }

    /// Blocks until the first bytes arrive (`Some`) or the body ends (`None`).
    ///
    /// Errors: the stream broke.
    fn read_first(&self) -> Result<Option<Vec<u8>>, String> {
        let Some((stream, _)) = &self.stream_and_body else {
            return Ok(None);
        };
        loop {
            match stream.blocking_read(READ_SIZE) {
                Ok(chunk) if chunk.is_empty() => continue,
                Ok(chunk) => return Ok(Some(chunk)),
                Err(StreamError::Closed) => return Ok(None),
                Err(StreamError::LastOperationFailed(e)) => return Err(format!("{e:?}")),
            }
        }
    }

    /// The rest of the body, chunk by chunk, without blocking the instance (a read that finds
    /// nothing waits on the stream's pollable through spin's executor).
    fn into_stream(mut self) -> impl Stream<Item = Result<Vec<u8>, String>> {
        futures::stream::poll_fn(move |cx| {
            let Some((stream, _)) = &self.stream_and_body else {
                return Poll::Ready(None);
            };
            match stream.read(READ_SIZE) {
                Ok(chunk) if chunk.is_empty() => {
                    self.wait = Some(CancelOnDropToken::from(
                        spin_executor::push_waker_and_get_token(
                            stream.subscribe(),
                            cx.waker().clone(),
                        ),
                    ));
                    Poll::Pending
                }
                Ok(chunk) => Poll::Ready(Some(Ok(chunk))),
                Err(StreamError::Closed) => Poll::Ready(None),
                Err(StreamError::LastOperationFailed(e)) => {
                    Poll::Ready(Some(Err(format!("{e:?}"))))
                }
            }
        })
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        drop(self.wait.take());
        if let Some((stream, body)) = self.stream_and_body.take() {
            drop(stream);
            IncomingBody::finish(body);
        }
    }
}
