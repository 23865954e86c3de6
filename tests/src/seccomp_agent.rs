//! A seccomp agent for the tests of `SCMP_ACT_NOTIFY` (tests/tests/seccomp_notify.rs): a
//! thread listening on a unix socket that takes each connection's container process state
//! (JSON) and notify fd (SCM_RIGHTS), then answers notifications with libseccomp's notify
//! API: `getppid` returns [`FAKE_PPID`], `mkdir`/`mkdirat` return success without making
//! anything, everything else runs (SECCOMP_USER_NOTIF_FLAG_CONTINUE). Every wait is bounded
//! (the agent lives at most [`AGENT_LIFETIME`], a connection's read 30 s), so a broken
//! runtime fails a test instead of hanging it.

use std::io::{IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::Value;

/// What `getppid` returns under the agent.
pub const FAKE_PPID: i64 = 4242;
/// The longest the agent lives: far beyond any run on a loaded machine, short of forever.
pub const AGENT_LIFETIME: Duration = Duration::from_secs(120);

/// One connection the agent took: the state JSON and whether an fd came with it.
#[derive(Debug, Clone)]
pub struct Received {
    pub state: Value,
    pub had_fd: bool,
}

/// What the agent saw, reported when it stops.
#[derive(Debug, Default)]
pub struct Report {
    pub connections: Vec<Received>,
    /// (pid, syscall name) of every notification it answered.
    pub answered: Vec<(u32, String)>,
    pub errors: Vec<String>,
}

pub struct Agent {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    done: Option<mpsc::Receiver<Report>>,
}

impl Agent {
    /// Listens on `path` (a unix socket the agent makes; removed on drop).
    pub fn start(path: &Path) -> Agent {
        let listener = UnixListener::bind(path).expect("bind the agent's socket");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let s = stop.clone();
        std::thread::spawn(move || {
            let _ = tx.send(agent_main(listener, &s));
        });
        Agent {
            path: path.to_path_buf(),
            stop,
            done: Some(rx),
        }
    }

    /// Stops the agent (it answers what is pending first) and returns what it saw.
    pub fn finish(&mut self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        let rx = self.done.take().expect("finish once");
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the agent thread did not stop within 30 s")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads one connection: the state JSON up to EOF, the fd from the first message.
fn take_connection(conn: UnixStream) -> Result<(Value, Option<OwnedFd>), String> {
    conn.set_nonblocking(false).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("recvmsg: {e}"))?;
    let n = msg.bytes;
    let mut fd = None;
    for c in msg.cmsgs().map_err(|e| e.to_string())? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for raw in fds {
                // SAFETY: SCM_RIGHTS gave this process a new fd that nothing else owns.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                fd.get_or_insert(owned);
            }
        }
    }
    let mut data = buf[..n].to_vec();
    // The runtime may send the rest in more messages: read until the JSON is complete
    // (not until EOF: one runtime keeps the connection open while the process runs).
    let state = loop {
        match serde_json::from_slice::<Value>(&data) {
            Ok(v) => break v,
            Err(e) if e.is_eof() => {}
            Err(e) => {
                return Err(format!(
                    "state is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&data)
                ))
            }
        }
        let mut more = [0u8; 4096];
        match (&conn).read(&mut more) {
            Ok(0) => {
                return Err(format!(
                    "connection closed mid-state: {:?}",
                    String::from_utf8_lossy(&data)
                ))
            }
            Ok(k) => data.extend_from_slice(&more[..k]),
            Err(e) => return Err(format!("reading the rest of the state: {e}")),
        }
    };
    Ok((state, fd))
}

fn answer(fd: &OwnedFd, report: &mut Report) {
    let req = match ScmpNotifReq::receive(fd.as_raw_fd()) {
        Ok(r) => r,
        // The task was killed between the wakeup and the receive.
        Err(_) => return,
    };
    let name = req
        .data
        .syscall
        .get_name_by_arch(req.data.arch)
        .unwrap_or_else(|_| format!("nr {}", i32::from(req.data.syscall)));
    let flags = ScmpNotifRespFlags::empty();
    let resp = match name.as_str() {
        "getppid" => ScmpNotifResp::new_val(req.id, FAKE_PPID, flags),
        "mkdir" | "mkdirat" => ScmpNotifResp::new_val(req.id, 0, flags),
        _ => ScmpNotifResp::new_continue(req.id, flags),
    };
    match resp.respond(fd.as_raw_fd()) {
        Ok(()) => report.answered.push((req.pid, name)),
        Err(e) => report.errors.push(format!("responding to {name}: {e}")),
    }
}

fn agent_main(listener: UnixListener, stop: &AtomicBool) -> Report {
    let mut report = Report::default();
    let mut notify_fds: Vec<OwnedFd> = Vec::new();
    let deadline = Instant::now() + AGENT_LIFETIME;
    while Instant::now() < deadline {
        let stopping = stop.load(Ordering::SeqCst);
        let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        fds.extend(
            notify_fds
                .iter()
                .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN)),
        );
        let n = match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                report.errors.push(format!("poll: {e}"));
                break;
            }
        };
        let ready: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        if n == 0 && stopping {
            break;
        }
        if ready[0].contains(PollFlags::POLLIN) {
            match listener.accept() {
                Ok((conn, _)) => match take_connection(conn) {
                    Ok((state, fd)) => {
                        report.connections.push(Received {
                            state,
                            had_fd: fd.is_some(),
                        });
                        notify_fds.extend(fd);
                    }
                    Err(e) => report.errors.push(e),
                },
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => report.errors.push(format!("accept: {e}")),
            }
        }
        let mut gone = Vec::new();
        for (i, flags) in ready[1..].iter().enumerate() {
            if flags.contains(PollFlags::POLLIN) {
                answer(&notify_fds[i], &mut report);
            } else if flags.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                // No task uses this filter any more.
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            notify_fds.remove(i);
        }
    }
    report
}
