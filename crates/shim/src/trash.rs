//! `codex-shim __delete-trash TRASH INTENT`: deletes a removed container's renamed
//! directory for a command that did not wait for it (the engine's `registry::Trash`
//! says why and how the removal's intent covers it).
//!
//! The intent's lock comes as fd [`LOCK_FD`], so the intent stays held while this runs;
//! its file is unlinked once the tree is gone. Should the tree not go, the intent's
//! file stays and our exit releases its lock: abandoned, it makes the next command's
//! open run the full reconcile, which deletes the leftover (or says why it cannot).

use std::ffi::OsString;
use std::path::Path;

/// The command-line mode.
pub const MODE: &str = "__delete-trash";

/// The fd at which the deleter gets the removal intent's lock.
pub const LOCK_FD: i32 = 3;

/// A removed container's directory name starts with this.
const TRASH_PREFIX: &str = ".removing-";
/// Intent files live in a directory of this name.
const INTENTS_DIR: &str = "intents";

/// Runs the mode on its arguments (those after [`MODE`]); returns the exit code.
pub fn run(args: &[OsString]) -> i32 {
    let [trash, intent] = args else {
        eprintln!("codex-shim: usage: {MODE} TRASH INTENT");
        return 2;
    };
    let (trash, intent) = (Path::new(trash), Path::new(intent));
    if let Err(e) = check_paths(trash, intent) {
        eprintln!("codex-shim: {MODE}: {e}");
        return 2;
    }
    // The tests' window on a deletion in flight, and on a deleter killed in it.
    codex_sys::testhook::pause("delete-trash");
    codex_sys::testhook::die("delete-trash");
    match std::fs::remove_dir_all(trash) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            eprintln!("codex-shim: deleting {}: {e}", trash.display());
            return 1;
        }
    }
    // Unlinked while our copy of the lock still holds it, as the engine's own intents.
    let _ = std::fs::remove_file(intent);
    0
}

/// Only a removed container's directory and an intent file are accepted: a mistyped
/// command line deletes nothing else.
fn check_paths(trash: &Path, intent: &Path) -> Result<(), String> {
    let is_trash = trash.is_absolute()
        && trash
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.len() > TRASH_PREFIX.len() && n.starts_with(TRASH_PREFIX));
    if !is_trash {
        return Err(format!(
            "{} is not a removed container's directory ({TRASH_PREFIX}ID)",
            trash.display()
        ));
    }
    let in_intents = intent.is_absolute()
        && intent
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|d| d == INTENTS_DIR);
    if !in_intents {
        return Err(format!("{} is not an intent file", intent.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_removed_containers_directory_and_an_intent_are_accepted() {
        let ok = check_paths(
            Path::new("/r/containers/.removing-abc"),
            Path::new("/r/intents/1-2-rm"),
        );
        assert_eq!(ok, Ok(()));
        for (trash, intent) in [
            ("/r/containers/abc", "/r/intents/1-2-rm"),
            ("/r/containers/.removing-", "/r/intents/1-2-rm"),
            ("containers/.removing-abc", "/r/intents/1-2-rm"),
            ("/", "/r/intents/1-2-rm"),
            ("/r/containers/.removing-abc", "/r/other/1-2-rm"),
            ("/r/containers/.removing-abc", "intents/1-2-rm"),
        ] {
            assert!(
                check_paths(Path::new(trash), Path::new(intent)).is_err(),
                "{trash} {intent} must be refused"
            );
        }
    }

    #[test]
    fn the_tree_and_the_intent_go() {
        let d = tempfile::tempdir().unwrap();
        let trash = d.path().join("containers/.removing-abc");
        std::fs::create_dir_all(trash.join("upper/a/b")).unwrap();
        std::fs::write(trash.join("upper/a/b/f"), b"x").unwrap();
        std::fs::create_dir_all(d.path().join("intents")).unwrap();
        let intent = d.path().join("intents/1-2-rm");
        std::fs::write(&intent, b"").unwrap();
        assert_eq!(run(&[trash.clone().into(), intent.clone().into()]), 0);
        assert!(!trash.exists() && !intent.exists());
        // Gone already (a reconcile was faster): nothing to do, and the intent goes.
        std::fs::write(&intent, b"").unwrap();
        assert_eq!(run(&[trash.into(), intent.clone().into()]), 0);
        assert!(!intent.exists());
    }
}
