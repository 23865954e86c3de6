//! The per-container supervisor: a small detached process (the hidden
//! `__supervise --root ROOT ID` mode of the `codex-ctr` binary) that is the container
//! init's parent. It mounts the container's rootfs, creates and starts it through
//! codex-runtime with its stdout and stderr on pipes, reports "started" (or the error)
//! to whoever started it, writes the log, reaps the init, records how it ended (exit
//! code, signal, OOM kill, times), deletes the runtime container and unmounts.
//! It never holds the registry lock while it waits.
//!
//! The steady state in between (pump the output into the log, enforce the timeout,
//! wait for the init) needs none of the engine. So when the small `codex-shim`
//! binary is installed next to this one, the supervisor forks a worker that starts
//! the container and execs the shim (same pid); the worker supervises the container
//! for its first moments, then hands it over to the shim, which runs
//! `__supervise --root ROOT ID --finish ...` when the init has exited. Without the
//! shim everything happens in this process. See docs/supervisor.md.

mod abandon;
mod claim;
mod finish;
mod health;
pub mod logs;
mod monitor;
mod mountns;
pub mod netplug;
mod restart;
mod rootfs;
mod shim;
mod stdin;
mod targets;
mod tty;
mod worker;

pub(crate) use claim::mount_line;
use claim::{claim_unless_named, IdPipe, Told};
use finish::{complete, finish, Next};
use health::{health_timing, start_check};
pub(crate) use monitor::history_path;
pub use mountns::LiveRootfs;
use restart::{restart_main, supervise_runs};
pub use rootfs::{
    lock_rootfs, mount_rootfs, mount_rootfs_locked, unmount_rootfs, unmount_rootfs_locked,
};
use worker::supervise_with_shim;

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use codex_shim::monitor::UsageFiles;
use codex_shim::pump::{HealthTimer, Sampler, TimeLimit, Timeout};
use codex_sys::ProcessId;

use crate::config::ContainerConfig;
use crate::engine::{bundle_dir, LOG_FILE};
use crate::error::{Context, Error, Result};
use crate::registry::{ContainerStatus, Registry};
use logs::LogWriter;

pub use shim::SHIM_ENV;

/// The fd on which the supervisor reports `{"ok":true}` or `{"error":...}`.
pub const STATUS_FD: i32 = 3;

/// A supervisor started ahead of its container (`--root ROOT -`) reads the container's
/// id from this pipe; its end without an id means the start was given up.
pub const ID_FD: i32 = 4;

/// The report was written (or is not ours to write): fd 3 is closed, and may since
/// have been reused by something else.
static REPORTED: AtomicBool = AtomicBool::new(false);

/// The report of a failed start: the message, and Docker's exit code when the
/// program could not be run (the starter rebuilds the typed error from it).
fn failure(e: &Error) -> serde_json::Value {
    match e.exec_code() {
        Some(code) => serde_json::json!({"error": e.to_string(), "exec_code": code}),
        None => serde_json::json!({"error": e.to_string()}),
    }
}

/// Reports to whoever started the supervisor; only the first report is sent.
fn report(v: serde_json::Value) {
    if REPORTED.swap(true, Ordering::SeqCst) {
        return;
    }
    // SAFETY: STATUS_FD was handed to us by the engine; we own it from here on, and
    // REPORTED makes sure it is taken only once.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(STATUS_FD) });
    let _ = writeln!(f, "{v}");
}

/// The hidden supervisor modes of a binary; `args` is what follows its
/// `__supervise` argument. `--root ROOT ID` supervises container `ID`, handing the
/// steady state to `codex-shim` when that is installed next to the binary (`argv[0]`);
/// `--root ROOT ID --finish ...` is what the shim runs to record how the container
/// ended and clean up. A binary that routes `__supervise` here must be able to run
/// both. Returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    match args {
        [flag, root, dash] if flag == "--root" && dash == "-" => {
            supervise_main(Path::new(root), Awaited::OnIdPipe, true, true)
        }
        [flag, root, id] if flag == "--root" => {
            supervise_main(Path::new(root), Awaited::Known(id), true, true)
        }
        [flag, root, id, fin, rest @ ..] if flag == "--root" && fin == "--finish" => {
            finish(Path::new(root), id, rest)
        }
        [flag, root, id, r] if flag == "--root" && r == codex_shim::handoff::RESTART_FLAG => {
            restart_main(Path::new(root), id)
        }
        [flag, root, id, t, rest @ ..]
            if flag == "--root" && t == codex_shim::handoff::THRESHOLD_FLAG =>
        {
            monitor::threshold_main(Path::new(root), id, rest)
        }
        _ => 2,
    }
}

