//! `codex-ctr __health --root ROOT ID`: one health probe of a running container, and
//! its result recorded. Started by the container's supervisor (the shim) in a process
//! group of its own, one at a time, an interval after the previous one ended; the
//! supervisor kills the group if this process itself overruns (a stuck lock).
//!
//! The probe runs in a forked helper, the leader of a new process group: a command is
//! exec'd into the container through codex-runtime (as `exec` does; it stays in the
//! helper's group), an HTTP or TCP probe `setns`es the helper into the container's
//! network namespace and connects to its loopback (no published port needed). At
//! the timeout the whole group is SIGKILLed and the probe fails. Output (both streams)
//! goes to a sealed memfd of fixed size, so a probe that prints without end cannot
//! grow this process's memory.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::state::{truncate_output, HealthResult, HealthStatus, OUTPUT_MAX};
use super::{HealthCheck, HealthProbe};
use crate::config::ContainerConfig;
use crate::registry::{ContainerStatus, Registry};

/// Room for a probe's output; writes past it fail (the memfd cannot grow).
const OUTPUT_ROOM: i64 = 64 * 1024;

/// The exit code recorded for a probe killed at its timeout or that could not run.
pub const NO_EXIT: i32 = -1;

/// `__health --root ROOT ID`. Exit code 0: healthy (or nothing to do), 1: the probe
/// failed, 2: bad arguments or no registry.
pub fn main(args: &[String]) -> i32 {
    let [flag, root, id] = args else {
        return 2;
    };
    if flag != "--root" {
        return 2;
    }
    let Ok(registry) = Registry::open(Path::new(root)) else {
        return 2;
    };
    let Ok(rec) = registry.get(id) else {
        return 2;
    };
    let cfg: ContainerConfig = serde_json::from_value(rec.config.clone()).unwrap_or_default();
    let (Some(check), Some(init), ContainerStatus::Running) = (
        cfg.health.clone().filter(HealthCheck::enabled),
        rec.pid,
        rec.status,
    ) else {
        // Paused, between runs, or no check: nothing to probe.
        return 0;
    };
    let start = codex_runtime::state::now_rfc3339();
    let result = run(Path::new(root), id, init, &check, start);
    let passed = result.passed();
    let mut became = None;
    let recorded = registry.update_container(id, |r| {
        // Only for the run that was probed.
        if r.pid != Some(init) || r.status != ContainerStatus::Running {
            return Ok(());
        }
        let in_start_period = r
            .started_at
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|ran| ran < Duration::from_millis(check.start_period_ms));
        let h = r
            .health
            .get_or_insert_with(super::state::HealthState::starting);
        became = h.record(result.clone(), in_start_period, check.retries);
        Ok(())
    });
    let Ok(rec) = recorded else {
        return 2;
    };
    if let Some(status) = became {
        let details = [("health_status", status.to_string())];
        crate::events::emit_about(registry.root(), &rec, "health_status", &details);
    }
    if became == Some(HealthStatus::Unhealthy) && cfg.restart_on_unhealthy {
        // Not a user's stop: the run ends as a failure and its restart policy applies.
        let rt = codex_runtime::Runtime::new(Path::new(root).join("runtime"));
        if rt.load(id).is_ok_and(|c| c.state.pid == init) {
            let _ = rt.kill(id, libc::SIGKILL, true);
        }
    }
    i32::from(!passed)
}

