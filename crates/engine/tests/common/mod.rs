//! Helpers shared by the engine's test files (each test binary uses a part of them).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use codex_engine::registry::{is_full_id, ContainerRecord, Registry, STATE_FILE};
use codex_engine::Error;

pub fn temp_root() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("codex-registry-")
        .tempdir()
        .expect("temp dir")
}

pub fn no_labels() -> BTreeMap<String, String> {
    BTreeMap::new()
}

pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Every name in the index has a directory whose state.json has that id and name; every
/// directory is in the index; no temp file is left; reconcile finds nothing to do.
pub fn assert_consistent(reg: &Registry) -> Vec<ContainerRecord> {
    reg.index().expect("index loads");
    let links = reg.container_names().expect("names/ lists");
    let mut dirs = BTreeSet::new();
    for entry in std::fs::read_dir(reg.containers_dir()).expect("read containers/") {
        let entry = entry.expect("entry");
        let name = entry.file_name().into_string().expect("utf-8 name");
        assert!(is_full_id(&name), "unexpected entry containers/{name}");
        for inner in std::fs::read_dir(entry.path()).expect("read container dir") {
            let inner = inner
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8");
            assert_eq!(inner, STATE_FILE, "unexpected file in containers/{name}");
        }
        dirs.insert(name);
    }
    let indexed: BTreeSet<String> = links.values().cloned().collect();
    assert_eq!(indexed, dirs, "names/ and containers/ disagree");
    assert_eq!(indexed.len(), links.len(), "an id has two names");
    for entry in std::fs::read_dir(reg.root()).expect("read root") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        assert!(!name.contains(".tmp-"), "temp file left: {name}");
    }
    let records = reg.list().expect("list");
    assert_eq!(records.len(), dirs.len());
    for record in &records {
        assert_eq!(links.get(&record.name), Some(&record.id));
    }
    let reconciled = reg.reconcile().expect("reconcile");
    assert!(
        reconciled.is_clean(),
        "reconcile found work: {reconciled:?}"
    );
    records
}

pub fn is_name_in_use(e: &Error, wanted: &str) -> bool {
    matches!(e, Error::NameInUse { kind: "container", name } if name == wanted)
}

/// An engine over a fresh root whose supervisor is the debug `codex-ctr` (built by
/// `cargo build` before `cargo test`), or None, with a loud skip, where this cannot run
/// (not root, or no binary).
pub fn real_engine(prefix: &str) -> Option<(tempfile::TempDir, codex_engine::engine::Engine)> {
    let exe =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/codex-ctr");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() == 0 };
    if !root || !exe.exists() {
        codex_tests::skip("needs root and target/debug/codex-ctr (run `cargo build` first)");
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    let eng =
        codex_engine::engine::Engine::open(&dir.path().join("root"), exe).expect("open engine");
    Some((dir, eng))
}

/// A `minimal` container (a host shell under a real supervisor: no image needed)
/// running `sh -c SH`.
pub fn script(name: &str, sh: &str) -> codex_engine::config::ContainerConfig {
    codex_engine::config::ContainerConfig {
        name: Some(name.to_string()),
        isolation: codex_engine::config::Isolation::Minimal,
        command: vec!["/bin/sh".into(), "-c".into(), sh.into()],
        ..Default::default()
    }
}