/// The supervisor's whole life, in this one process (never the shim: for a binary
/// that runs only this for `__supervise --root ROOT ID`). Returns the process exit
/// code.
pub fn run(root: &Path, id: &str) -> i32 {
    supervise_main(root, Awaited::Known(id), false, true)
}

/// The supervisor of a `run`, forked from the command (see `forked_start`) rather
/// than executed: as `__supervise --root ROOT -` of the binary `exe`, which it runs
/// from. Returns the process exit code.
pub(crate) fn forked_main(root: &Path, exe: &Path) -> i32 {
    shim::set_supervisor_exe(exe);
    supervise_main(root, Awaited::OnIdPipe, true, false)
}

/// The container's id: given, or still to come on [`ID_FD`] (a supervisor started
/// ahead of the create).
enum Awaited<'a> {
    Known(&'a str),
    OnIdPipe,
}

/// `detach`: fork first, the starter reaping this process (an executed supervisor); a
/// forked one is already its own process.
fn supervise_main(root: &Path, id: Awaited<'_>, use_shim: bool, detach: bool) -> i32 {
    // Fds the starter leaked to us beyond stdio, the status fd and the id pipe are not
    // ours to keep open for the container's lifetime (a caller's pipe would never see
    // EOF). The id pipe is closed once read.
    let keep = match id {
        Awaited::Known(_) => STATUS_FD,
        Awaited::OnIdPipe => ID_FD,
    };
    let _ = codex_shim::sys::close_from(keep as u32 + 1);
    // Detach from the starter: it reaps this first process at once.
    // SAFETY: single-threaded here (a fresh exec); the child continues alone.
    match detach.then(|| unsafe { nix::unistd::fork() }) {
        Some(Ok(nix::unistd::ForkResult::Parent { .. })) => return 0,
        Some(Ok(nix::unistd::ForkResult::Child)) | None => {}
        Some(Err(e)) => {
            report(serde_json::json!({"error": format!("forking the supervisor: {e}")}));
            return 1;
        }
    }
    // Before anything it starts (worker, shim, the finishing run) exists: they share it.
    if let Err(e) = mountns::enter_private() {
        report(serde_json::json!({"error": e.to_string()}));
        return 1;
    }
    let registry = match Registry::open(root) {
        Ok(r) => r,
        Err(e) => {
            report(serde_json::json!({"error": e.to_string()}));
            return 1;
        }
    };
    // Started ahead, all of the above (the fork, the namespace, the root) was done while
    // the starter created the container: only the claim is left once its id comes.
    let id = match id {
        Awaited::Known(id) => id.to_string(),
        Awaited::OnIdPipe => match await_id(&registry) {
            Some(id) => id,
            // The starter gave up (its create failed, or it died): nothing to do. A
            // rootfs mounted ahead goes with this process's namespace.
            None => return 0,
        },
    };
    let id = id.as_str();
    // One supervisor per container: two `start`s at once would undo each other's
    // mounts and cgroups. The loser only reports; the record is the winner's.
    match claim_unless_named(&registry, id) {
        Ok(true) => crate::trace::phase("sup: claimed"),
        Ok(false) => crate::trace::phase("sup: named at the create"),
        Err(e) => {
            report(serde_json::json!({"error": e.to_string()}));
            return 1;
        }
    }
    supervise_runs(root, &registry, id, use_shim)
}

/// The id a starter sends on [`ID_FD`], once the container is created; meanwhile, the
/// container's rootfs mounted as soon as the starter says its directory is ready (see
/// [`rootfs::premount`]). `None` if the pipe ends without an id.
fn await_id(registry: &Registry) -> Option<String> {
    let mut pipe = IdPipe::take(ID_FD);
    let mut mounted: Option<String> = None;
    let id = loop {
        match pipe.next() {
            Told::Mount { id, volatile } if mounted.is_none() => {
                let dir = registry.container_dir(&id).ok()?;
                if rootfs::premount(&dir, volatile) {
                    crate::trace::phase("sup: rootfs premounted");
                    mounted = Some(id);
                }
            }
            Told::Mount { .. } => {}
            Told::Id(id) => break id,
            Told::End => return None,
        }
    };
    crate::forked_start::take_back_cpus();
    if let Some(other) = mounted.filter(|m| *m != id) {
        // Never sent by a starter; not this container's rootfs, whatever it is.
        rootfs::take_premounted();
        if let Ok(dir) = registry.container_dir(&other) {
            unmount_rootfs(&dir);
        }
    }
    Some(id)
}

