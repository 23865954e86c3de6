//! Seccomp user notification (`SCMP_ACT_NOTIFY`): the spec's rules on a profile that
//! uses it, and handing the notify fd to the agent listening at
//! `linux.seccomp.listenerPath`.
//!
//! The fd exists only once the filter is loaded, in the container's process; that
//! process sends it to the runtime over the sync channel (SCM_RIGHTS) and the runtime,
//! which is not under the filter, connects to the listener and sends the spec's
//! "container process state" with the fd. So the container's own syscalls between the
//! load and that hand-off can never wait for an agent that has no fd yet, the few it
//! makes there may not be notified ([`HANDOFF_SYSCALLS`]).

use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::LinuxSeccomp;

use crate::error::{Error, Result};

/// The syscalls the container's process makes between loading a filter with notify
/// rules and handing its fd to the runtime: the `sendmsg` itself, and what the
/// allocator may call on the way (libseccomp frees the compiled program; the message
/// buffer). Notified, they would wait for an agent that cannot have the fd yet, and
/// `create` would hang: a notify rule naming one of them is refused. (runc refuses
/// `write`, its hand-off syscall, for the same reason.)
pub const HANDOFF_SYSCALLS: &[&str] = &["sendmsg", "brk", "mmap", "munmap", "mremap", "madvise"];

/// Where the notify fd goes, from `listenerPath` and `listenerMetadata`.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub path: PathBuf,
    pub metadata: Option<String>,
}

/// The listener a profile needs: `None` when no rule notifies (`listenerPath` is then
/// ignored, as the spec says). `notifies` is whether any rule's action is notify.
pub fn listener(s: &LinuxSeccomp, notifies: bool) -> Result<Option<Listener>> {
    let path = s
        .listener_path()
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty());
    let metadata = s.listener_metadata().as_ref().filter(|m| !m.is_empty());
    if path.is_none() && metadata.is_some() {
        return Err(Error::config(
            "linux.seccomp.listenerMetadata",
            "must not be set without linux.seccomp.listenerPath",
        ));
    }
    if !notifies {
        return Ok(None);
    }
    let path = path.ok_or_else(|| {
        Error::config(
            "linux.seccomp.listenerPath",
            "is required when a rule uses SCMP_ACT_NOTIFY (the agent's unix socket)",
        )
    })?;
    Ok(Some(Listener {
        path: path.clone(),
        metadata: metadata.cloned(),
    }))
}

/// The spec's "container process state": what the agent receives with the fd.
/// `pid` is the process the filter applies to (the init, or an exec'd process), as the
/// runtime sees it; `state` is the container's state.
pub fn process_state(
    pid: i32,
    metadata: Option<&str>,
    state: serde_json::Value,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "ociVersion": crate::spec::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "state": state,
    });
    if let Some(m) = metadata {
        v["metadata"] = m.into();
    }
    v
}

