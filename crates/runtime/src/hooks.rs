//! OCI hooks: each is run with the container's state JSON on stdin, in order, with
//! its own timeout; a failing hook fails the operation and its stderr is in the error.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

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
    let input = serde_json::to_vec(state).map_err(|e| Error::Other(e.to_string()))?;
    for hook in kind.of(hooks) {
        run_one(kind, hook, &input)?;
    }
    Ok(())
}

fn run_one(kind: HookKind, hook: &Hook, input: &[u8]) -> Result<()> {
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
    if let Some(env) = hook.env() {
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
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading its input; that is not an error.
        let _ = stdin.write_all(input);
    }
    let timeout = hook.timeout().filter(|t| *t > 0);
    if let Some(secs) = timeout {
        let pidfd = crate::sys::pidfd_open(child.id() as i32).map_err(|e| fail(e.to_string()))?;
        let mut fds = [nix::poll::PollFd::new(
            pidfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = (secs as u64).saturating_mul(1000).min(i32::MAX as u64) as i32;
        let ready = loop {
            match nix::poll::poll(
                &mut fds,
                nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX),
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other,
            }
        };
        if matches!(ready, Ok(0)) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!("timed out after {secs}s")));
        }
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
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