/// Runs the probe in a helper process group, within the check's timeout.
fn run(root: &Path, id: &str, init: i32, check: &HealthCheck, start: String) -> HealthResult {
    let failed = |why: String| HealthResult {
        start: start.clone(),
        end: codex_runtime::state::now_rfc3339(),
        exit_code: NO_EXIT,
        http_status: None,
        output: truncate_output(&why),
    };
    let out = match output_file() {
        Ok(f) => f,
        Err(e) => return failed(format!("health probe: making its output file: {e}")),
    };
    // SAFETY: the engine's `__health` process is single-threaded (a fresh exec); the
    // child only runs the probe and _exits.
    let helper = match unsafe { libc::fork() } {
        -1 => {
            return failed(format!(
                "health probe: fork: {}",
                std::io::Error::last_os_error()
            ))
        }
        0 => {
            let code = helper_main(root, id, init, &check.probe, check.timeout(), &out);
            // SAFETY: ends the forked helper without unwinding into the parent's state.
            unsafe { libc::_exit(code) }
        }
        pid => pid,
    };
    // Both sides set the group, so it is in place whichever runs first.
    // SAFETY: setpgid with integer arguments, on our own child.
    unsafe { libc::setpgid(helper, helper) };
    let status = wait_with_timeout(helper, check.timeout());
    let output = read_output(&out);
    let end = codex_runtime::state::now_rfc3339();
    match status {
        Some(code) => {
            let http_status = match check.probe {
                HealthProbe::Http { .. } => http_status(&output),
                _ => None,
            };
            HealthResult {
                start,
                end,
                exit_code: code,
                http_status,
                output,
            }
        }
        None => HealthResult {
            start,
            end,
            exit_code: NO_EXIT,
            http_status: None,
            output: truncate_output(&format!(
                "{output}health probe timed out after {} ms and was killed",
                check.timeout_ms
            )),
        },
    }
}

