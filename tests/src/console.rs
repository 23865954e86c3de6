//! A `--console-socket` receiver: listens on a unix socket, receives the PTY master fd that
//! the runtime sends with `SCM_RIGHTS`, optionally writes input to it, and reads the
//! container's terminal output until the slave side is closed (EIO/EOF).

use std::io;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the receiver saw.
#[derive(Debug, Default)]
pub struct ConsoleResult {
    /// Bytes read from the PTY master.
    pub output: Vec<u8>,
    /// Whether reading ended because the slave side was closed (EIO or EOF), not by timeout.
    pub closed: bool,
    /// Whether the received fd is a terminal.
    pub is_tty: bool,
    /// The PTY window size (rows, cols) seen on the master right after receiving it.
    pub winsize: Option<(u16, u16)>,
}

impl ConsoleResult {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }
}

/// The listening socket plus the thread that serves it.
pub struct ConsoleSocket {
    pub path: PathBuf,
    handle: Option<JoinHandle<Result<ConsoleResult, String>>>,
}

impl ConsoleSocket {
    /// Binds `path` now (so the runtime can connect as soon as it is started) and serves one
    /// connection in a thread; `input` is written to the master once it arrives; everything
    /// must be done within `timeout`.
    pub fn bind(path: &Path, input: Vec<u8>, timeout: Duration) -> ConsoleSocket {
        let listener = UnixListener::bind(path).expect("bind console socket");
        let handle = std::thread::spawn(move || serve(listener, input, timeout));
        ConsoleSocket {
            path: path.to_path_buf(),
            handle: Some(handle),
        }
    }

    /// The socket path as a string (for `--console-socket`).
    pub fn arg(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Waits for the serving thread.
    pub fn finish(mut self) -> Result<ConsoleResult, String> {
        self.handle
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| "console thread panicked".to_string())?
    }
}

fn serve(
    listener: UnixListener,
    input: Vec<u8>,
    timeout: Duration,
) -> Result<ConsoleResult, String> {
    let deadline = Instant::now() + timeout;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("nonblocking: {e}"))?;
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err("nobody connected to the console socket".into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    stream
        .set_nonblocking(false)
        .map_err(|e| format!("blocking: {e}"))?;
    stream
        .set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .map_err(|e| format!("timeout: {e}"))?;
    let master = recv_fd(stream.as_raw_fd())?;
    let mfd = master.as_raw_fd();
    let mut res = ConsoleResult {
        // SAFETY: isatty on an fd we own.
        is_tty: unsafe { libc::isatty(mfd) } == 1,
        ..Default::default()
    };
    // SAFETY: TIOCGWINSZ fills a winsize we own.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(mfd, libc::TIOCGWINSZ, &mut ws) == 0 {
            res.winsize = Some((ws.ws_row, ws.ws_col));
        }
    }
    if !input.is_empty() {
        let mut off = 0;
        while off < input.len() {
            // SAFETY: writing from a live buffer.
            let n = unsafe { libc::write(mfd, input[off..].as_ptr().cast(), input.len() - off) };
            if n < 0 {
                return Err(format!(
                    "write to pty master: {}",
                    io::Error::last_os_error()
                ));
            }
            off += n as usize;
        }
    }
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "console still open after timeout; output so far: {:?}",
                res.text()
            ));
        }
        let mut pfd = libc::pollfd {
            fd: mfd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(100) as i32;
        // SAFETY: poll on one pollfd we own.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll: {e}"));
        }
        if r == 0 {
            continue;
        }
        // SAFETY: reading into a live buffer.
        let n = unsafe { libc::read(mfd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            res.output.extend_from_slice(&buf[..n as usize]);
        } else if n == 0 {
            res.closed = true;
            return Ok(res);
        } else {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EIO) => {
                    res.closed = true;
                    return Ok(res);
                }
                Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                _ => return Err(format!("read pty master: {e}")),
            }
        }
    }
}

/// Receives one fd passed with SCM_RIGHTS on `sock`.
pub fn recv_fd(sock: RawFd) -> Result<OwnedFd, String> {
    let mut data = [0u8; 512];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // u64 array for alignment of cmsghdr
    let mut control = [0u64; 64];
    // SAFETY: msghdr is plain data; all pointers refer to live locals.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: recvmsg with a properly set-up msghdr.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(format!("recvmsg: {}", io::Error::last_os_error()));
    }
    let mut got: Vec<OwnedFd> = Vec::new();
    // SAFETY: walking the control buffer the kernel filled, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let count = len / std::mem::size_of::<RawFd>();
                let p = libc::CMSG_DATA(c) as *const RawFd;
                for i in 0..count {
                    got.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(p.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if got.len() != 1 {
        return Err(format!(
            "expected exactly one fd over the console socket, got {} (message {} bytes)",
            got.len(),
            n
        ));
    }
    Ok(got.remove(0))
}
