//! How the halves of a supervisor meet.
//!
//! `codex-ctr __supervise --root ROOT ID` (the full binary) makes the container's
//! output pipes, becomes a child subreaper and forks a *worker* that creates and starts
//! the container, marks it running (naming the supervisor's pid, which an exec keeps,
//! with its start time) and reports to whoever started the supervisor. The worker then
//! supervises the container itself for a while: a container that ends by then is
//! recorded and cleaned up by the worker, which exits without a word, and the
//! supervisor, which waited as the full binary, exits too ([`Worker::Done`]): a short
//! container never pays for the shim's exec. Otherwise the worker *calls* for the shim
//! (a byte on the supervisor's `call` pipe) and the supervisor execs it, keeping its
//! pid:
//!
//! ```text
//! codex-shim __supervise --root ROOT ID --shim --worker PID --ready FD --info FD
//!     --stdout FD --stderr FD --log PATH --log-max-size N --log-max-files N
//!     --exe PATH [--view FD] [--console FD]
//!     [--health-interval-ms N --health-limit-ms N]
//!     [--monitor-interval-ms N --usage-history PATH [--warn-memory BYTES]
//!      [--warn-cpu PERCENT] [--stop-on-memory BYTES]]
//! ```
//!
//! The shim writes a byte on `ready` once it runs ([`await_worker`]); only then does
//! the worker write a [`Handover`] (or a restart notice) on `info` and exit, and its
//! exit makes the init, its child, a child of the shim. The worker dies with the
//! supervisor (parent-death signal), so a killed supervisor leaves the container
//! unsupervised, as it always did.
//!
//! When the init has exited, the shim runs the full binary as a child to record how
//! it ended and clean up, and exits after it:
//!
//! ```text
//! codex-ctr __supervise --root ROOT ID --finish exited CODE SIGNAL TIMED_OUT MEMORY_STOPPED
//! codex-ctr __supervise --root ROOT ID --finish failed MESSAGE
//! ```
//!
//! and, while it runs, `codex-ctr __supervise --root ROOT ID --threshold WHICH VALUE
//! LIMIT` for each threshold crossed (see [`crate::monitor`]).
//!
//! The shim's command line keeps `__supervise` and the container id as whole
//! arguments, as the engine's liveness check wants.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

use crate::log::Rotation;
use crate::monitor::{Thresholds, UsageFiles};
use crate::pump::{Outcome, Timeout};
use crate::sys;

/// The hidden mode word of every supervisor command line.
pub const MODE: &str = "__supervise";
/// The hidden mode of the full binary that runs one health probe.
pub const HEALTH_MODE: &str = "__health";
/// `__supervise --root ROOT ID --restart`: start the container again (restart policy).
pub const RESTART_FLAG: &str = "--restart";
/// `__supervise --root ROOT ID --threshold WHICH VALUE LIMIT`: write the event of a
/// threshold's crossing (see [`crate::monitor`]).
pub const THRESHOLD_FLAG: &str = "--threshold";
/// The shim's file name, next to `codex-ctr`.
pub const SHIM_NAME: &str = "codex-shim";

/// What the shim is handed.
#[derive(Debug, Clone, PartialEq)]
pub struct ShimArgs {
    pub root: OsString,
    pub id: OsString,
    /// The worker: creates and starts the container, then exits.
    pub worker: i32,
    /// Written to (then closed) once this process is the shim.
    pub ready: RawFd,
    /// The worker writes a [`Handover`] here (or nothing).
    pub info: RawFd,
    /// Read ends of the container's stdout and stderr pipes.
    pub stdout: RawFd,
    pub stderr: RawFd,
    pub log: PathBuf,
    pub rotation: Rotation,
    /// The full supervisor binary (its host path).
    pub exe: PathBuf,
    /// A read-only view of `exe`'s directory: `exe` is executed through it.
    pub view: Option<RawFd>,
    /// Health checks: (interval, limit), see [`crate::pump::HealthTimer`].
    pub health: Option<(Duration, Duration)>,
    /// A container with a terminal: the socket on which the worker sends the pty
    /// master (before its handover); the master then stands for `stdout`.
    pub console: Option<RawFd>,
    /// Usage sampling and thresholds (see [`crate::monitor`]).
    pub monitor: Option<MonitorArgs>,
}

