//! The supervisor with codex-shim: a forked worker starts the container and supervises
//! it for its first moments; if it still runs then (or is to be restarted), the worker
//! calls for the shim, the supervisor execs it (same pid), and the worker hands the
//! container over (see `codex_shim::handoff` and docs/supervisor.md).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use codex_shim::handoff::{Handover, ShimArgs, Worker};
use codex_shim::pump::{pump_until, Pumped};
use codex_sys::ProcessId;

use super::logs::{self, LogWriter};
use super::{
    abandon, complete, failure, health_timing, load_config, record_failure, record_running, report,
    restart, shim, start_container, supervise, supervise_here, time_limit, tty, Next, Running,
    Started, REPORTED, STATUS_FD,
};
use crate::config::ContainerConfig;
use crate::engine::LOG_FILE;
use crate::error::{Context, Error, Result};
use crate::registry::Registry;

/// How long the worker supervises a container before it hands it over to the shim.
/// A container that ends by then is recorded by the worker itself and never pays
/// for the shim's run of the full binary at its end (about 2.5 ms); one that lives
/// longer pays at most 1 % of its life for it.
const HANDOVER_AFTER: Duration = Duration::from_millis(250);

/// The supervisor with codex-shim (see `codex_shim::handoff`): a forked worker
/// starts the container, marks it running (naming this process, by pid and start
/// time, which an exec keeps) and supervises it for [`HANDOVER_AFTER`]. This process
/// waits as it is: a container that ends by then is recorded by the worker, and this
/// process exits without ever executing the shim. Otherwise the worker calls for the
/// shim, this process execs it (keeping its pid), and the worker hands the container
/// over to it; its exit hands the init to this process (a child subreaper until then).
/// If the exec fails, this process does the shim's part itself.
pub(super) fn supervise_with_shim(
    root: &Path,
    registry: &Registry,
    id: &str,
    shim: shim::Shim,
) -> Result<Next> {
    let cfg = load_config(registry, id);
    let dir = registry.container_dir(id)?;
    if codex_shim::sys::set_child_subreaper(true).is_err() {
        return supervise(root, registry, id);
    }
    let pipe = |what: &str| {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| format!("{what} pipe"))
    };
    let (out_r, out_w) = pipe("stdout")?;
    let (err_r, err_w) = pipe("stderr")?;
    let (ready_r, ready_w) = pipe("ready")?;
    let (info_r, info_w) = pipe("info")?;
    let (call_r, call_w) = pipe("call")?;
    let console = cfg.tty.then(tty::Console::new).transpose()?;
    // Kept by the shim across its exec, for the container's life: see `stdin`.
    let stdin_w = super::stdin::own_stdin(&cfg)?;
    let me = std::process::id() as i32;
    // SAFETY: this process is single-threaded (codex-runtime's create needs that
    // too); the child runs the worker and _exits.
    let worker = match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop((ready_w, info_r, call_r));
            let fds = WorkerFds {
                out_w,
                err_w,
                // The worker reads the output until it hands the container over;
                // the supervisor's copies wait.
                pipes: [out_r, err_r],
                ready: ready_r,
                info: info_w,
                call: call_w,
                console,
            };
            let code = work(root, registry, id, &cfg, fds, me);
            // SAFETY: ends the forked worker at once; it shares nothing that needs
            // flushing or unwinding with the supervisor.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            // The worker's start took the rootfs mounted ahead; a restart by this
            // process (the shim's exec failed) mounts it again.
            super::rootfs::take_premounted();
            child
        }
        Err(e) => {
            let _ = codex_shim::sys::set_child_subreaper(false);
            return Err(Error::Io {
                context: "forking the supervisor's worker".into(),
                cause: std::io::Error::from_raw_os_error(e as i32),
            });
        }
    };
    drop((out_w, err_w, ready_r, info_w, call_w));
    // The worker reports; this process never does, and its copy of the status fd must
    // go now: the starter reads until every copy is closed. (A restart has no status
    // fd; fd 3 may be anything then.)
    if !REPORTED.swap(true, Ordering::SeqCst) {
        // SAFETY: STATUS_FD is open (nothing was reported) and, from here on, ours
        // alone.
        drop(unsafe { OwnedFd::from_raw_fd(STATUS_FD) });
    }
    // A supervisor forked by `run` has SIGPIPE at its default, for the worker and the
    // container; this process must not die of writing to a worker that is gone.
    ignore_sigpipe();
    let ended = match await_call(call_r) {
        true => {
            crate::trace::phase("sup: shim called");
            let mut args = ShimArgs {
                root: root.into(),
                id: id.into(),
                worker: worker.as_raw(),
                ready: ready_w.as_raw_fd(),
                info: info_r.as_raw_fd(),
                stdout: out_r.as_raw_fd(),
                stderr: err_r.as_raw_fd(),
                log: dir.join(LOG_FILE),
                rotation: cfg.log_rotation(),
                exe: shim.supervisor_exe().to_path_buf(),
                view: None,
                health: health_timing(&cfg),
                console: console.as_ref().map(|c| c.shim_raw_fd()),
                monitor: Some(super::monitor::monitor_args(&cfg, &dir)),
            };
            let mut handed = vec![
                out_r.as_fd(),
                err_r.as_fd(),
                ready_w.as_fd(),
                info_r.as_fd(),
            ];
            handed.extend(console.as_ref().map(|c| c.shim_fd()));
            handed.extend(stdin_w.as_ref().map(|w| w.as_fd()));
            // Returns only if the exec failed: this process is the shim's stand-in.
            let _ = shim.exec(&mut args, &handed);
            codex_shim::handoff::await_worker(ready_w, info_r, worker.as_raw())
        }
        // The worker ended without calling: nothing to hand over, nothing to exec.
        false => {
            drop(ready_w);
            codex_shim::handoff::collect_worker(info_r, worker.as_raw())
        }
    }
    .ctx(|| "waiting for the supervisor's worker")?;
    let h = match ended {
        Worker::HandedOver(h) => h,
        // The worker has recorded how the container ended.
        Worker::Done => return Ok(Next::Done),
        Worker::Failed => return Ok(Next::Done),
        Worker::Restart(delay) => return Ok(Next::Restart(delay)),
        Worker::Died(how) => {
            let me = ProcessId::of(std::process::id() as i32).ok();
            abandon::abandon(root, registry, id, &how, me);
            return Ok(Next::Done);
        }
    };
    let rt = codex_runtime::Runtime::new(root.join("runtime"));
    let mut log = LogWriter::open(&dir.join(LOG_FILE), cfg.log_rotation())?;
    log.0.set_pending(h.pending);
    let out = match &console {
        Some(c) => {
            log.0.set_tty(true);
            c.take_passed()?
        }
        None => out_r,
    };
    let running = Running {
        rt: &rt,
        dir: &dir,
        cfg: &cfg,
        pid: h.pid,
        timeout: h.timeout,
        usage: h.usage,
    };
    supervise_here(registry, id, &running, log, [out, err_r])
}

