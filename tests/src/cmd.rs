//! Running external commands. Every command the harness runs has a timeout (60 s unless the
//! call says otherwise, `CODEX_TEST_TIMEOUT=SECS` changes the default), runs in a process
//! group of its own, and on timeout the whole group is killed (a container init or a daemon
//! it started included) and the test fails with a message naming the command.

use serde_json::Value;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::next;

/// The default bound on one command before the harness kills it and fails the test.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// [`CMD_TIMEOUT`], or `CODEX_TEST_TIMEOUT` seconds when that is set (a slow machine).
pub fn cmd_timeout() -> Duration {
    std::env::var("CODEX_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(CMD_TIMEOUT)
}

/// The result of one command.
#[derive(Debug)]
pub struct Out {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    pub fn ok(&self) -> bool {
        self.status.success()
    }
    pub(crate) fn describe(&self) -> String {
        format!(
            "`{}` -> {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, self.status, self.stdout, self.stderr
        )
    }
    /// Why this result is a crash rather than an answer: killed by a signal, exit 101 (a
    /// Rust panic) or 134 (abort), or a panic message on stderr. `None` for an answer.
    pub fn crash(&self) -> Option<String> {
        if let Some(sig) = self.status.signal() {
            return Some(format!("killed by signal {sig}"));
        }
        match self.code() {
            Some(101) => return Some("exit 101 (a Rust panic)".into()),
            Some(134) => return Some("exit 134 (abort)".into()),
            _ => {}
        }
        self.stderr
            .contains("panicked at")
            .then(|| "a panic message on stderr".into())
    }
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.ok(), "command failed: {}", self.describe());
        self
    }
    /// The command refused: a non-zero exit code that is not a crash (see [`Out::crash`]).
    /// A runtime that panics or aborts has not refused anything.
    #[track_caller]
    pub fn assert_fails(&self) -> &Self {
        assert!(
            !self.ok() && self.code().is_some(),
            "command should have failed with an exit code: {}",
            self.describe()
        );
        if let Some(why) = self.crash() {
            panic!(
                "command crashed ({why}) instead of refusing: {}",
                self.describe()
            );
        }
        self
    }
    /// Same as [`Out::assert_fails`]: the name a negative test reads best with.
    #[track_caller]
    pub fn assert_refused(&self) -> &Self {
        self.assert_fails()
    }
    /// A refusal (see [`Out::assert_fails`]) whose message names `field` (case-insensitive):
    /// the JSON path, option or name the input was wrong about.
    #[track_caller]
    pub fn assert_refused_naming(&self, field: &str) -> &Self {
        self.assert_fails().assert_stderr_mentions(field)
    }
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "unexpected exit code: {}",
            self.describe()
        );
        self
    }
    /// Asserts stderr mentions `needle` (case-insensitive).
    #[track_caller]
    pub fn assert_stderr_mentions(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "stderr should mention {needle:?}: {}",
            self.describe()
        );
        self
    }
    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.describe()))
    }
    /// stdout, trimmed, as lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().map(str::trim_end).collect()
    }
}

pub(crate) fn cmdline(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Waits for `child` up to `timeout`; `None` if it is still running.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("wait for child: {e}"),
        }
    }
}

/// Puts the command in a process group of its own (its pid is the group id), so that
/// [`kill_group`] reaches everything it started that did not leave the group.
pub fn own_group(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0)
}