/// How the supervisor samples a container's usage: every `interval`, into the
/// history at `history`, judged against `thresholds`.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorArgs {
    pub interval: Duration,
    pub history: PathBuf,
    pub thresholds: Thresholds,
}

/// What the full binary is told when it records the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// The init has exited; its output is in the log.
    Exited(Outcome),
    /// Supervision failed (the log could not be written, ...): the message.
    Failed(String),
}

/// What the worker hands over with a container that still runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The container's init.
    pub pid: i32,
    /// The `cgroup.procs` file that lists the container's processes (for the
    /// timeout's signals).
    pub procs: Option<PathBuf>,
    /// Where its memory and CPU usage are read.
    pub usage: UsageFiles,
    /// `--timeout`, not fired yet.
    pub timeout: Option<Timeout>,
    /// The log's unterminated lines (stdout, stderr).
    pub pending: [Vec<u8>; 2],
}

/// How the worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Worker {
    /// It did not get the container running, or could not supervise it: it has
    /// killed what it started, recorded (and if it could, reported) why. Its exit
    /// code was [`WORKER_FAILED_CODE`].
    Failed,
    /// It ended any other way (killed by a signal, a panic): what it started may run
    /// on with nobody supervising it. How it ended.
    Died(String),
    /// The container ended while the worker supervised it; all is recorded.
    Done,
    /// The container runs on; supervising it is this process's job now.
    HandedOver(Handover),
    /// The container ended, all is recorded, and its restart policy says: start it
    /// again after this delay (the record says `restarting`, naming this process).
    Restart(Duration),
}

/// What the full binary says (on the worker's info pipe, or on the stdout of
/// `--finish`) when the restart policy runs the container again: `restart MS\n`.
pub fn encode_restart(delay: Duration) -> Vec<u8> {
    format!("restart {}\n", delay.as_millis()).into_bytes()
}

/// The delay of a notice made by [`encode_restart`].
pub fn decode_restart(data: &[u8]) -> Option<Duration> {
    let ms = std::str::from_utf8(data)
        .ok()?
        .strip_prefix("restart ")?
        .strip_suffix('\n')?;
    ms.parse::<u64>().ok().map(Duration::from_millis)
}

/// Sleeps until `delay` has passed (CLOCK_MONOTONIC; signals do not cut it short).
pub fn sleep(delay: Duration) {
    let end = sys::monotonic() + delay;
    loop {
        let left = end.saturating_sub(sys::monotonic());
        if left.is_zero() {
            return;
        }
        let _ = sys::poll(&mut [], Some(left));
    }
}

fn s(v: impl ToString) -> OsString {
    v.to_string().into()
}

