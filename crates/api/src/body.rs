//! Response bodies: whole JSON documents, streams fed by a task through a channel, and
//! Docker's 8-byte multiplexed stream framing.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::{ApiError, ApiResult};

pub type RespBody = BoxBody<Bytes, Infallible>;
pub type Resp = Response<RespBody>;

/// A body fed through a channel: the stream ends when every sender is dropped.
pub struct ChanBody(mpsc::Receiver<Bytes>);

impl Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn with_type(mut r: Resp, content_type: &'static str) -> Resp {
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Empty::new().boxed());
    *r.status_mut() = status;
    r
}

pub fn bytes(status: StatusCode, content_type: &'static str, data: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(data.into()).boxed());
    *r.status_mut() = status;
    with_type(r, content_type)
}

pub fn json<T: Serialize>(status: StatusCode, v: &T) -> ApiResult<Resp> {
    Ok(bytes(status, "application/json", serde_json::to_vec(v)?))
}

pub fn ok_json<T: Serialize>(v: &T) -> ApiResult<Resp> {
    json(StatusCode::OK, v)
}

pub fn error(e: &ApiError) -> Resp {
    let body = serde_json::json!({ "message": e.message });
    bytes(e.status, "application/json", body.to_string())
}

/// A streamed response: what is sent on the returned sender goes out as it comes.
pub fn stream(content_type: &'static str) -> (mpsc::Sender<Bytes>, Resp) {
    let (tx, rx) = mpsc::channel(64);
    let r = with_type(Response::new(ChanBody(rx).boxed()), content_type);
    (tx, r)
}

/// Which of Docker's streams a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdout = 1,
    Stderr = 2,
}

/// One frame of Docker's multiplexed stream: `[kind, 0, 0, 0, len (u32 big endian)]`
/// then the payload. Used when the container has no terminal.
pub fn frame(kind: StreamKind, payload: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(8 + payload.len());
    v.push(kind as u8);
    v.extend_from_slice(&[0, 0, 0]);
    // A log line is at most a few MiB (the engine caps lines), far under u32::MAX.
    v.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    v.extend_from_slice(payload);
    Bytes::from(v)
}

/// A JSON value and a newline: one item of Docker's JSON-lines streams.
pub fn json_line<T: Serialize>(v: &T) -> Bytes {
    let mut out = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_stream_and_big_endian_length() {
        let f = frame(StreamKind::Stderr, b"hello");
        assert_eq!(&f[..8], &[2, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(&f[8..], b"hello");
        let big = vec![b'x'; 0x1_0203];
        let f = frame(StreamKind::Stdout, &big);
        assert_eq!(&f[..8], &[1, 0, 0, 0, 0, 1, 2, 3]);
        assert_eq!(f.len(), 8 + big.len());
    }
}