/// How long the listener may take to accept and to take the state (a stuck agent
/// fails `create` instead of hanging it).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to `path` without waiting forever: a listener whose backlog is full makes
/// a blocking `connect` wait until it accepts; this one retries for [`SEND_TIMEOUT`].
fn connect(path: &Path) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let addr = UnixAddr::new(path)?;
    let deadline = Instant::now() + SEND_TIMEOUT;
    loop {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        match nix::sys::socket::connect(fd.as_raw_fd(), &addr) {
            Ok(()) => {
                let s = UnixStream::from(fd);
                s.set_nonblocking(false)?;
                return Ok(s);
            }
            // A unix socket's backlog is full: EAGAIN, not EINPROGRESS.
            Err(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Connects to the listener (a `SOCK_STREAM` unix socket), sends `state` with `fd`
/// attached to the first `sendmsg`, and closes the connection (one state per
/// connection). The caller closes its copy of `fd` afterwards.
pub fn send(listener: &Listener, state: &serde_json::Value, fd: BorrowedFd) -> Result<()> {
    let path = &listener.path;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Error::config(
            "linux.seccomp.listenerPath",
            format!(
                "{what} the seccomp agent at {}: {e}",
                Path::new(path).display()
            ),
        )
    };
    let mut conn = connect(path).map_err(|e| fail("connecting to", &e))?;
    conn.set_write_timeout(Some(SEND_TIMEOUT))
        .map_err(|e| fail("setting a send timeout for", &e))?;
    let data = serde_json::to_vec(state).map_err(|e| fail("encoding the state for", &e))?;
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let sent = loop {
        match sendmsg::<()>(
            conn.as_raw_fd(),
            &[IoSlice::new(&data)],
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(fail("sending the state to", &e)),
        }
    };
    // The spec allows more than one sendmsg; the fd went with the first.
    conn.write_all(&data[sent..])
        .map_err(|e| fail("sending the state to", &e))?;
    conn.shutdown(std::net::Shutdown::Both)
        .or_else(|e| match e.raw_os_error() {
            // The agent took the state and closed first.
            Some(libc::ENOTCONN) => Ok(()),
            _ => Err(e),
        })
        .map_err(|e| fail("closing the connection to", &e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(extra: serde_json::Value) -> LinuxSeccomp {
        let mut v = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn notify_without_listener_path_is_refused_naming_the_field() {
        let e = listener(&profile(serde_json::json!({})), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux.seccomp.listenerPath"), "{e}");
    }

    #[test]
    fn metadata_without_listener_path_is_refused_even_without_notify() {
        for notifies in [false, true] {
            let e = listener(
                &profile(serde_json::json!({"listenerMetadata": "x"})),
                notifies,
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("linux.seccomp.listenerMetadata"), "{e}");
        }
    }

    #[test]
    fn listener_path_without_notify_is_ignored() {
        let p = profile(serde_json::json!({"listenerPath": "/run/agent.sock"}));
        assert_eq!(listener(&p, false).unwrap(), None);
    }

    #[test]
    fn listener_carries_path_and_metadata() {
        let p = profile(
            serde_json::json!({"listenerPath": "/run/agent.sock", "listenerMetadata": "m=1"}),
        );
        assert_eq!(
            listener(&p, true).unwrap(),
            Some(Listener {
                path: "/run/agent.sock".into(),
                metadata: Some("m=1".into())
            })
        );
    }

    #[test]
    fn process_state_has_the_spec_fields() {
        let st = serde_json::json!({"id": "c", "status": "creating", "pid": 7});
        let v = process_state(7, Some("meta"), st.clone());
        assert_eq!(v["fds"], serde_json::json!(["seccompFd"]));
        assert_eq!(v["pid"], 7);
        assert_eq!(v["metadata"], "meta");
        assert_eq!(v["state"], st);
        assert!(v["ociVersion"].is_string());
        assert!(process_state(7, None, st).get("metadata").is_none());
    }

    #[test]
    fn a_missing_socket_fails_naming_the_field_and_path() {
        let dir = tempfile_dir();
        let l = Listener {
            path: dir.join("absent.sock"),
            metadata: None,
        };
        let null = std::fs::File::open("/dev/null").unwrap();
        let e = send(&l, &serde_json::json!({}), std::os::fd::AsFd::as_fd(&null))
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux.seccomp.listenerPath"), "{e}");
        assert!(e.contains("absent.sock"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn send_delivers_the_state_and_the_fd_then_closes() {
        use std::io::{IoSliceMut, Read};
        use std::os::fd::{FromRawFd, OwnedFd, RawFd};
        let dir = tempfile_dir();
        let path = dir.join("agent.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let agent = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 4096];
            let mut space = nix::cmsg_space!([RawFd; 1]);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = nix::sys::socket::recvmsg::<()>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::empty(),
            )
            .unwrap();
            let n = msg.bytes;
            let mut fd = None;
            for c in msg.cmsgs().unwrap() {
                if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                    // SAFETY: SCM_RIGHTS gave this process a new fd nothing else owns.
                    fd = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
                }
            }
            let mut data = buf[..n].to_vec();
            // EOF: the runtime closed the connection after the one state.
            (&conn).read_to_end(&mut data).unwrap();
            (data, fd.unwrap())
        });
        let l = Listener {
            path: path.clone(),
            metadata: Some("m".into()),
        };
        let null = std::fs::File::open("/dev/null").unwrap();
        let st = process_state(9, l.metadata.as_deref(), serde_json::json!({"id": "c"}));
        send(&l, &st, std::os::fd::AsFd::as_fd(&null)).unwrap();
        let (data, fd) = agent.join().unwrap();
        let got: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(got, st);
        let rdev = |f: std::os::fd::BorrowedFd| nix::sys::stat::fstat(f).unwrap().st_rdev;
        assert_eq!(
            rdev(std::os::fd::AsFd::as_fd(&fd)),
            rdev(std::os::fd::AsFd::as_fd(&null))
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let d = std::env::temp_dir().join(format!("codex-notify-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