impl ShimArgs {
    /// The shim's arguments, after `argv[0]`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            MODE.into(),
            "--root".into(),
            self.root.clone(),
            self.id.clone(),
            "--shim".into(),
            "--worker".into(),
            s(self.worker),
            "--ready".into(),
            s(self.ready),
            "--info".into(),
            s(self.info),
            "--stdout".into(),
            s(self.stdout),
            "--stderr".into(),
            s(self.stderr),
            "--log".into(),
            self.log.clone().into(),
            "--log-max-size".into(),
            s(self.rotation.max_size),
            "--log-max-files".into(),
            s(self.rotation.max_files),
            "--exe".into(),
            self.exe.clone().into(),
        ];
        if let Some(v) = self.view {
            a.extend(["--view".into(), s(v)]);
        }
        if let Some(c) = self.console {
            a.extend(["--console".into(), s(c)]);
        }
        if let Some((interval, limit)) = self.health {
            a.extend([
                "--health-interval-ms".into(),
                s(interval.as_millis()),
                "--health-limit-ms".into(),
                s(limit.as_millis()),
            ]);
        }
        if let Some(m) = &self.monitor {
            a.extend([
                "--monitor-interval-ms".into(),
                s(m.interval.as_millis()),
                "--usage-history".into(),
                m.history.clone().into(),
            ]);
            let t = m.thresholds;
            if let Some(v) = t.warn_memory {
                a.extend(["--warn-memory".into(), s(v)]);
            }
            if let Some(v) = t.warn_cpu {
                a.extend(["--warn-cpu".into(), s(v)]);
            }
            if let Some(v) = t.stop_memory {
                a.extend(["--stop-on-memory".into(), s(v)]);
            }
        }
        a
    }

    /// The full binary's command line (`argv[0]` included) that reports a
    /// threshold's crossing as an event.
    pub fn threshold_argv(&self, c: &crate::monitor::Crossing) -> Vec<OsString> {
        vec![
            self.exe.clone().into(),
            MODE.into(),
            "--root".into(),
            self.root.clone(),
            self.id.clone(),
            THRESHOLD_FLAG.into(),
            c.which.name().into(),
            c.value.clone().into(),
            c.limit.clone().into(),
        ]
    }

    /// The full binary's command line (`argv[0]` included) that runs one health
    /// probe and records its result.
    pub fn health_argv(&self) -> Vec<OsString> {
        vec![
            self.exe.clone().into(),
            HEALTH_MODE.into(),
            "--root".into(),
            self.root.clone(),
            self.id.clone(),
        ]
    }

    /// Parses what [`ShimArgs::to_args`] made.
    pub fn parse(args: &[OsString]) -> Result<ShimArgs, String> {
        let (root, id, mut rest) = match args {
            [m, r, root, id, shim, rest @ ..] if m == MODE && r == "--root" && shim == "--shim" => {
                (root.clone(), id.clone(), rest)
            }
            _ => return Err(format!("usage: {MODE} --root ROOT ID --shim OPTIONS")),
        };
        let (mut worker, mut ready, mut info) = (None, None, None);
        let (mut stdout, mut stderr, mut view) = (None, None, None);
        let mut console = None;
        let (mut log, mut exe) = (None, None);
        let (mut interval, mut limit) = (None, None);
        let (mut monitor_interval, mut history) = (None, None);
        let mut thresholds = Thresholds::default();
        let mut rotation = Rotation::default();
        while let [key, value, more @ ..] = rest {
            rest = more;
            let key = key.to_str().unwrap_or_default();
            match key {
                "--worker" => worker = Some(number(key, value)?),
                "--ready" => ready = Some(number(key, value)?),
                "--info" => info = Some(number(key, value)?),
                "--stdout" => stdout = Some(number(key, value)?),
                "--stderr" => stderr = Some(number(key, value)?),
                "--view" => view = Some(number(key, value)?),
                "--console" => console = Some(number(key, value)?),
                "--log" => log = Some(PathBuf::from(value)),
                "--log-max-size" => rotation.max_size = number(key, value)?,
                "--log-max-files" => rotation.max_files = number(key, value)?,
                "--exe" => exe = Some(PathBuf::from(value)),
                "--health-interval-ms" => {
                    interval = Some(Duration::from_millis(number(key, value)?))
                }
                "--health-limit-ms" => limit = Some(Duration::from_millis(number(key, value)?)),
                "--monitor-interval-ms" => {
                    monitor_interval = Some(Duration::from_millis(number(key, value)?))
                }
                "--usage-history" => history = Some(PathBuf::from(value)),
                "--warn-memory" => thresholds.warn_memory = Some(number(key, value)?),
                "--warn-cpu" => thresholds.warn_cpu = Some(number(key, value)?),
                "--stop-on-memory" => thresholds.stop_memory = Some(number(key, value)?),
                _ => return Err(format!("unknown option {key:?}")),
            }
        }
        if let Some(k) = rest.first() {
            return Err(format!("{k:?} has no value"));
        }
        let need = |what: &str| format!("--{what} is missing");
        Ok(ShimArgs {
            root,
            id,
            worker: worker.ok_or_else(|| need("worker"))?,
            ready: ready.ok_or_else(|| need("ready"))?,
            info: info.ok_or_else(|| need("info"))?,
            stdout: stdout.ok_or_else(|| need("stdout"))?,
            stderr: stderr.ok_or_else(|| need("stderr"))?,
            log: log.ok_or_else(|| need("log"))?,
            rotation,
            exe: exe.ok_or_else(|| need("exe"))?,
            view,
            health: interval.zip(limit),
            console,
            monitor: monitor_interval
                .zip(history)
                .map(|(interval, history)| MonitorArgs {
                    interval,
                    history,
                    thresholds,
                }),
        })
    }

    /// The full binary's command line (`argv[0]` included) that starts the container
    /// again for its restart policy, in this very process (an exec keeps the pid the
    /// record names).
    pub fn restart_argv(&self) -> Vec<OsString> {
        vec![
            self.exe.clone().into(),
            MODE.into(),
            "--root".into(),
            self.root.clone(),
            self.id.clone(),
            RESTART_FLAG.into(),
        ]
    }

    /// The full binary's command line (`argv[0]` included) that records `finish`.
    pub fn finish_argv(&self, finish: &Finish) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            self.exe.clone().into(),
            MODE.into(),
            "--root".into(),
            self.root.clone(),
            self.id.clone(),
        ];
        a.extend(finish.to_args());
        a
    }
}

