//! `codex-ctr` test fixture: an engine root of its own (CODEX_CTR_ROOT) with the
//! busybox image imported, and a network namespace of its own that every command runs
//! in (see [`Ctr::cmd`]); every container in it is removed and every mount under it
//! undone when the fixture drops, even when the test failed. Every command runs under a
//! timeout in its own process group (see [`crate::cmd`]); a cleanup that fails is reported
//! and fails a test that had passed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::cmd::{cmd_timeout, run_timeout, try_run_to};
use crate::ctx::report_cleanup;
use crate::netns::TestNetns;
use crate::{assert_fresh, fixture_dir, next, unmount_under, workspace_dir, Out};

/// The engine binary under test: `$CODEX_CTR`, else `<workspace>/target/debug/codex-ctr`,
/// which must be newer than the sources it is built from ([`crate::assert_fresh`]).
pub fn ctr_binary() -> PathBuf {
    match std::env::var_os("CODEX_CTR") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let p = workspace_dir().join("target/debug/codex-ctr");
            assert_fresh(&p);
            p
        }
    }
}

pub struct Ctr {
    dir: Option<tempfile::TempDir>,
    pub root: PathBuf,
    /// Dropped after the containers are removed (fields drop after `Drop::drop`).
    netns: TestNetns,
}

/// Commands that talk to image registries and make no network objects: they run in the
/// host's namespace, where a test's registry listens (on 127.0.0.1).
fn needs_host_network(args: &[&str]) -> bool {
    matches!(
        args,
        ["pull" | "push" | "login" | "logout", ..] | ["image", "pull" | "push", ..]
    )
}

impl Default for Ctr {
    fn default() -> Self {
        Ctr::new()
    }
}

impl Ctr {
    pub fn new() -> Ctr {
        let dir = tempfile::Builder::new()
            .prefix("codex-ctr-test-")
            .tempdir()
            .expect("create the engine's temp dir");
        let root = dir.path().join("root");
        let c = Ctr {
            dir: Some(dir),
            root,
            netns: TestNetns::new(),
        };
        let tar = fixture_dir().join("rootfs.tar");
        c.run(&["image", "import", &tar.to_string_lossy(), "busybox"])
            .assert_ok();
        c
    }

