//! The last steps of every container process (init and exec): find the program,
//! drop privileges in the right order, and execve.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Linux, Process};

use crate::error::{Context, Error, Result};
use crate::security;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The program to execve, resolved in the container's root before anything is dropped,
/// so a missing binary fails `create`, not `start`.
pub struct Program {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

fn cstring(s: &str, field: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::config(field, format!("{s:?} contains a NUL byte")))
}

impl Program {
    pub fn find(p: &Process) -> Result<Program> {
        let args = p.args().as_deref().unwrap_or(&[]);
        let arg0 = args
            .first()
            .ok_or_else(|| Error::config("process.args", "must name a program"))?;
        let env = p.env().as_deref().unwrap_or(&[]);
        let path_var = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        let path = lookup(arg0, path_var, p.cwd())?;
        Ok(Program {
            path: CString::new(path.as_os_str().as_bytes())
                .map_err(|_| Error::config("process.args[0]", "contains a NUL byte"))?,
            argv: args
                .iter()
                .enumerate()
                .map(|(i, a)| cstring(a, &format!("process.args[{i}]")))
                .collect::<Result<_>>()?,
            envp: with_home(env, p.user().uid())
                .iter()
                .enumerate()
                .map(|(i, e)| cstring(e, &format!("process.env[{i}]")))
                .collect::<Result<_>>()?,
        })
    }

    /// Replaces the process image through `trampoline` (see [`crate::trampoline`]),
    /// which reports a failed exec of the program on `status`. Returns only if the
    /// trampoline itself could not be executed.
    pub fn exec_through(
        &self,
        trampoline: &crate::trampoline::Trampoline,
        status: &super::sync::Channel,
    ) -> Error {
        trampoline.exec(
            &self.path,
            &self.argv,
            &self.envp,
            std::os::fd::AsFd::as_fd(status),
        )
    }

    /// Replaces the process image. Returns only on failure.
    pub fn exec(&self) -> Error {
        let err = nix::unistd::execve(&self.path, &self.argv, &self.envp).unwrap_err();
        Error::Exec {
            // A missing interpreter (`#!/bin/bash` in an image without bash) is ENOENT.
            code: if err == nix::errno::Errno::ENOENT {
                127
            } else {
                126
            },
            message: format!("exec {:?}: {}", self.path, err.desc()),
        }
    }
}

/// Like runc: without HOME in the environment, the user's home from the container's
/// /etc/passwd (or `/`).
fn with_home(env: &[String], uid: u32) -> Vec<String> {
    let mut env = env.to_vec();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid))
                        .then(|| f[5].to_string())
                })
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "/".to_string());
        env.push(format!("HOME={home}"));
    }
    env
}

fn is_executable(p: &Path) -> std::io::Result<bool> {
    let m = std::fs::metadata(p)?;
    Ok(m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn lookup(arg0: &str, path_var: &str, cwd: &Path) -> Result<PathBuf> {
    if arg0.contains('/') {
        let p = if Path::new(arg0).is_absolute() {
            PathBuf::from(arg0)
        } else {
            cwd.join(arg0)
        };
        return match is_executable(&p) {
            Ok(true) => Ok(PathBuf::from(arg0)),
            Ok(false) => Err(Error::Exec {
                code: 126,
                message: format!("exec: {arg0:?}: permission denied"),
            }),
            Err(e) => Err(Error::Exec {
                code: if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                },
                message: format!("exec: {arg0:?}: {e}"),
            }),
        };
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(arg0);
        if is_executable(&candidate).unwrap_or(false) {
            return Ok(candidate);
        }
    }
    Err(Error::Exec {
        code: 127,
        message: format!("exec: {arg0:?}: executable file not found in $PATH"),
    })
}

/// Closes every runtime fd but `keep`, applies scheduling, user, capabilities and
/// no_new_privs in the order the kernel's permission checks require, enters the cwd
/// (which must be inside the container) and restores default signal handling.
/// `keep` stays open: it is where failures are reported and where a filter that
/// notifies sends its fd (see [`crate::seccomp::Prepared::load`]). So does
/// `trampoline`, the memfd the program is to be exec'd through.
pub fn drop_privileges(
    p: &Process,
    linux: Option<&Linux>,
    userns: bool,
    preserve_fds: u32,
    keep: &super::sync::Channel,
    trampoline: Option<std::os::fd::BorrowedFd>,
    seccomp: Option<&crate::seccomp::Prepared>,
) -> Result<()> {
    use std::os::fd::{AsFd, AsRawFd};
    let nnp = p.no_new_privileges().unwrap_or(false);
    let keep_fd = keep.as_fd().as_raw_fd();
    let trampoline_fd = trampoline.map_or(keep_fd, |t| t.as_raw_fd());
    crate::sys::close_fds_except(3 + preserve_fds, &[keep_fd, trampoline_fd])
        .ctx(|| "closing the runtime's file descriptors")?;
    security::set_process_attributes(p, linux.and_then(|l| l.personality().as_ref()))?;
    if let Some(policy) = linux.and_then(|l| l.memory_policy().as_ref()) {
        security::set_memory_policy(policy)?;
    }
    let caps = p
        .capabilities()
        .as_ref()
        .map(security::CapMasks::from_spec)
        .transpose()?
        // Warned about at create (see `unraisable_ambient_names`), as runc does.
        .map(security::CapMasks::raisable);
    if let Some(c) = &caps {
        security::drop_bounding(c.bounding)?;
    }
    if let Some(f) = seccomp.filter(|_| !nnp) {
        // Without no_new_privs, loading needs CAP_SYS_ADMIN: before the drop.
        f.load(keep)?;
    }
    security::switch_user(p, userns)?;
    if let Some(c) = &caps {
        security::set_capabilities(c)?;
    }
    nix::unistd::chdir(p.cwd()).ctx(|| format!("process.cwd: entering {}", p.cwd().display()))?;
    match nix::unistd::getcwd() {
        Ok(cwd) if cwd.is_absolute() => {}
        _ => {
            return Err(Error::config(
                "process.cwd",
                format!("{} is outside the container", p.cwd().display()),
            ))
        }
    }
    if nnp {
        security::set_no_new_privs()?;
    }
    reset_signals();
    if let Some(f) = seccomp.filter(|_| nnp) {
        f.load(keep)?;
    }
    Ok(())
}

/// The program must start with default dispositions and nothing blocked, whatever the
/// runtime had (Rust ignores SIGPIPE; the foreground runtime blocks signals).
pub fn reset_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: installing the default disposition is always sound.
            let _ = unsafe { sigaction(sig, &dfl) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        None,
    );
}
