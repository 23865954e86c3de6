//! config.json as codex-oci loads a bundle: `parse_spec` (syntax, ociVersion, types,
//! unsupported fields), then `validate` against a real bundle directory.
//!
//! Properties: a spec that parses serializes and parses again to the same spec (the
//! runtime's state.json stores the spec and reloads it); a spec that validates carries
//! what the rest of the runtime relies on without re-checking (a program to run, absolute
//! cwd, absolute mount destinations without `..`, an existing rootfs directory).
#![no_main]

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use codex_runtime::spec::{parse_spec, validate};
use libfuzzer_sys::fuzz_target;

/// One bundle directory per process, with a `rootfs/`; fuzzed `root.path`s are resolved
/// against it (read-only: validate only canonicalizes and stats).
fn bundle() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        sweep_stale(&std::env::temp_dir(), "codex-fuzz-bundle-");
        let dir = std::env::temp_dir().join(format!("codex-fuzz-bundle-{}", std::process::id()));
        fs::create_dir_all(dir.join("rootfs")).expect("creating the fuzz bundle");
        dir
    })
}

/// Every run leaves its directory behind (libFuzzer exits, or aborts on a crash, with
/// no hook on the way out): remove those whose process is gone.
fn sweep_stale(parent: &Path, prefix: &str) {
    let Ok(dir) = fs::read_dir(parent) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = parse_spec(data) else {
        return;
    };
    let again = serde_json::to_vec(&spec).expect("a parsed spec serializes");
    let reparsed = parse_spec(&again).unwrap_or_else(|e| {
        panic!(
            "serialized spec does not parse again: {e}\n{}",
            String::from_utf8_lossy(&again)
        )
    });
    assert_eq!(spec, reparsed, "spec changed across serialize + parse");

    let Ok(rootfs) = validate(&spec, bundle()) else {
        return;
    };
    assert!(rootfs.is_absolute() && rootfs.is_dir(), "{rootfs:?}");
    let process = spec.process().as_ref().expect("validated: has process");
    assert!(process.args().as_ref().is_some_and(|a| !a.is_empty()));
    assert!(process.cwd().is_absolute());
    for m in spec.mounts().iter().flatten() {
        let d = m.destination();
        assert!(d.is_absolute(), "{d:?}");
        assert!(!d.components().any(|c| c == Component::ParentDir), "{d:?}");
    }
    for e in process.env().iter().flatten() {
        assert!(e.contains('='), "{e:?}");
    }
});