/// The worker's ends of its pipes.
struct WorkerFds {
    /// Write ends of the container's stdout and stderr (for `create`).
    out_w: OwnedFd,
    err_w: OwnedFd,
    /// Read ends of the same pipes.
    pipes: [OwnedFd; 2],
    /// A byte (or EOF) once the supervisor is past the exec it was called for.
    ready: OwnedFd,
    /// Where the handover goes.
    info: OwnedFd,
    /// A byte here calls for the shim (see [`call_shim`]).
    call: OwnedFd,
    /// A container with a terminal: where its master comes and is passed on.
    console: Option<tty::Console>,
}

/// The worker: starts the container, marks it running and reports; then supervises it
/// in this process for [`HANDOVER_AFTER`], and, if it still runs (or is to be
/// restarted), calls for the shim and hands over what is left on `info` (nothing if the
/// container ended and all is recorded). Returns its exit code: not 0 if it failed (and
/// recorded why).
fn work(
    root: &Path,
    registry: &Registry,
    id: &str,
    cfg: &ContainerConfig,
    fds: WorkerFds,
    supervisor: i32,
) -> i32 {
    // Die with the supervisor: a killed supervisor leaves the container
    // unsupervised, never half-supervised by its worker.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if nix::unistd::getppid().as_raw() != supervisor {
        return 1;
    }
    let WorkerFds {
        out_w,
        err_w,
        pipes,
        ready,
        info,
        call,
        console,
    } = fds;
    let fail = |msg: String, ours: Option<ProcessId>, started: bool| {
        if started {
            // The container runs: it must not run on with nobody supervising it.
            abandon::abandon(root, registry, id, &msg, ours);
        } else {
            record_failure(registry, id, &msg);
        }
        report(serde_json::json!({"error": msg}));
        codex_shim::handoff::WORKER_FAILED_CODE
    };
    let Started {
        rt,
        container,
        dir,
        mut log,
        pid,
        procs,
        usage,
        master,
        removed_with_end,
    } = match start_container(root, registry, id, cfg, out_w, err_w, console.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            let msg = e.to_string();
            // A restart that failed to start may be tried again (its policy says).
            if let Some(delay) = restart::retry_or_fail(registry, id, &msg) {
                call_shim(call, ready);
                let notice = codex_shim::handoff::encode_restart(delay);
                return match std::fs::File::from(info).write_all(&notice) {
                    Ok(()) => 0,
                    Err(_) => 1,
                };
            }
            report(failure(&e));
            return codex_shim::handoff::WORKER_FAILED_CODE;
        }
    };
    crate::testhook::die("worker-started");
    let ours = match ProcessId::of(supervisor)
        .ctx(|| format!("reading the start time of the supervisor {supervisor}"))
        .and_then(|sup| record_running(registry, id, pid, sup).map(|()| sup))
    {
        Ok(sup) => sup,
        Err(e) => return fail(e.to_string(), None, true),
    };
    crate::testhook::die("worker-recorded");
    report(serde_json::json!({"ok": true, "pid": pid}));
    crate::trace::phase("worker: recorded running, reported");
    let timeout = time_limit(cfg).map(|l| l.starting_now());
    let hand_over_at = codex_shim::sys::monotonic() + HANDOVER_AFTER;
    let [out_r, err_r] = pipes;
    let pipes = [master.unwrap_or(out_r), err_r];
    let pumped = pump_until(
        &mut log.0,
        &pipes,
        pid,
        timeout,
        Some(hand_over_at),
        &mut |sig| {
            // Called when the timeout fires: the stop signal, then SIGKILL.
            let _ = rt.kill(id, sig, true);
        },
        // Health checks begin with the shim (or the supervisor that stays whole):
        // a check under way would not survive the handover. So does sampling.
        None,
        None,
    );
    let done = match pumped {
        Ok(Pumped::Exited(outcome)) => {
            crate::trace::phase("worker: init exited");
            let _ = log.flush();
            let done = complete(
                &rt,
                registry,
                id,
                &dir,
                cfg,
                outcome,
                Some(container),
                removed_with_end,
            );
            crate::trace::phase("worker: exit recorded, cleaned up");
            done
        }
        Ok(Pumped::Yielded) => {
            call_shim(call, ready);
            if let Some(c) = &console {
                if let Err(e) = c.pass_on(pipes[0].as_fd()) {
                    return fail(e.to_string(), Some(ours), true);
                }
            }
            let h = Handover {
                pid,
                procs,
                usage,
                timeout,
                pending: log.0.take_pending(),
            };
            return match std::fs::File::from(info).write_all(&h.encode()) {
                Ok(()) => 0,
                // The supervisor is gone (and this process about to follow it).
                Err(_) => 1,
            };
        }
        Err(e) => Err(logs::from_shim(e)),
    };
    match done {
        Ok(Next::Done) => 0,
        // The supervisor sleeps the backoff and starts it again.
        Ok(Next::Restart(delay)) => {
            call_shim(call, ready);
            match std::fs::File::from(info).write_all(&codex_shim::handoff::encode_restart(delay)) {
                Ok(()) => 0,
                Err(_) => 1,
            }
        }
        Err(e) => fail(e.to_string(), Some(ours), true),
    }
}

/// In the supervisor: whether the worker called for the shim (a byte on `call`), or
/// ended without (the pipe's end: it has nothing to hand over).
fn await_call(call: OwnedFd) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(&call, &mut byte) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(1) => return true,
            _ => return false,
        }
    }
}

/// In the worker: calls for the shim and waits until the supervisor is past the exec
/// (a byte on `ready` from the shim or from the supervisor whose exec failed, or EOF
/// if it died). The container's output waits in its pipes meanwhile (a few ms).
fn call_shim(call: OwnedFd, ready: OwnedFd) {
    let _ = nix::unistd::write(&call, b"1");
    drop(call);
    crate::testhook::die("worker-called");
    let mut byte = [0u8; 1];
    while nix::unistd::read(&ready, &mut byte) == Err(nix::errno::Errno::EINTR) {}
    crate::trace::phase("worker: shim ready");
}

/// SIGPIPE ignored in this process (a Rust program's default, which a forked
/// supervisor gave up for its children).
fn ignore_sigpipe() {
    // SAFETY: sets a signal's disposition to SIG_IGN; no handler runs.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
}
