//! Large archives the engine writes (`docker save`, `docker export`) streamed as the
//! response body: the engine writes on a blocking thread into a channel the body reads,
//! so an image never sits whole in memory.

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::body::{self, Resp};
use crate::server::Ctx;

/// A `Write` that hands its bytes to an async body (blocking when the client is slow).
struct ChanWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl ChanWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let b = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.blocking_send(b).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

impl std::io::Write for ChanWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Streams what `write` writes (on a blocking thread) as an `application/x-tar` body.
/// The caller checks what can fail early (a missing image or container) before: an error
/// once bytes have gone out can only end the stream early (the client sees a short tar).
pub fn stream_tar(
    ctx: &Ctx,
    write: impl FnOnce(&codex_engine::engine::Engine, &mut dyn std::io::Write) -> codex_engine::Result<()>
        + Send
        + 'static,
) -> Resp {
    let (tx, resp) = body::stream("application/x-tar");
    let eng = ctx.eng.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = ChanWriter {
            tx,
            buf: Vec::new(),
        };
        if write(eng.engine(), &mut w).is_ok() {
            let _ = std::io::Write::flush(&mut w);
        }
    });
    resp
}