impl Finish {
    /// `--finish ...`, the arguments after `__supervise --root ROOT ID`.
    pub fn to_args(&self) -> Vec<OsString> {
        match self {
            Finish::Exited(o) => vec![
                "--finish".into(),
                "exited".into(),
                s(o.code),
                s(o.signal.unwrap_or(0)),
                s(u8::from(o.timed_out)),
                s(u8::from(o.memory_stopped)),
            ],
            Finish::Failed(msg) => vec!["--finish".into(), "failed".into(), msg.into()],
        }
    }

    /// Parses what follows `--finish`.
    pub fn parse<S: AsRef<OsStr>>(args: &[S]) -> Result<Finish, String> {
        let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
        match args.as_slice() {
            // Four fields: a shim of the version before memory stops.
            [kind, code, signal, timed_out, more @ ..] if *kind == "exited" && more.len() <= 1 => {
                let signal: i32 = number("signal", signal)?;
                let memory_stopped = match more {
                    [m] => number::<u8>("memory stopped", m)? != 0,
                    _ => false,
                };
                Ok(Finish::Exited(Outcome {
                    code: number("code", code)?,
                    signal: (signal != 0).then_some(signal),
                    timed_out: number::<u8>("timed out", timed_out)? != 0,
                    memory_stopped,
                }))
            }
            [kind, msg] if *kind == "failed" => {
                Ok(Finish::Failed(msg.to_string_lossy().into_owned()))
            }
            _ => {
                Err("usage: --finish exited CODE SIGNAL TIMED_OUT [MEMORY_STOPPED] | --finish failed MESSAGE".into())
            }
        }
    }
}

