//! `codex-shim`: the steady state of a container's supervisor (see the codex-shim
//! crate's `handoff` module and docs/supervisor.md). Started only by exec from
//! `codex-ctr __supervise`, with the command line of
//! [`codex_shim::handoff::ShimArgs`]: waits for the worker that starts the container
//! (and supervises it for a while); if the worker hands it over, pumps the
//! container's output into the log, enforces the timeout and reaps the init, runs
//! `codex-ctr __supervise ... --finish` to record the exit and clean up, and ends when
//! that has.

// Every unsafe block says why it is sound; nothing outside tests panics on a value that
// can be absent at run time (make lint and CI enforce both).
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use codex_shim::handoff::{self, Finish, Handover, ShimArgs, Worker};
use codex_shim::history::History;
use codex_shim::log::LogWriter;
use codex_shim::monitor::{Monitor, Watch};
use codex_shim::pump::{self, Outcome};
use codex_shim::{sys, Error};

fn main() {
    std::process::exit(run())
}

fn run() -> i32 {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let a = match ShimArgs::parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("codex-shim: {e}");
            return 2;
        }
    };
    // The supervisor made itself a child subreaper before it forked the worker, so
    // that the worker's exit hands the init to this process; the exec keeps that,
    // but make sure of it before saying "ready".
    let _ = sys::set_child_subreaper(true);
    let view = a.view.and_then(|fd| adopt(fd).ok());
    let worker = match (adopt(a.ready), adopt(a.info)) {
        (Ok(ready), Ok(info)) => handoff::await_worker(ready, info, a.worker),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let finish = match worker {
        Ok(Worker::HandedOver(h)) => match supervise(&a, view.as_ref(), h) {
            Ok(o) => Finish::Exited(o),
            Err(e) => Finish::Failed(e.to_string()),
        },
        // The worker has recorded how the container ended (or why it does not run).
        Ok(Worker::Done) => return 0,
        // ... and its restart policy runs it again.
        Ok(Worker::Restart(delay)) => return restart(&a, view.as_ref(), delay),
        Ok(Worker::Failed) => return 1,
        // What it started may still run: the full binary kills it and records why.
        Ok(Worker::Died(how)) => Finish::Failed(how),
        Err(e) => Finish::Failed(format!("waiting for the supervisor's worker: {e}")),
    };
    record(&a, view.as_ref(), &finish)
}

/// Takes an fd handed over across the exec, and keeps it from the next one.
fn adopt(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: the supervisor handed this fd over to this process alone.
    let fd = unsafe { sys::adopt_fd(fd) }?;
    sys::set_cloexec(fd.as_fd(), true)?;
    Ok(fd)
}

fn supervise(a: &ShimArgs, view: Option<&OwnedFd>, h: Handover) -> codex_shim::Result<Outcome> {
    let pipe = |fd, what: &str| {
        adopt(fd).map_err(|e| Error::new(format!("the container's {what} pipe (fd {fd})"), e))
    };
    let mut out = pipe(a.stdout, "stdout")?;
    let err = pipe(a.stderr, "stderr")?;
    let mut log = LogWriter::open(&a.log, a.rotation)?;
    log.set_pending(h.pending);
    if let Some(fd) = a.console {
        // A terminal: the worker sent its master before the handover; it is the
        // container's output from here on (and what `attach` writes input to).
        let sock = adopt(fd).map_err(|e| Error::new(format!("the console socket (fd {fd})"), e))?;
        out = codex_shim::fdpass::recv_fd(sock.as_fd())
            .map_err(|e| Error::new("receiving the container's terminal", e))?;
        log.set_tty(true);
    }
    let mut spawn_check = || start_check(a, view);
    let health = a.health.map(|(interval, limit)| pump::HealthTimer {
        interval,
        limit,
        spawn: &mut spawn_check,
    });
    let mut monitor = a.monitor.as_ref().map(|m| Monitor {
        interval: m.interval,
        files: h.usage.clone(),
        watch: Watch::new(m.thresholds),
        history: History::open(&m.history).ok(),
    });
    // The event writers under way (reaped as they end, and all before the end is
    // recorded, so a threshold's event comes before the `die` it may cause).
    let mut reporters: Vec<i32> = Vec::new();
    let mut sample = || {
        let Some(m) = monitor.as_mut() else {
            return false;
        };
        reporters.retain(|p| matches!(sys::try_wait(*p), Ok(None)));
        let verdict = m.sample();
        for c in &verdict.crossings {
            if let Ok(pid) = start_full(a, view, &a.threshold_argv(c)) {
                reporters.push(pid);
            }
        }
        verdict.stop
    };
    let sampler = a.monitor.as_ref().map(|m| pump::Sampler {
        interval: m.interval,
        sample: &mut sample,
    });
    let outcome = pump::pump(
        &mut log,
        [out, err],
        h.pid,
        h.timeout,
        &mut |sig| kill_all(h.procs.as_deref(), sig),
        health,
        sampler,
    );
    for p in reporters {
        let _ = sys::wait(p);
    }
    let outcome = outcome?;
    let _ = log.flush();
    Ok(outcome)
}

