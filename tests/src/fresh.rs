//! The binaries under test must be built from the sources in this tree: a plain
//! `cargo test -p codex-tests` after an edit would otherwise test yesterday's binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::workspace_dir;

/// The crates the workspace's binaries (codex-oci, codex-ctr, codex-shim) are linked
/// from: an edit in any of them relinks every binary.
const CLI_CRATES: &[&str] = &["runtime", "engine", "shim", "sys", "cli"];

/// The crates an embedding of the engine (codex-bot-executor) is linked from: not the
/// CLI, whose edits relink only the workspace's binaries.
pub const ENGINE_CRATES: &[&str] = &["runtime", "engine", "shim", "sys"];

/// The newest modification time under the `src/` dirs of `crates`, with the file that
/// has it.
fn newest_source_in(crates: &[&str]) -> Option<(SystemTime, PathBuf)> {
    fn walk(d: &Path, best: &mut Option<(SystemTime, PathBuf)>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd.filter_map(|e| e.ok()) {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                walk(&e.path(), best);
            } else if let Ok(t) = m.modified() {
                if best.as_ref().is_none_or(|(b, _)| t > *b) {
                    *best = Some((t, e.path()));
                }
            }
        }
    }
    let mut best = None;
    for c in crates {
        walk(
            &workspace_dir().join("crates").join(c).join("src"),
            &mut best,
        );
    }
    best
}

/// [`newest_source_in`] of [`CLI_CRATES`], looked up once per test binary.
fn newest_source() -> &'static Option<(SystemTime, PathBuf)> {
    static NEWEST: OnceLock<Option<(SystemTime, PathBuf)>> = OnceLock::new();
    NEWEST.get_or_init(|| newest_source_in(CLI_CRATES))
}

/// Fails the test when `bin` (a binary of this workspace's target/) is older than a source
/// file it is built from.
#[track_caller]
pub fn assert_fresh(bin: &Path) {
    check_fresh(bin, newest_source().as_ref());
}

/// [`assert_fresh`] for a binary linked from `crates` only (see [`ENGINE_CRATES`]).
#[track_caller]
pub fn assert_fresh_from(bin: &Path, crates: &[&str]) {
    check_fresh(bin, newest_source_in(crates).as_ref());
}

#[track_caller]
fn check_fresh(bin: &Path, newest: Option<&(SystemTime, PathBuf)>) {
    // A fixture's cleanup that runs while the test already panics (this very check, say)
    // must not panic again: that aborts the whole test binary.
    if std::thread::panicking() {
        return;
    }
    let Some((src_time, src)) = newest else {
        return;
    };
    let bin_time = fs::metadata(bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: build it (cargo build -p codex-cli)",
                bin.display()
            )
        });
    assert!(
        bin_time >= *src_time,
        "{} is older than {}: it does not test this tree's code. Build it first \
         (cargo build -p codex-cli, or make build), or set CODEX_OCI/CODEX_CTR to the binary \
         you mean to test",
        bin.display(),
        src.display()
    );
}