    /// A `Command` for `codex-ctr args...` on this root. Run it with [`crate::run_command`]
    /// (or spawn it in [`crate::own_group`] and wait with a bound), never with a bare
    /// `.output()`.
    ///
    /// It runs inside this fixture's own network namespace (`nsenter --net`, which execs
    /// the binary: same pid, same exit status): the engine's default for `standard`
    /// containers is a bridge network, and its bridges, veths and nft rules must never
    /// be made in the host's namespace, whatever a test forgets to pass. Registry
    /// commands (`pull`, `push`, `login`, `logout`) run in the host's namespace.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = if needs_host_network(args) {
            Command::new(ctr_binary())
        } else {
            let bin = ctr_binary();
            self.netns.cmd(&[&bin.to_string_lossy()])
        };
        c.env("CODEX_CTR_ROOT", &self.root).args(args);
        c
    }

    /// The network namespace the commands run in (what `--network host` shares).
    pub fn netns(&self) -> &TestNetns {
        &self.netns
    }

    /// Runs `codex-ctr args...` to completion; fails the test if it takes longer than
    /// [`cmd_timeout`] (its process group is killed).
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_timeout(args, cmd_timeout())
    }

    /// [`Ctr::run`] with a timeout of the caller's choosing.
    #[track_caller]
    pub fn run_timeout(&self, args: &[&str], timeout: Duration) -> Out {
        let mut o = run_timeout(&mut self.cmd(args), timeout);
        o.cmdline = format!("codex-ctr {}", args.join(" "));
        o
    }

    /// Like [`Ctr::run`] but returns the hang as an error (for cleanup paths).
    fn try_run(&self, args: &[&str]) -> Result<Out, String> {
        let scratch = self.root.with_file_name(format!("cmd-{}", next()));
        let (o, e) = (scratch.with_extension("out"), scratch.with_extension("err"));
        let r = try_run_to(&mut self.cmd(args), &o, &e, cmd_timeout());
        let _ = std::fs::remove_file(&o);
        let _ = std::fs::remove_file(&e);
        r
    }

    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let o = self.run(&["inspect", name]);
        o.assert_ok();
        o.json()
    }

    /// The supervisor of running container `name` once it is the shim: a container's
    /// supervisor execs codex-shim only when its worker hands the container over, 250 ms
    /// into its life. Panics if that does not happen within 10 s.
    pub fn handed_over_supervisor(&self, name: &str) -> i64 {
        let sup = self.inspect(name)["supervisor_pid"]
            .as_i64()
            .expect("a running container's supervisor");
        let cmdline = || {
            std::fs::read(format!("/proc/{sup}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default()
        };
        assert!(
            crate::wait_until(Duration::from_secs(10), || cmdline().contains(" --shim ")),
            "the supervisor {sup} of {name} never became the shim: {:?}",
            cmdline()
        );
        sup
    }

    /// Processes that carry this root in their environment (a supervisor forked by
    /// `run` has the command's, the shim keeps it) or on their command line (an
    /// executed supervisor), other than `except` and this process.
    pub fn processes(&self, except: &[i32]) -> Vec<(i32, String)> {
        let needle = self.root.as_os_str().as_encoded_bytes();
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return found;
        };
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if except.contains(&pid) || pid == std::process::id() as i32 {
                continue;
            }
            let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let has = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle);
            if has(&environ) || has(&cmdline) {
                let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                found.push((pid, comm.trim().to_string()));
            }
        }
        found
    }

    /// A running container's merged rootfs as the host reaches it: through its
    /// supervisor's root (the overlay is mounted in the supervisor's mount namespace
    /// only).
    pub fn live_rootfs(&self, name: &str) -> std::path::PathBuf {
        let v = self.inspect(name);
        let sup = v["supervisor_pid"]
            .as_i64()
            .expect("a running container's supervisor");
        let id = v["id"].as_str().expect("id");
        std::path::PathBuf::from(format!(
            "/proc/{sup}/root{}/containers/{id}/rootfs",
            self.root.display()
        ))
    }

    /// Container directories under the root, counting hidden ones (`.removing-*` and the
    /// like are leftovers too). The directory must exist (the fixture's image import made
    /// the root): a count of a directory that is not there would be 0 for any engine.
    ///
    /// An attached `run --rm` returns once its container is gone for everyone (renamed
    /// to `.removing-ID`), while its supervisor deletes the files: such a directory is
    /// given 10 s to go before it counts as left.
    #[track_caller]
    pub fn containers(&self) -> usize {
        let dir = self.root.join("containers");
        let deleting = || {
            std::fs::read_dir(&dir).is_ok_and(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .any(|e| e.file_name().to_string_lossy().starts_with(".removing-"))
            })
        };
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while deleting() && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        count_entries(&dir)
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let mut problems = Vec::new();
        match self.try_run(&["ps", "-a", "-q"]) {
            Err(e) => problems.push(e),
            Ok(o) if !o.ok() || o.crash().is_some() => {
                problems.push(format!("`{}` failed: {}", o.cmdline, o.stderr.trim()))
            }
            Ok(o) => {
                for id in o.stdout.split_whitespace() {
                    match self.try_run(&["rm", "-f", id]) {
                        Err(e) => problems.push(e),
                        Ok(r) if !r.ok() => {
                            problems.push(format!("`{}` failed: {}", r.cmdline, r.stderr.trim()))
                        }
                        Ok(_) => {}
                    }
                }
            }
        }
        // A removal's deletion of a container's files may still be under way (its
        // name is gone first): the directory is removed once it is done.
        if self.root.join("containers").is_dir() {
            let _ = self.containers();
        }
        unmount_under(&self.root);
        if let Some(d) = self.dir.take() {
            if std::env::var_os("CODEX_TESTS_KEEP").is_some() {
                eprintln!("CODEX_TESTS_KEEP: leaving {}", d.keep().display());
            } else {
                let p = d.path().to_path_buf();
                if let Err(e) = d.close() {
                    problems.push(format!("removing {}: {e}", p.display()));
                }
            }
        }
        report_cleanup(
            &format!("codex-ctr root {}", self.root.display()),
            &problems,
        );
    }
}

/// Every entry of `dir`, hidden ones included; panics when `dir` cannot be read.
#[track_caller]
fn count_entries(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the engine's layout changed? this count would prove nothing)",
                dir.display()
            )
        })
        .filter_map(|e| e.ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::count_entries;

    #[test]
    fn the_container_count_sees_hidden_leftovers_and_a_missing_dir_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(count_entries(d.path()), 0);
        std::fs::create_dir(d.path().join("abc")).unwrap();
        std::fs::create_dir(d.path().join(".removing-abc")).unwrap();
        assert_eq!(count_entries(d.path()), 2);
        let missing = std::panic::catch_unwind(|| count_entries(&d.path().join("nope")));
        assert!(
            missing.is_err(),
            "a missing directory must not count as empty"
        );
    }
}