/// Starts `codex-ctr __health ...` (through the read-only view when there is one)
/// as the leader of a new process group, with no stdio; its pid. The pump reaps it.
fn start_check(a: &ShimArgs, view: Option<&OwnedFd>) -> std::io::Result<i32> {
    start_full(a, view, &a.health_argv())
}

/// Starts the full binary with `argv` (through the read-only view when there is
/// one) as the leader of a new process group, with no stdio; its pid, to be reaped
/// by pid.
fn start_full(a: &ShimArgs, view: Option<&OwnedFd>, argv: &[OsString]) -> std::io::Result<i32> {
    let through_view = full_binary(a, view);
    let program = match &through_view {
        Some(f) => PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd())),
        None => a.exe.clone(),
    };
    let child = Command::new(&program)
        .arg0(&argv[0])
        .args(&argv[1..])
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Reaped by pid (sys::wait), not through the `Child`.
    Ok(child.id() as i32)
}

/// What codex-runtime's `kill` with `all` does: the signal to every process listed in
/// the container's cgroup.
fn kill_all(procs: Option<&Path>, sig: i32) {
    let Some(text) = procs.and_then(|p| std::fs::read_to_string(p).ok()) else {
        return;
    };
    for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        // SAFETY: kill with integer arguments; a process may exit between the listing
        // and the signal, which is not an error.
        unsafe { libc::kill(pid, sig) };
    }
}

/// The full binary, opened through the read-only view it came from when there is
/// one (so no supervisor runs a writable binary).
fn full_binary(a: &ShimArgs, view: Option<&OwnedFd>) -> Option<OwnedFd> {
    view.zip(a.exe.file_name())
        .and_then(|(v, name)| sys::open_in(v.as_fd(), name).ok())
}

/// Runs the full binary to record `finish` and clean up, and waits for it: this
/// process, the one the registry names, ends only after the record says how the
/// container ended, or, when its restart policy runs it again, sleeps the backoff
/// and execs the full binary to start it (see [`restart`]). The binary runs through
/// the read-only view when there is one, else from its path.
fn record(a: &ShimArgs, view: Option<&OwnedFd>, finish: &Finish) -> i32 {
    let argv = a.finish_argv(finish);
    let through_view = full_binary(a, view);
    let program = match &through_view {
        // The kernel opens the path before the exec closes the (close-on-exec) fd.
        Some(f) => PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd())),
        None => a.exe.clone(),
    };
    match Command::new(&program)
        .arg0(&argv[0])
        .args(&argv[1..])
        .stderr(std::process::Stdio::null())
        .output()
    {
        Ok(out) => match handoff::decode_restart(&out.stdout) {
            Some(delay) if out.status.success() => restart(a, view, delay),
            _ => out.status.code().unwrap_or(1),
        },
        Err(e) => {
            // Nothing records the exit now: the engine finds this supervisor gone.
            eprintln!("codex-shim: running {}: {e}", a.exe.display());
            1
        }
    }
}

/// The restart policy runs the container again: sleeps the backoff (holding
/// nothing of the old run: its pipes and log are closed), then execs the full
/// binary's `__supervise ... --restart`, which keeps this pid (the one the record
/// names, with its start time) and starts the container as a first start does. A
/// user's `stop` in the meantime kills this process or, if it comes later, is seen
/// by that restart under the registry lock. Returns only if the exec failed.
fn restart(a: &ShimArgs, view: Option<&OwnedFd>, delay: std::time::Duration) -> i32 {
    handoff::sleep(delay);
    let argv = a.restart_argv();
    let file = match full_binary(a, view) {
        Some(f) => f,
        None => match std::fs::File::open(&a.exe) {
            Ok(f) => f.into(),
            Err(e) => {
                eprintln!("codex-shim: opening {}: {e}", a.exe.display());
                return 1;
            }
        },
    };
    let e = sys::fexecve(file.as_fd(), &argv);
    // The record still says restarting, naming this process: once it has exited,
    // the engine's next look at the container repairs that.
    eprintln!("codex-shim: executing {}: {e}", a.exe.display());
    1
}