/// The container could not be started or supervised: the record says why.
fn record_failure(registry: &Registry, id: &str, msg: &str) {
    let _ = registry.update_container(id, |r| {
        r.status = ContainerStatus::Failed;
        r.error = Some(msg.to_string());
        r.pid = None;
        r.set_supervisor(None);
        Ok(())
    });
}

/// The container's config as stored in its record (defaults if unreadable).
fn load_config(registry: &Registry, id: &str) -> ContainerConfig {
    registry
        .get(id)
        .ok()
        .and_then(|r| serde_json::from_value(r.config).ok())
        .unwrap_or_default()
}

/// The supervisor in one process: start the container, mark it running, report,
/// pump its output into the log until the init exits, record how it ended.
fn supervise(root: &Path, registry: &Registry, id: &str) -> Result<Next> {
    let cfg = load_config(registry, id);
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "stdout pipe")?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "stderr pipe")?;
    let console = cfg.tty.then(tty::Console::new).transpose()?;
    // Held until this process ends (with the container): see `stdin`.
    let _stdin = stdin::own_stdin(&cfg)?;
    let mut started = start_container(root, registry, id, &cfg, out_w, err_w, console.as_ref())?;
    let me =
        ProcessId::of(std::process::id() as i32).ctx(|| "reading this process's start time")?;
    record_running(registry, id, started.pid, me)?;
    report(serde_json::json!({"ok": true, "pid": started.pid}));
    let running = Running {
        rt: &started.rt,
        dir: &started.dir,
        cfg: &cfg,
        pid: started.pid,
        timeout: time_limit(&cfg).map(|l| l.starting_now()),
        usage: started.usage.clone(),
    };
    let out = started.master.take().unwrap_or(out_r);
    supervise_here(registry, id, &running, started.log, [out, err_r])
}

/// A container that runs.
struct Started {
    rt: codex_runtime::Runtime,
    /// The runtime's container, as its create returned it (its end needs no new read).
    container: codex_runtime::Container,
    dir: PathBuf,
    log: LogWriter,
    /// Its init, a child of this process.
    pid: i32,
    /// The `cgroup.procs` file that lists its processes.
    procs: Option<PathBuf>,
    /// Where its memory and CPU usage are read.
    usage: UsageFiles,
    /// Its terminal's master (`-t`): its output, in place of the stdout pipe.
    master: Option<OwnedFd>,
    /// Expected to be removed in the step that records its end (see `complete`).
    removed_with_end: bool,
}

