//! The runtime binary under test, bound to one test's state root, and a foreground `run`
//! kept in the background.

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::cmd::{cmd_timeout, kill_group, read_lossy, try_run_to, wait_child, wait_until, Out};
use crate::{next, WAIT};

/// `codex-oci --root ROOT ...` for one test.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub bin: PathBuf,
    pub root: PathBuf,
    pub(crate) scratch: PathBuf,
}

impl Runtime {
    /// A `Command` for `BIN --root ROOT args...`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root).args(args);
        c
    }

    pub(crate) fn scratch_pair(&self, tag: &str) -> (PathBuf, PathBuf) {
        let n = next();
        (
            self.scratch.join(format!("{n}-{tag}.out")),
            self.scratch.join(format!("{n}-{tag}.err")),
        )
    }

    /// Runs `BIN --root ROOT args...` to completion; fails the test if it takes longer than
    /// [`cmd_timeout`] (its process group is killed).
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_timeout(args, cmd_timeout())
    }

    /// [`Runtime::run`] with a timeout of the caller's choosing.
    #[track_caller]
    pub fn run_timeout(&self, args: &[&str], timeout: Duration) -> Out {
        let (o, e) = self.scratch_pair(args.first().copied().unwrap_or("cmd"));
        try_run_to(&mut self.command(args), &o, &e, timeout).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs a prepared command (e.g. with extra env) to completion, under [`cmd_timeout`].
    #[track_caller]
    pub fn run_cmd(&self, mut cmd: Command) -> Out {
        let (o, e) = self.scratch_pair("cmd");
        try_run_to(&mut cmd, &o, &e, cmd_timeout()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `state ID` parsed, or the failed command.
    pub fn state(&self, id: &str) -> Result<Value, Out> {
        let o = self.run(&["state", id]);
        if o.ok() {
            Ok(o.json())
        } else {
            Err(o)
        }
    }

    /// `state ID` that must succeed.
    #[track_caller]
    pub fn state_ok(&self, id: &str) -> Value {
        match self.state(id) {
            Ok(v) => v,
            Err(o) => panic!("state {id} failed: {}", o.describe()),
        }
    }

    /// The status string of `state ID` (None if state fails).
    pub fn status(&self, id: &str) -> Option<String> {
        self.state(id)
            .ok()
            .and_then(|v| v["status"].as_str().map(String::from))
    }

    /// Polls `state ID` until its status is `want`.
    #[track_caller]
    pub fn wait_status(&self, id: &str, want: &str) {
        let mut last = None;
        let ok = wait_until(WAIT, || {
            last = self.status(id);
            last.as_deref() == Some(want)
        });
        assert!(ok, "container {id} never reached {want:?} (last: {last:?})");
    }

    /// The init pid from `state ID`.
    #[track_caller]
    pub fn pid(&self, id: &str) -> i64 {
        let s = self.state_ok(id);
        s["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("state has no pid: {s}"))
    }

    /// Does the state root hold anything (at any depth up to 4) whose name contains `id`?
    /// (Layout-agnostic: runc uses `ROOT/ID/`, another runtime may nest it.)
    pub fn root_has_entry(&self, id: &str) -> bool {
        fn walk(d: &Path, id: &str, depth: u32) -> bool {
            let Ok(rd) = fs::read_dir(d) else {
                return false;
            };
            for e in rd.filter_map(|e| e.ok()) {
                if e.file_name().to_string_lossy().contains(id) {
                    return true;
                }
                if depth > 0
                    && e.file_type().is_ok_and(|t| t.is_dir())
                    && walk(&e.path(), id, depth - 1)
                {
                    return true;
                }
            }
            false
        }
        !id.is_empty() && walk(&self.root, id, 4)
    }

    /// Names in the state root.
    pub fn root_entries(&self) -> Vec<String> {
        fs::read_dir(&self.root)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A `run` of the runtime in the background (foreground `run` command, not detached), in a
/// process group of its own: dropped unwaited, or waited past its timeout, the group is killed.
pub struct Background {
    pub child: Child,
    pub out_path: PathBuf,
    pub err_path: PathBuf,
    pub(crate) cmdline: String,
    pub(crate) waited: bool,
}

impl Background {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn stdout(&self) -> String {
        read_lossy(&self.out_path)
    }
    pub fn stderr(&self) -> String {
        read_lossy(&self.err_path)
    }
    /// Polls until stdout contains `needle`.
    #[track_caller]
    pub fn wait_for_stdout(&self, needle: &str) {
        let ok = wait_until(WAIT, || self.stdout().contains(needle));
        assert!(
            ok,
            "`{}` never printed {needle:?}\nstdout: {}\nstderr: {}",
            self.cmdline,
            self.stdout(),
            self.stderr()
        );
    }
    /// Waits for the runtime process to exit.
    #[track_caller]
    pub fn wait(&mut self, timeout: Duration) -> Out {
        let st = wait_child(&mut self.child, timeout);
        self.waited = true;
        match st {
            Some(status) => Out {
                cmdline: self.cmdline.clone(),
                status,
                stdout: self.stdout(),
                stderr: self.stderr(),
            },
            None => {
                kill_group(&mut self.child);
                panic!(
                    "`{}` did not exit within {timeout:?} (its process group was killed)\nstdout: {}\nstderr: {}",
                    self.cmdline,
                    self.stdout(),
                    self.stderr()
                );
            }
        }
    }
    /// Sends a signal to the runtime process itself.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill runtime process");
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if !self.waited {
            if let Ok(None) = self.child.try_wait() {
                kill_group(&mut self.child);
            }
            let _ = self.child.wait();
        }
    }
}
