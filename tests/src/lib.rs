//! Harness for the root-run integration tests of `codex-oci`.
//!
//! Every test makes a [`TestCtx`]: its own temp dir, its own state root (`--root`), its own
//! bundles (a copy of the busybox fixture) and container ids that no other test uses. Dropping
//! the context runs `delete --force` for every id it handed out, runs the registered cleanups,
//! unmounts whatever is still mounted under the temp dir and removes it, even when the test
//! panicked; a cleanup that fails (a hang, a crash, state left behind) fails a test that had
//! passed. Every command runs with a timeout in a process group of its own ([`cmd`]); a test
//! that cannot run here says so with [`skip()`] (recorded, and a failure under
//! `CODEX_REQUIRE_ALL=1`). How to write a test: `docs/testing.md`.
//!
//! The binary under test is `$CODEX_OCI` if set, else `<workspace>/target/debug/codex-oci`.
//! Tests about runc-compatible behaviour pass with `CODEX_OCI=/usr/sbin/runc`; tests whose name
//! starts with `codex_` check codex-specific behaviour (messages naming JSON paths, version and
//! features format, escape checks runc 1.1.5 fails) and are skipped for runc with
//! `-- --skip codex_`.

use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

mod bundle;
mod cgroupfs;
mod cmd;
pub mod console;
pub mod ctr;
mod ctx;
mod fresh;
pub mod netns;
pub mod nsregistry;
mod procfs;
mod runtime;
pub mod seccomp_agent;
mod serial;
mod skip;

pub use bundle::Bundle;
pub use cgroupfs::*;
pub use cmd::{
    cmd_timeout, have_tool, host_sh, kill_group, own_group, read_lossy, run_command, run_timeout,
    sync_calls_in, try_run_to, wait_child, wait_until, Out, CMD_TIMEOUT, STRACE_SYNC_CALLS,
};
pub use ctx::{copy_runtime_to, TestCtx};
pub use fresh::{assert_fresh, assert_fresh_from, ENGINE_CRATES};
pub use procfs::*;
pub use runtime::{Background, Runtime};
pub use serde_json;
pub use serial::{serial, Serial};
pub use skip::{current_test, require_all, skip, skip_dir};

/// How long to wait for a container to reach a state or print something.
pub const WAIT: Duration = Duration::from_secs(20);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn next() -> usize {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// The workspace root (the parent of this crate).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The runtime binary under test: `$CODEX_OCI`, else `<workspace>/target/debug/codex-oci`,
/// which must be newer than the sources it is built from ([`assert_fresh`]).
pub fn runtime_binary() -> PathBuf {
    let p = match std::env::var_os("CODEX_OCI") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let p = workspace_dir().join("target/debug/codex-oci");
            if p.exists() {
                assert_fresh(&p);
            }
            p
        }
    };
    assert!(
        p.exists(),
        "runtime binary {} does not exist: build it (cargo build -p codex-cli) or set CODEX_OCI",
        p.display()
    );
    p
}

/// True when the binary under test is runc (used only to explain a skip or a message).
pub fn runtime_is_runc() -> bool {
    runtime_binary()
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("runc"))
}

/// The busybox fixture bundle (`rootfs/`, `config.json`, `rootfs.tar`): `$CODEX_FIXTURE`
/// when set (a bundle `rootfs-fixtures/make-busybox-bundle.sh` made, used as it is: `make
/// test` passes the one `make fixtures` keeps current, the cgroup v2 VM has no bash to
/// build one), else built once and cached in `<workspace>/target/codex-tests/busybox-bundle`
/// under a file lock, rebuilt when the script is newer than the cache. Always the script's
/// own minimal config (not `$CODEX_OCI spec`), so every test starts from the same spec.
/// Treat it as read-only.
pub fn fixture_dir() -> &'static Path {
    static FIXTURE: OnceLock<PathBuf> = OnceLock::new();
    FIXTURE.get_or_init(|| match std::env::var_os("CODEX_FIXTURE") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            for f in ["config.json", "rootfs/bin/busybox", "rootfs.tar"] {
                assert!(
                    d.join(f).exists(),
                    "CODEX_FIXTURE={} has no {f}: make it with rootfs-fixtures/make-busybox-bundle.sh",
                    d.display()
                );
            }
            // The script leaves rootfs/dev empty; anything in it means a container ran
            // on the fixture itself (device nodes made in place), and tests that build
            // their own /dev from it would fail for a reason that is not theirs.
            let dev = d.join("rootfs/dev");
            let polluted: Vec<String> = fs::read_dir(&dev)
                .map(|it| {
                    it.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                polluted.is_empty(),
                "CODEX_FIXTURE={}: rootfs/dev is not empty ({polluted:?}): something ran a container on the fixture; rebuild it (`make fixtures` does)",
                d.display()
            );
            d
        }
        _ => build_fixture(),
    })
}

fn build_fixture() -> PathBuf {
    let base = workspace_dir().join("target/codex-tests");
    fs::create_dir_all(&base).expect("create target/codex-tests");
    let lock = File::create(base.join("fixture.lock")).expect("create fixture lock");
    // SAFETY: flock on an fd we own; released when `lock` is closed.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock fixture lock");
    let out = base.join("busybox-bundle");
    let stamp = base.join("busybox-bundle.stamp");
    let script = workspace_dir().join("rootfs-fixtures/make-busybox-bundle.sh");
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (mtime(&stamp), mtime(&script)) {
        (Some(s), Some(sc)) => {
            s >= sc && out.join("config.json").exists() && out.join("rootfs/bin/busybox").exists()
        }
        _ => false,
    };
    if !fresh {
        let st = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .env_remove("CODEX_OCI")
            .stdout(Stdio::null())
            .status()
            .expect("run make-busybox-bundle.sh");
        assert!(st.success(), "make-busybox-bundle.sh failed: {st}");
        fs::write(&stamp, b"ok\n").expect("write fixture stamp");
    }
    drop(lock);
    out
}