/// Mounts the container's rootfs, opens its log and creates and starts it with
/// `out` and `err` as its stdout and stderr, or with a terminal whose master comes
/// over `console`. Cleans up after itself on error.
fn start_container(
    root: &Path,
    registry: &Registry,
    id: &str,
    cfg: &ContainerConfig,
    out_w: OwnedFd,
    err_w: OwnedFd,
    console: Option<&tty::Console>,
) -> Result<Started> {
    let dir = registry.container_dir(id)?;
    let rt = codex_runtime::Runtime::new(root.join("runtime"));
    // A previous run's runtime container (a crashed supervisor) goes first.
    let _ = rt.delete(id, true);
    let bundle = bundle_dir(&dir);
    crate::network::join::prepare_start(registry, cfg, &bundle)?;
    let rec = registry.get(id)?;
    if dir.join(crate::network::files::HOSTS_FILE).exists() {
        // The peers and host nameservers of this start.
        crate::network::files::write_files(registry, &rec, cfg, &dir)?;
    }
    // Its record says whether it is ephemeral: its overlay and the runtime's record of
    // it are then not synced either.
    let ephemeral = rec.ephemeral();
    // An attached `run --rm` (its command named as its remover) is removed with its
    // end, unless the removal frees more than its directory (see `complete`).
    let removed_with_end = ephemeral
        && rec.remover().is_some()
        && !cfg.auto_remove
        && !crate::run_end::frees_more_than_its_directory(cfg);
    if !rootfs::take_premounted() {
        mount_rootfs(&dir, ephemeral)?;
    }
    // Only in the overlay this supervisor mounted (a --rootfs directory is the user's).
    let prepared = if dir.join("lowers").exists() {
        targets::prepare(&dir.join(crate::engine::ROOTFS_DIR), cfg)
    } else {
        Ok(())
    };
    if let Err(e) = prepared {
        unmount_rootfs(&dir);
        return Err(e);
    }
    crate::network::files::prepare_rootfs(cfg, &dir).inspect_err(|_| unmount_rootfs(&dir))?;
    crate::trace::phase("sup: rootfs mounted");
    let mut log = LogWriter::open(&dir.join(LOG_FILE), cfg.log_rotation())?;
    log.0.set_tty(console.is_some());
    // The container inherits our fds 1 and 2: point them at the pipes for `create`,
    // then back at /dev/null so only the container holds the write ends.
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .ctx(|| "opening /dev/null")?;
    let dup_to = |from: &OwnedFd, to: i32| {
        // SAFETY: dup2 onto the standard fds of this process.
        unsafe { libc::dup2(from.as_raw_fd(), to) }
    };
    dup_to(&out_w, 1);
    dup_to(&err_w, 2);
    let opts = codex_runtime::CreateOptions {
        bundle,
        unsynced_state: ephemeral,
        ..Default::default()
    };
    // Attached: only this process can start it, so a supervisor that runs from the
    // writable binary (forked by its `run`, see `start`) has its init exec the
    // program through the runtime's exec trampoline.
    let created = match console {
        Some(c) => c.create(&rt, id, &opts).map(|(c, m)| (c, Some(m))),
        None => rt
            .create_attached(id, &opts)
            .map(|c| (c, None))
            .map_err(Error::from),
    };
    let null_fd: OwnedFd = null.into();
    dup_to(&null_fd, 1);
    dup_to(&null_fd, 2);
    // The container has its stdin (an attached `run -i`'s pipe): a restart of it
    // must not read the same pipe, nor must this process keep it.
    dup_to(&null_fd, 0);
    drop((out_w, err_w));
    let (attached, master) = created.inspect_err(|_| unmount_rootfs(&dir))?;
    crate::trace::phase("sup: runtime created");
    if let Err(e) = netplug::plug(registry, id, attached.container().state.pid, cfg) {
        // Its init exits with the channel this drops.
        drop(attached);
        let _ = rt.delete(id, true);
        unmount_rootfs(&dir);
        return Err(e);
    }
    crate::trace::phase("sup: network plugged");
    let container = match rt.start_attached(attached) {
        Ok(c) => c,
        Err(e) => {
            let _ = rt.delete(id, true);
            unmount_rootfs(&dir);
            return Err(e.into());
        }
    };
    crate::trace::phase("sup: runtime started");
    Ok(Started {
        removed_with_end,
        pid: container.state.pid,
        procs: procs_file(&container.state.cgroups),
        usage: monitor::usage_files(&container.state.cgroups),
        container,
        rt,
        dir,
        log,
        master,
    })
}

/// Marks the container running with init `pid`, supervised by `supervisor`.
fn record_running(registry: &Registry, id: &str, pid: i32, supervisor: ProcessId) -> Result<()> {
    registry
        .update_container(id, |r| {
            if r.status == ContainerStatus::Restarting {
                // Started again by its restart policy: the last exit stays visible, and a
                // stop requested meanwhile stays requested (the `stop` that asked stops
                // this run).
            } else {
                r.finished_at = None;
                r.exit_code = None;
                r.signal = None;
                r.oom_killed = false;
                r.stop_requested = false;
                r.manually_stopped = false;
                r.restart_delay_ms = None;
            }
            // Every run starts `starting` (when it has a check).
            r.health = serde_json::from_value::<ContainerConfig>(r.config.clone())
                .ok()
                .and_then(|c| c.health)
                .filter(|h| h.enabled())
                .map(|_| crate::health::HealthState::starting());
            r.status = ContainerStatus::Running;
            r.pid = Some(pid);
            r.set_supervisor(Some(supervisor));
            r.started_at = Some(codex_runtime::state::now_rfc3339());
            r.restart_at = None;
            r.error = None;
            Ok(())
        })
        .map(|rec| crate::events::emit_about(registry.root(), &rec, "start", &[]))
}