impl Handover {
    /// As the worker writes it on the info pipe: `PID`, `PROCS`, `MEMORY_FILE`,
    /// `CPU_FILE` (empty: none), `DEADLINE_NS`, `STOP_SIGNAL`, `GRACE_NS` (the last
    /// three empty without a timeout), and the lengths of the pending stdout and
    /// stderr, each ended by a NUL; then the pending bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut field = |v: &[u8]| {
            out.extend_from_slice(v);
            out.push(0);
        };
        field(self.pid.to_string().as_bytes());
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or(Vec::new(), |p| p.as_os_str().as_bytes().to_vec())
        };
        field(&path(&self.procs));
        field(&path(&self.usage.memory));
        field(&path(&self.usage.cpu));
        let t = self.timeout;
        field(
            t.map(|t| t.deadline.as_nanos().to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        field(
            t.map(|t| t.stop_signal.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        field(
            t.map(|t| t.grace.as_nanos().to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        field(self.pending[0].len().to_string().as_bytes());
        field(self.pending[1].len().to_string().as_bytes());
        out.extend_from_slice(&self.pending[0]);
        out.extend_from_slice(&self.pending[1]);
        out
    }

    pub fn decode(data: &[u8]) -> Option<Handover> {
        let mut rest = data;
        let mut fields: Vec<&[u8]> = Vec::with_capacity(9);
        for _ in 0..9 {
            let end = rest.iter().position(|b| *b == 0)?;
            fields.push(&rest[..end]);
            rest = &rest[end + 1..];
        }
        let num = |f: &[u8]| std::str::from_utf8(f).ok()?.parse::<u64>().ok();
        let pid = i32::try_from(num(fields[0])?).ok()?;
        let path =
            |f: &[u8]| (!f.is_empty()).then(|| PathBuf::from(OsString::from_vec(f.to_vec())));
        let procs = path(fields[1]);
        let usage = UsageFiles {
            memory: path(fields[2]),
            cpu: path(fields[3]),
        };
        let fields = &fields[2..];
        let timeout = match (fields[2], fields[3], fields[4]) {
            (b"", b"", b"") => None,
            (d, s, g) => Some(Timeout {
                deadline: Duration::from_nanos(num(d)?),
                stop_signal: i32::try_from(num(s)?).ok()?,
                grace: Duration::from_nanos(num(g)?),
            }),
        };
        let out_len = usize::try_from(num(fields[5])?).ok()?;
        let err_len = usize::try_from(num(fields[6])?).ok()?;
        if rest.len() != out_len.checked_add(err_len)? {
            return None;
        }
        let (out, err) = rest.split_at(out_len);
        Some(Handover {
            pid,
            procs,
            usage,
            timeout,
            pending: [out.to_vec(), err.to_vec()],
        })
    }
}

/// The worker's exit code when it failed cleanly (see [`Worker::Failed`]).
pub const WORKER_FAILED_CODE: i32 = 1;

/// The start of the reason recorded when the worker died before handing over.
pub const WORKER_DIED: &str = "the supervisor's worker died before handing the container over";

/// The supervisor's side of the worker: says it is ready (this process is the
/// shim, or stays the full binary for good), reads what the worker hands over and
/// reaps it. Afterwards the init, if it still runs, is this process's child, and
/// this process no longer a child subreaper.
pub fn await_worker(ready: OwnedFd, info: OwnedFd, worker: i32) -> std::io::Result<Worker> {
    // SAFETY: writes one byte from a valid buffer to an open fd. The worker may be
    // gone already (EPIPE: SIGPIPE is ignored in Rust programs).
    let _ = unsafe { libc::write(ready.as_raw_fd(), b"1".as_ptr().cast(), 1) };
    drop(ready);
    collect_worker(info, worker)
}

/// What the worker said on `info` (read to its end) and how it ended (it is reaped).
/// The supervisor's side when the worker did not call for the shim: it ended without
/// a handover. Afterwards this process is no longer a child subreaper.
pub fn collect_worker(info: OwnedFd, worker: i32) -> std::io::Result<Worker> {
    let mut news = Vec::new();
    std::fs::File::from(info).read_to_end(&mut news)?;
    let status = sys::wait(worker)?;
    // The worker's exit handed the init to this process; orphans from now on go
    // where they would go without a shim.
    let _ = sys::set_child_subreaper(false);
    match status {
        (0, None) => {}
        (WORKER_FAILED_CODE, None) => return Ok(Worker::Failed),
        (_, Some(sig)) => {
            return Ok(Worker::Died(format!(
                "{WORKER_DIED}: killed by signal {sig}"
            )))
        }
        (code, None) => return Ok(Worker::Died(format!("{WORKER_DIED}: exit code {code}"))),
    }
    if news.is_empty() {
        return Ok(Worker::Done);
    }
    if let Some(delay) = decode_restart(&news) {
        return Ok(Worker::Restart(delay));
    }
    Handover::decode(&news)
        .map(Worker::HandedOver)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the supervisor's worker handed over something unreadable",
            )
        })
}

fn number<T: std::str::FromStr>(what: &str, v: &OsStr) -> Result<T, String> {
    v.to_str()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("{what}: {v:?} is not a number"))
}

#[cfg(test)]
mod tests;