/// Waits for `pid` (the leader of its own group) up to `timeout` on a pidfd; past it,
/// SIGKILLs the whole group. The exit code, or `None` on a timeout.
fn wait_with_timeout(pid: i32, timeout: Duration) -> Option<i32> {
    let end = Instant::now() + timeout;
    let pidfd = codex_sys::pidfd_open(pid).ok();
    loop {
        if let Ok(Some((code, _))) = codex_shim::sys::try_wait(pid) {
            return Some(code);
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // SAFETY: kill with integer arguments: the helper's group (never pid 0/-1:
            // pid is a child of ours and leads its group).
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = codex_shim::sys::wait(pid);
            return None;
        }
        let mut fds = [libc::pollfd {
            fd: pidfd.as_ref().map_or(-1, |f| f.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        }];
        // Without a pidfd (old kernels), look again every 10 ms.
        let nap = if pidfd.is_some() {
            left
        } else {
            left.min(Duration::from_millis(10))
        };
        let _ = codex_shim::sys::poll(&mut fds, Some(nap));
    }
}

/// The helper: in its own group, with stdout and stderr on `out`.
fn helper_main(
    root: &Path,
    id: &str,
    init: i32,
    probe: &HealthProbe,
    timeout: Duration,
    out: &OwnedFd,
) -> i32 {
    // SAFETY: setpgid and dup2 with integer arguments on fds we own.
    unsafe {
        libc::setpgid(0, 0);
        libc::dup2(out.as_raw_fd(), 1);
        libc::dup2(out.as_raw_fd(), 2);
    }
    let code = match probe {
        HealthProbe::Cmd { command } => exec_in(root, id, command),
        HealthProbe::Tcp { port } => connect_in(init, *port, None, timeout),
        HealthProbe::Http { port, path } => connect_in(init, *port, Some(path), timeout),
        HealthProbe::None => 0,
    };
    let _ = std::io::stdout().flush();
    code
}

/// `sh -c COMMAND` in the container, as `exec` runs a process; its exit code.
fn exec_in(root: &Path, id: &str, command: &str) -> i32 {
    let rt = codex_runtime::Runtime::new(root.join("runtime"));
    let ran = rt.load(id).map_err(|e| e.to_string()).and_then(|c| {
        let mut p = c.state.config.process().clone().unwrap_or_default();
        p.set_args(Some(vec!["sh".into(), "-c".into(), command.into()]));
        p.set_terminal(Some(false));
        let opts = codex_runtime::ExecOptions {
            process: p,
            detach: false,
            pid_file: None,
            console_socket: None,
            preserve_fds: 0,
            no_stdin: true,
            ..Default::default()
        };
        rt.exec(id, &opts).map_err(|e| e.to_string())
    });
    match ran {
        Ok(codex_runtime::ExecOutcome::Exited(code)) => code,
        Ok(codex_runtime::ExecOutcome::Detached(_)) => 0,
        Err(e) => {
            eprintln!("health probe: {e}");
            126
        }
    }
}

/// A TCP connect (and with `path`, an HTTP GET) to the container's own loopback, from
/// inside its network namespace. Prints the HTTP status line or why it failed.
fn connect_in(init: i32, port: u16, path: Option<&str>, timeout: Duration) -> i32 {
    let ns = format!("/proc/{init}/ns/net");
    let joined = std::fs::File::open(&ns).and_then(|f| {
        // SAFETY: setns with a valid fd; this helper is single-threaded.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    });
    if let Err(e) = joined {
        println!("health probe: joining {ns}: {e}");
        return 1;
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => {
            println!("connecting to {addr}: {e}");
            return 1;
        }
    };
    let Some(path) = path else {
        println!("connected to {addr}");
        return 0;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: codex-ctr-health\r\n\r\n");
    if let Err(e) = stream.write_all(request.as_bytes()) {
        println!("sending the request to {addr}: {e}");
        return 1;
    }
    let mut answer = Vec::new();
    let _ = stream.take(OUTPUT_MAX as u64).read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let line = text.lines().next().unwrap_or_default();
    println!("{line}");
    match http_status(line) {
        Some(s) if (200..400).contains(&s) => 0,
        Some(_) => 1,
        None => {
            println!("no HTTP answer from {addr}");
            1
        }
    }
}

/// The status of an HTTP status line (`HTTP/1.1 204 No Content`) at the start of `text`.
fn http_status(text: &str) -> Option<u16> {
    let line = text.lines().next()?;
    let mut parts = line.split_ascii_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts
        .next()
        .filter(|s| s.len() == 3)?
        .parse()
        .ok()
        .filter(|s| (100..600).contains(s))
}

/// A memfd of [`OUTPUT_ROOM`] bytes that cannot grow or shrink.
fn output_file() -> std::io::Result<OwnedFd> {
    // SAFETY: memfd_create with a valid C string and flags.
    let fd = unsafe {
        libc::memfd_create(
            c"codex-health".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ftruncate and fcntl with integer arguments on our fd.
    let ok = unsafe {
        libc::ftruncate(fd.as_raw_fd(), OUTPUT_ROOM) == 0
            && libc::fcntl(
                fd.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL,
            ) == 0
    };
    if !ok {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// What was written to `out` (its shared offset says how much), cut to
/// [`OUTPUT_MAX`].
fn read_output(out: &OwnedFd) -> String {
    // SAFETY: lseek on our fd: the offset the helper's writes left.
    let written = unsafe { libc::lseek(out.as_raw_fd(), 0, libc::SEEK_CUR) }.max(0) as usize;
    let mut buf = vec![0u8; written.min(OUTPUT_MAX)];
    // SAFETY: buf is valid for writes of buf.len() bytes; out is an open fd.
    let n = unsafe { libc::pread(out.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    buf.truncate(n.max(0) as usize);
    truncate_output(&String::from_utf8_lossy(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_status_lines_are_read_and_others_are_not() {
        assert_eq!(http_status("HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(http_status("HTTP/1.0 302 Found"), Some(302));
        assert_eq!(http_status("HTTP/1.0 503"), Some(503));
        for bad in [
            "",
            "SSH-2.0-x",
            "HTTP/1.1 2000 x",
            "HTTP/1.1 abc",
            "HTTP/1.1 099 x",
        ] {
            assert_eq!(http_status(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn output_is_bounded_by_the_sealed_memfd() {
        let out = output_file().unwrap();
        let mut f = std::fs::File::from(out.try_clone().unwrap());
        f.write_all(b"hello ").unwrap();
        f.write_all(b"world").unwrap();
        assert_eq!(read_output(&out), "hello world");
        // It cannot grow past its room.
        let big = vec![b'x'; OUTPUT_ROOM as usize];
        assert!(f.write_all(&big).is_err());
        assert_eq!(read_output(&out).len(), OUTPUT_MAX);
    }
}
