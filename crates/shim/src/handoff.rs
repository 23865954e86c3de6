//! The two command lines between the halves of a supervisor.
//!
//! `codex-ctr __supervise` (the full binary) execs the shim once the container runs:
//!
//! ```text
//! codex-shim __supervise --root ROOT ID --shim --pid PID --stdout FD --stderr FD
//!     --log PATH --log-max-size N --log-max-files N --exe PATH
//!     [--view FD] [--ready FD --recorder PID]
//!     [--timeout-ns NS --stop-signal N --grace-ns NS] [--procs PATH]
//! ```
//!
//! and the shim runs the full binary as a child once the init has exited:
//!
//! ```text
//! codex-ctr __supervise --root ROOT ID --finish exited CODE SIGNAL TIMED_OUT
//! codex-ctr __supervise --root ROOT ID --finish failed MESSAGE
//! ```
//!
//! The shim's command line keeps `__supervise` and the container id as whole
//! arguments: that is how the engine tells a live supervisor from a recycled pid
//! (`/proc/PID/cmdline`).

use std::ffi::{OsStr, OsString};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use crate::log::Rotation;
use crate::pump::{Outcome, TimeLimit};

/// The hidden mode word of every supervisor command line.
pub const MODE: &str = "__supervise";
/// The shim's file name, next to `codex-ctr`.
pub const SHIM_NAME: &str = "codex-shim";

/// What the shim is handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimArgs {
    pub root: OsString,
    pub id: OsString,
    /// The container's init, a child of this process.
    pub pid: i32,
    /// Read ends of the container's stdout and stderr pipes.
    pub stdout: RawFd,
    pub stderr: RawFd,
    pub log: PathBuf,
    pub rotation: Rotation,
    /// The full supervisor binary, to exec back into (its host path).
    pub exe: PathBuf,
    /// A read-only view of `exe`'s directory: `exe` is executed through it.
    pub view: Option<RawFd>,
    /// Written to (then closed) once this process is the shim.
    pub ready: Option<RawFd>,
    /// The process that marks the container running once `ready` says so, and
    /// reports to the starter; the shim waits for it (and ends if it failed).
    pub recorder: Option<i32>,
    /// `--timeout`, counted from when the recorder is done.
    pub time_limit: Option<TimeLimit>,
    /// The `cgroup.procs` file that lists the container's processes (for the
    /// timeout's signals).
    pub procs: Option<PathBuf>,
}

/// What the full binary is told when it takes over again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// The init has exited; its output is in the log.
    Exited(Outcome),
    /// Supervision failed (the log could not be written, ...): the message.
    Failed(String),
}

fn s(v: impl ToString) -> OsString {
    v.to_string().into()
}

