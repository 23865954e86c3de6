//! Visible skips. A test that cannot run here calls [`skip`] and returns: the skip is
//! printed, recorded in the skip registry (one file per skip under
//! `target/codex-tests/skips/`, or `$CODEX_SKIP_DIR`) that `make test` lists at the end as
//! "N skipped: ...", and with `CODEX_REQUIRE_ALL=1` (set by CI) it fails the test instead.

use std::fs;
use std::path::PathBuf;

use crate::{next, workspace_dir};

/// Where skips are recorded: `$CODEX_SKIP_DIR`, else `<workspace>/target/codex-tests/skips`.
pub fn skip_dir() -> PathBuf {
    match std::env::var_os("CODEX_SKIP_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace_dir().join("target/codex-tests/skips"),
    }
}

/// True when `CODEX_REQUIRE_ALL=1`: every test must run, a skip is a failure.
pub fn require_all() -> bool {
    std::env::var("CODEX_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// The name of the running test (libtest names each test's thread after it).
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("unknown-test")
        .to_string()
}

/// Marks the running test as skipped because of `why` (say what is missing and how to get
/// it). The caller returns right after. Never skip silently: this prints the skip, records
/// it for `make test`'s summary, and panics (fails the test) under `CODEX_REQUIRE_ALL=1`.
#[track_caller]
pub fn skip(why: &str) {
    let test = current_test();
    eprintln!("SKIP: {test}: {why}");
    let dir = skip_dir();
    let line = format!("{test}: {}\n", why.replace('\n', " "));
    let file = dir.join(format!("{}-{}", std::process::id(), next()));
    if let Err(e) = fs::create_dir_all(&dir).and_then(|_| fs::write(&file, line)) {
        // An unrecorded skip would be a silent one: fail instead.
        panic!(
            "{test} skipped ({why}) but the skip could not be recorded in {}: {e}",
            dir.display()
        );
    }
    if require_all() {
        panic!("{test} skipped, and CODEX_REQUIRE_ALL=1 makes a skip a failure: {why}");
    }
}