/// `--timeout` of `cfg`: the stop signal after the timeout, SIGKILL `--timeout-grace`
/// later.
fn time_limit(cfg: &ContainerConfig) -> Option<TimeLimit> {
    let stop_signal = cfg
        .stop_signal
        .as_deref()
        .and_then(|s| codex_runtime::parse_signal(s).ok())
        .unwrap_or(libc::SIGTERM);
    cfg.timeout.map(|secs| TimeLimit {
        after: Duration::from_secs(secs),
        stop_signal,
        grace: Duration::from_secs(
            cfg.timeout_grace
                .unwrap_or(crate::config::DEFAULT_TIMEOUT_GRACE),
        ),
    })
}

/// A running container as the steady state needs it.
struct Running<'a> {
    rt: &'a codex_runtime::Runtime,
    dir: &'a Path,
    cfg: &'a ContainerConfig,
    /// Its init, a child of this process.
    pid: i32,
    timeout: Option<Timeout>,
    /// Where its memory and CPU usage are read.
    usage: UsageFiles,
}

/// The steady state in this process: pumps the output into the log until the init
/// has exited, then records how the container ended.
fn supervise_here(
    registry: &Registry,
    id: &str,
    c: &Running,
    mut log: LogWriter,
    pipes: [OwnedFd; 2],
) -> Result<Next> {
    let mut spawn_check = || start_check(registry.root(), id);
    let health = health_timing(c.cfg).map(|(interval, limit)| HealthTimer {
        interval,
        limit,
        spawn: &mut spawn_check,
    });
    let mut mon = monitor::monitor(c.cfg, c.dir, c.usage.clone());
    let interval = mon.interval;
    let mut sample = || {
        let verdict = mon.sample();
        for crossing in &verdict.crossings {
            monitor::emit_threshold(registry, id, crossing);
        }
        verdict.stop
    };
    let outcome = codex_shim::pump::pump(
        &mut log.0,
        pipes,
        c.pid,
        c.timeout,
        &mut |sig| {
            // The timeout's stop signal, then SIGKILL; SIGKILL for a memory stop.
            let _ = c.rt.kill(id, sig, true);
        },
        health,
        Some(Sampler {
            interval,
            sample: &mut sample,
        }),
    )
    .map_err(logs::from_shim)?;
    let _ = log.flush();
    complete(c.rt, registry, id, c.dir, c.cfg, outcome, None, false)
}

/// The `cgroup.procs` file that codex-runtime's `kill` with `all` reads: of the
/// hierarchy with `pids` or `freezer`, else the v2 one, else the first.
fn procs_file(cgroups: &codex_runtime::cgroups::Cgroups) -> Option<PathBuf> {
    let dirs = &cgroups.dirs;
    dirs.iter()
        .find(|d| d.has("pids") || d.has("freezer"))
        .or_else(|| dirs.iter().find(|d| d.is_v2()))
        .or(dirs.first())
        .map(|d| d.path.join("cgroup.procs"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use codex_runtime::cgroups::{CgroupDir, Cgroups};

    #[test]
    fn the_shim_signals_the_processes_the_runtime_would() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = |name: &str, controllers: &str, pid: i32| {
            let path = tmp.path().join(name);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("cgroup.procs"), format!("{pid}\n")).unwrap();
            CgroupDir {
                controllers: controllers.into(),
                path,
                mount_dir: String::new(),
                created_above: None,
            }
        };
        let layouts = [
            vec![dir("a", "memory", 1), dir("b", "pids", 2), dir("c", "", 3)],
            vec![
                dir("d", "memory", 4),
                dir("e", "", 5),
                dir("f", "cpu,freezer", 6),
            ],
            vec![dir("g", "memory", 7), dir("h", "", 8)],
            vec![dir("i", "memory", 9), dir("j", "cpu", 10)],
            vec![dir("k", "", 11)],
            vec![],
        ];
        for dirs in layouts {
            let cg = Cgroups { dirs };
            let ours = procs_file(&cg)
                .map(|p| std::fs::read_to_string(p).unwrap())
                .map(|t| t.trim().parse::<i32>().unwrap());
            assert_eq!(ours.into_iter().collect::<Vec<_>>(), cg.pids(), "{cg:?}");
        }
    }
}