/// SIGKILLs the process group led by `child` (see [`own_group`]) and reaps the child.
pub fn kill_group(child: &mut Child) {
    if let Ok(pgid) = i32::try_from(child.id()) {
        if pgid > 0 {
            // SAFETY: kill(2) on the process group our still-unreaped child leads.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cmd` in its own process group with stdin from /dev/null and stdout/stderr into the
/// given files (files, not pipes: a container created by the command inherits them and may
/// outlive the command). On timeout the group is killed. Returns an error string instead of
/// panicking (for Drop paths).
pub fn try_run_to(
    cmd: &mut Command,
    out_path: &Path,
    err_path: &Path,
    timeout: Duration,
) -> Result<Out, String> {
    let line = cmdline(cmd);
    let out = File::create(out_path).map_err(|e| format!("{}: {e}", out_path.display()))?;
    let err = File::create(err_path).map_err(|e| format!("{}: {e}", err_path.display()))?;
    own_group(cmd).stdin(Stdio::null()).stdout(out).stderr(err);
    let mut child = cmd.spawn().map_err(|e| format!("spawn `{line}`: {e}"))?;
    let status = match wait_child(&mut child, timeout) {
        Some(st) => st,
        None => {
            kill_group(&mut child);
            return Err(format!(
                "`{line}` did not finish within {timeout:?} (its process group was killed)\n\
                 stdout: {}\nstderr: {}",
                read_lossy(out_path),
                read_lossy(err_path)
            ));
        }
    };
    Ok(Out {
        cmdline: line,
        status,
        stdout: read_lossy(out_path),
        stderr: read_lossy(err_path),
    })
}

/// Runs any command to completion under `timeout` (output captured through temp files);
/// fails the test naming the command when it hangs.
#[track_caller]
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Out {
    let dir = std::env::temp_dir();
    let (pid, n) = (std::process::id(), next());
    let o = dir.join(format!(".codex-test-{pid}-{n}.out"));
    let e = dir.join(format!(".codex-test-{pid}-{n}.err"));
    let r = try_run_to(cmd, &o, &e, timeout);
    let _ = fs::remove_file(&o);
    let _ = fs::remove_file(&e);
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// [`run_timeout`] with the default timeout ([`cmd_timeout`]).
#[track_caller]
pub fn run_command(cmd: &mut Command) -> Out {
    run_timeout(cmd, cmd_timeout())
}

/// Runs a host shell snippet (`sh -c`), capturing its output; panics on timeout.
#[track_caller]
pub fn host_sh(script: &str) -> Out {
    run_command(Command::new("sh").arg("-c").arg(script))
}

/// Reads a file as (lossy) UTF-8; empty if it does not exist.
pub fn read_lossy(p: &Path) -> String {
    let mut v = Vec::new();
    if let Ok(mut f) = File::open(p) {
        let _ = f.read_to_end(&mut v);
    }
    String::from_utf8_lossy(&v).into_owned()
}

/// Polls `f` every 10 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// strace's `-e` filter for every call that makes data durable.
pub const STRACE_SYNC_CALLS: &str = "trace=fsync,fdatasync,sync_file_range,syncfs,sync";

/// The sync calls an `strace -o log -e` [`STRACE_SYNC_CALLS`] run recorded (strace's own
/// exit and signal lines left out); the log is removed. Empty if there is no log.
pub fn sync_calls_in(log: &Path) -> Vec<String> {
    let text = read_lossy(log);
    let _ = fs::remove_file(log);
    text.lines()
        .filter(|l| l.contains("sync") && !l.contains("+++") && !l.contains("---"))
        .map(str::to_string)
        .collect()
}

/// Is `tool` on $PATH?
pub fn have_tool(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            fs::metadata(d.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(script: &str) -> Out {
        host_sh(script)
    }

    #[test]
    fn a_panic_exit_or_message_or_signal_is_a_crash_not_a_refusal() {
        assert!(out("exit 101").crash().is_some());
        assert!(out("exit 134").crash().is_some());
        assert!(out("kill -9 $$").crash().is_some());
        assert!(
            out("echo \"thread 'main' panicked at x.rs:1:1:\" >&2; exit 1")
                .crash()
                .is_some()
        );
        assert!(out("echo 'bad field' >&2; exit 1").crash().is_none());
    }

    #[test]
    fn a_hanging_command_is_killed_with_its_group() {
        let pidfile = std::env::temp_dir().join(format!("codex-test-group-{}", next()));
        let script = format!("sleep 100 & echo $! > {}; sleep 100", pidfile.display());
        let r = std::panic::catch_unwind(|| {
            run_timeout(
                Command::new("sh").arg("-c").arg(&script),
                Duration::from_secs(2),
            )
        });
        let msg = r.expect_err("the hang must fail the caller");
        let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("did not finish"), "{msg}");
        assert!(
            msg.contains("sleep 100"),
            "the message names the command: {msg}"
        );
        // Positive control: the background child was started (and recorded its pid).
        let bg: i64 = fs::read_to_string(&pidfile)
            .expect("the script recorded its background child")
            .trim()
            .parse()
            .expect("a pid");
        let _ = fs::remove_file(&pidfile);
        assert!(
            wait_until(Duration::from_secs(10), || !crate::pid_alive(bg)),
            "the group's background child {bg} survived the kill"
        );
    }
}