impl ShimArgs {
    /// The shim's arguments, after argv[0].
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            MODE.into(),
            "--root".into(),
            self.root.clone(),
            self.id.clone(),
            "--shim".into(),
            "--pid".into(),
            s(self.pid),
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
        if let Some(r) = self.ready {
            a.extend(["--ready".into(), s(r)]);
        }
        if let Some(r) = self.recorder {
            a.extend(["--recorder".into(), s(r)]);
        }
        if let Some(t) = self.time_limit {
            a.extend([
                "--timeout-ns".into(),
                s(t.after.as_nanos()),
                "--stop-signal".into(),
                s(t.stop_signal),
                "--grace-ns".into(),
                s(t.grace.as_nanos()),
            ]);
        }
        if let Some(p) = &self.procs {
            a.extend(["--procs".into(), p.clone().into()]);
        }
        a
    }

    /// Parses what [`ShimArgs::to_args`] made.
    pub fn parse(args: &[OsString]) -> Result<ShimArgs, String> {
        let (root, id, mut rest) = match args {
            [m, r, root, id, shim, rest @ ..] if m == MODE && r == "--root" && shim == "--shim" => {
                (root.clone(), id.clone(), rest)
            }
            _ => return Err(format!("usage: {MODE} --root ROOT ID --shim OPTIONS")),
        };
        let mut pid = None;
        let (mut stdout, mut stderr, mut view) = (None, None, None);
        let (mut ready, mut recorder) = (None, None);
        let (mut log, mut exe, mut procs) = (None, None, None);
        let mut rotation = Rotation::default();
        let (mut after, mut stop_signal, mut grace) = (None, None, None);
        while let [key, value, more @ ..] = rest {
            rest = more;
            let key = key.to_str().unwrap_or_default();
            match key {
                "--pid" => pid = Some(number(key, value)?),
                "--stdout" => stdout = Some(number(key, value)?),
                "--stderr" => stderr = Some(number(key, value)?),
                "--view" => view = Some(number(key, value)?),
                "--ready" => ready = Some(number(key, value)?),
                "--recorder" => recorder = Some(number(key, value)?),
                "--log" => log = Some(PathBuf::from(value)),
                "--log-max-size" => rotation.max_size = number(key, value)?,
                "--log-max-files" => rotation.max_files = number(key, value)?,
                "--exe" => exe = Some(PathBuf::from(value)),
                "--procs" => procs = Some(PathBuf::from(value)),
                "--timeout-ns" => after = Some(Duration::from_nanos(number(key, value)?)),
                "--stop-signal" => stop_signal = Some(number(key, value)?),
                "--grace-ns" => grace = Some(Duration::from_nanos(number(key, value)?)),
                _ => return Err(format!("unknown option {key:?}")),
            }
        }
        if !rest.is_empty() {
            return Err(format!("{:?} has no value", rest[0]));
        }
        let need = |what: &str| format!("--{what} is missing");
        let time_limit = match (after, stop_signal, grace) {
            (Some(after), Some(stop_signal), Some(grace)) => Some(TimeLimit {
                after,
                stop_signal,
                grace,
            }),
            (None, None, None) => None,
            _ => return Err("--timeout-ns, --stop-signal and --grace-ns go together".into()),
        };
        Ok(ShimArgs {
            root,
            id,
            pid: pid.ok_or_else(|| need("pid"))?,
            stdout: stdout.ok_or_else(|| need("stdout"))?,
            stderr: stderr.ok_or_else(|| need("stderr"))?,
            log: log.ok_or_else(|| need("log"))?,
            rotation,
            exe: exe.ok_or_else(|| need("exe"))?,
            view,
            ready,
            recorder,
            time_limit,
            procs,
        })
    }

    /// The full binary's command line (argv[0] included) that records `finish`.
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
            ],
            Finish::Failed(msg) => vec!["--finish".into(), "failed".into(), msg.into()],
        }
    }

    /// Parses what follows `--finish`.
    pub fn parse<S: AsRef<OsStr>>(args: &[S]) -> Result<Finish, String> {
        let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
        match args.as_slice() {
            [kind, code, signal, timed_out] if *kind == "exited" => {
                let signal: i32 = number("signal", signal)?;
                Ok(Finish::Exited(Outcome {
                    code: number("code", code)?,
                    signal: (signal != 0).then_some(signal),
                    timed_out: number::<u8>("timed out", timed_out)? != 0,
                }))
            }
            [kind, msg] if *kind == "failed" => {
                Ok(Finish::Failed(msg.to_string_lossy().into_owned()))
            }
            _ => {
                Err("usage: --finish exited CODE SIGNAL TIMED_OUT | --finish failed MESSAGE".into())
            }
        }
    }
}

fn number<T: std::str::FromStr>(what: &str, v: &OsStr) -> Result<T, String> {
    v.to_str()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("{what}: {v:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_arguments_round_trip() {
        let mut a = ShimArgs {
            root: "/var/lib/codex-ctr".into(),
            id: "abc".into(),
            pid: 42,
            stdout: 5,
            stderr: 7,
            log: "/r/containers/abc/container.log".into(),
            rotation: Rotation {
                max_size: 300,
                max_files: 1,
            },
            exe: "/usr/bin/codex-ctr".into(),
            view: None,
            ready: None,
            recorder: None,
            time_limit: None,
            procs: None,
        };
        assert_eq!(ShimArgs::parse(&a.to_args()), Ok(a.clone()));
        a.view = Some(9);
        a.ready = Some(11);
        a.recorder = Some(4321);
        a.procs = Some("/sys/fs/cgroup/pids/x/cgroup.procs".into());
        a.time_limit = Some(TimeLimit {
            after: Duration::new(12345, 678),
            stop_signal: 15,
            grace: Duration::from_secs(10),
        });
        let args = a.to_args();
        assert_eq!(ShimArgs::parse(&args), Ok(a.clone()));
        // The engine's liveness check: the mode and the id are whole arguments.
        assert!(args.iter().any(|x| x == MODE) && args.iter().any(|x| x == "abc"));
        assert!(ShimArgs::parse(&args[..args.len() - 1]).is_err());
        let f = a.finish_argv(&Finish::Failed("x".into()));
        assert_eq!(
            f[..5],
            [
                "/usr/bin/codex-ctr",
                MODE,
                "--root",
                "/var/lib/codex-ctr",
                "abc"
            ]
            .map(OsString::from)
        );
    }

    #[test]
    fn finish_arguments_round_trip() {
        for f in [
            Finish::Exited(Outcome {
                code: 137,
                signal: Some(9),
                timed_out: true,
            }),
            Finish::Exited(Outcome {
                code: 0,
                signal: None,
                timed_out: false,
            }),
            Finish::Failed("writing /x: No space left on device".into()),
        ] {
            let args = f.to_args();
            assert_eq!(args[0], "--finish");
            assert_eq!(Finish::parse(&args[1..]), Ok(f));
        }
        assert!(Finish::parse(&["exited", "x", "0", "0"]).is_err());
    }
}
