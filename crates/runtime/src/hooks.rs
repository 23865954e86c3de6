//! OCI hooks: each is run with the container's state JSON on stdin, in order, with
//! its own timeout; a failing hook fails the operation and its stderr is in the error,
//! except `poststart` and `poststop`, whose failures are warnings ([`run_all`]).

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ChildStderr, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl HookKind {
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        }
    }

    pub fn of(self, hooks: &Hooks) -> &[Hook] {
        let list = match self {
            #[allow(deprecated)]
            HookKind::Prestart => hooks.prestart(),
            HookKind::CreateRuntime => hooks.create_runtime(),
            HookKind::CreateContainer => hooks.create_container(),
            HookKind::StartContainer => hooks.start_container(),
            HookKind::Poststart => hooks.poststart(),
            HookKind::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or(&[])
    }
}

/// Runs every hook of `kind` in order; stops at the first failure.
pub fn run(kind: HookKind, hooks: Option<&Hooks>, state: &serde_json::Value) -> Result<()> {
    let Some(hooks) = hooks else { return Ok(()) };
    let input = state_bytes(state)?;
    for hook in kind.of(hooks) {
        run_one(kind, hook, &input, None)?;
    }
    Ok(())
}

/// `startContainer` hooks: as [`run`], but a hook without an `env` of its own gets the
/// container process's environment (`env`), as runc and youki give it. They run in
/// the container, where the runtime's own environment means nothing.
pub fn run_start_container(hooks: &Hooks, state: &serde_json::Value, env: &[String]) -> Result<()> {
    let input = state_bytes(state)?;
    for hook in HookKind::StartContainer.of(hooks) {
        run_one(HookKind::StartContainer, hook, &input, Some(env))?;
    }
    Ok(())
}

/// Runs every hook of `kind`, going on after a failure; returns the failures. For
/// `poststart` and `poststop`, whose failures the spec makes warnings: the remaining
/// hooks still run.
pub fn run_all(kind: HookKind, hooks: &Hooks, state: &serde_json::Value) -> Vec<Error> {
    let input = match state_bytes(state) {
        Ok(i) => i,
        Err(e) => return vec![e],
    };
    kind.of(hooks)
        .iter()
        .filter_map(|hook| run_one(kind, hook, &input, None).err())
        .collect()
}

fn state_bytes(state: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec(state).map_err(|e| Error::Other(e.to_string()))
}

fn run_one(
    kind: HookKind,
    hook: &Hook,
    input: &[u8],
    default_env: Option<&[String]>,
) -> Result<()> {
    let fail = |reason: String| Error::Hook {
        hook: kind.name(),
        path: hook.path().clone(),
        reason,
    };
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(hook.path());
    if let Some(argv0) = args.first() {
        cmd.arg0(argv0);
    }
    cmd.args(args.iter().skip(1));
    if let Some(env) = hook.env().as_deref().or(default_env) {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(format!("cannot run: {e}")))?;
    // The clock starts now, not after the state is written: a hook that never reads
    // its stdin must still time out.
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|secs| (secs, Instant::now() + Duration::from_secs(secs as u64)));
    let pidfd = crate::sys::pidfd_open(child.id() as i32).map_err(|e| fail(e.to_string()))?;
    let mut io = HookIo {
        stdin: child.stdin.take(),
        input,
        stderr: child.stderr.take(),
        captured: Vec::new(),
    };
    if let Err(secs) = io.pump(pidfd.as_fd(), deadline) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(fail(format!("timed out after {secs}s")));
    }
    let stderr = String::from_utf8_lossy(&io.captured).into_owned();
    let status = child.wait().map_err(|e| fail(e.to_string()))?;
    if status.success() {
        return Ok(());
    }
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (_, Some(s)) => format!("killed by signal {s}"),
        _ => "failed".to_string(),
    };
    let stderr = stderr.trim();
    Err(fail(if stderr.is_empty() {
        how
    } else {
        format!("{how}: {stderr}")
    }))
}

/// How much of a hook's stderr goes into the error message; the rest is read and dropped.
const STDERR_KEPT: usize = 16 * 1024;

/// A running hook's pipes: the state still to write, the stderr read so far.
struct HookIo<'a> {
    stdin: Option<ChildStdin>,
    input: &'a [u8],
    stderr: Option<ChildStderr>,
    captured: Vec<u8>,
}

impl HookIo<'_> {
    /// Writes the state and reads stderr as each pipe is ready, until the hook exits.
    /// A full pipe in either direction must not stop the clock: `Err(secs)` when the
    /// deadline passes first.
    fn pump(&mut self, pidfd: BorrowedFd, deadline: Option<(i64, Instant)>) -> Result<(), i64> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        for fd in [
            self.stdin.as_ref().map(|f| f.as_fd()),
            self.stderr.as_ref().map(|f| f.as_fd()),
        ]
        .into_iter()
        .flatten()
        {
            let _ = nix::fcntl::fcntl(fd, nix::fcntl::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
        }
        if self.input.is_empty() {
            self.stdin = None;
        }
        loop {
            let timeout = match deadline {
                Some((secs, at)) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(secs);
                    }
                    PollTimeout::try_from(left.as_millis().max(1).min(i32::MAX as u128) as i32)
                        .unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            let mut fds = vec![PollFd::new(pidfd, PollFlags::POLLIN)];
            if let Some(e) = &self.stderr {
                fds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
            }
            if let Some(i) = &self.stdin {
                fds.push(PollFd::new(i.as_fd(), PollFlags::POLLOUT));
            }
            match poll(&mut fds, timeout) {
                Err(nix::errno::Errno::EINTR) | Ok(0) => continue,
                Err(_) => return Ok(()),
                Ok(_) => {}
            }
            let exited = fds[0].any().unwrap_or(false);
            drop(fds);
            self.read_stderr();
            self.write_stdin();
            if exited {
                // What the hook wrote before exiting is in the pipe; a child of the hook
                // that keeps stderr open must not hold us here.
                self.read_stderr();
                return Ok(());
            }
        }
    }

    fn read_stderr(&mut self) {
        let Some(e) = &mut self.stderr else { return };
        let mut buf = [0u8; 8192];
        loop {
            match e.read(&mut buf) {
                Ok(0) => {
                    self.stderr = None;
                    return;
                }
                Ok(n) => {
                    let room = STDERR_KEPT.saturating_sub(self.captured.len());
                    self.captured.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return, // WouldBlock: nothing more for now
            }
        }
    }

    fn write_stdin(&mut self) {
        let Some(i) = &mut self.stdin else { return };
        while !self.input.is_empty() {
            match i.write(self.input) {
                Ok(n) => self.input = &self.input[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // A hook may exit (or close stdin) without reading its input: not an error.
                Err(_) => break,
            }
        }
        // All written (or refused): closing tells the hook its input is complete.
        self.stdin = None;
    }
}
