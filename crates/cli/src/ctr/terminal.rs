//! The caller's side of `run -i`/`-t` and `attach`: the local terminal in raw mode,
//! stdin copied to the container (its terminal, or the pipe of `run -i`), resizes
//! passed on, and the detach keys (Ctrl-P Ctrl-Q, Docker's) that leave the
//! container running.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::termios::{self, SetArg, Termios};

/// Ctrl-P then Ctrl-Q.
const DETACH_KEYS: [u8; 2] = [0x10, 0x11];

/// The local terminal in raw mode while this lives (when stdin is a terminal).
pub(super) struct RawMode(Option<Termios>);

impl RawMode {
    pub(super) fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawMode(saved)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, t);
        }
    }
}

/// Rows and columns of the local terminal, if stdout or stdin is one.
pub(super) fn local_size() -> Option<(u16, u16)> {
    for fd in [1, 0] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ fills the winsize we pass; the fd may not be a tty (-1).
        let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
        if rc == 0 && ws.ws_row > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// Watches input for the detach keys: what comes before them is passed on, and a
/// key that only began the sequence is passed on once the next one shows it was not.
#[derive(Debug, Default)]
pub(super) struct DetachKeys {
    matched: usize,
}

impl DetachKeys {
    /// The bytes to pass on from `input`, and whether the keys were typed (then what
    /// followed them is dropped).
    pub(super) fn scan(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b == DETACH_KEYS[self.matched] {
                self.matched += 1;
                if self.matched == DETACH_KEYS.len() {
                    self.matched = 0;
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&DETACH_KEYS[..self.matched]);
            self.matched = 0;
            if b == DETACH_KEYS[0] {
                self.matched = 1;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// Copies this process's stdin to `to` on a thread of its own, until stdin ends
/// (then `to` is closed: a pipe's reader sees its end) or, with `detach_keys`, the
/// detach keys are typed (then `detached` is set). A write that fails (the
/// container has gone) ends it too.
pub(super) fn copy_stdin(to: OwnedFd, detach_keys: bool, detached: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut out = std::fs::File::from(to);
        let mut keys = DetachKeys::default();
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin().lock();
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let (pass, detach) = if detach_keys {
                keys.scan(&buf[..n])
            } else {
                (buf[..n].to_vec(), false)
            };
            if out.write_all(&pass).is_err() {
                return;
            }
            if detach {
                detached.store(true, Ordering::SeqCst);
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detach_keys_end_the_input_and_anything_else_passes() {
        let mut k = DetachKeys::default();
        assert_eq!(k.scan(b"ls\r"), (b"ls\r".to_vec(), false));
        assert_eq!(k.scan(b"a\x10\x11b"), (b"a".to_vec(), true));
        // Ctrl-P alone is passed on once the next key shows it was not the sequence.
        let mut k = DetachKeys::default();
        assert_eq!(k.scan(b"\x10"), (Vec::new(), false));
        assert_eq!(k.scan(b"x"), (b"\x10x".to_vec(), false));
        assert_eq!(k.scan(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(k.scan(b"\x11"), (Vec::new(), true));
        // Across reads.
        let mut k = DetachKeys::default();
        assert_eq!(k.scan(b"q\x10"), (b"q".to_vec(), false));
        assert_eq!(k.scan(b"\x11"), (Vec::new(), true));
    }
}
