//! Intents: how a command learns in O(1) that a crash left the registry's files for the
//! full reconcile to repair, so that opening the engine does not read every container.
//!
//! A change that takes more than one write (create, rm, rename, an `--rm` supervisor's
//! removal) first makes a file in `<root>/intents/` and holds an `flock` on it; when the
//! change is done the file is unlinked (still locked) and then closed. A process killed
//! half-way leaves the file with nobody's lock on it: "abandoned". Opening the engine
//! lists `intents/` (empty or a few entries: one per change in flight) and tries each
//! file's lock without waiting; one it gets is abandoned, and only then does the open run
//! the full reconcile. A live writer's intent is locked, so readers never wait for it.
//!
//! A reboot ends every process at once, and the files of an unsynced change may be half
//! on disk, so `<root>/reconciled` holds the boot id of the last full reconcile: another
//! boot id means a full reconcile (and a look at every record: no supervisor survived).
//!
//! A single-file write (`update_container`, `update`) needs no intent: it is atomic (a
//! temp file renamed), and a killed writer leaves only a temp file, which is hidden from
//! readers and removed by the next full reconcile.

use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Context, Result};

use super::files;
use super::Registry;

/// The directory of intents, in the root.
pub const INTENTS_DIR: &str = "intents";
/// The boot id of the last full reconcile, in the root.
pub const RECONCILED_FILE: &str = "reconciled";
/// Where the kernel says which boot this is.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// Why the full reconcile is due (see the module's doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// No full reconcile was recorded on this boot (a new root, an upgrade, a reboot).
    NewBoot,
    /// A change was abandoned half-way: its intent file is named.
    Abandoned(PathBuf),
}

impl std::fmt::Display for Due {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Due::NewBoot => write!(f, "no full reconcile on this boot yet"),
            Due::Abandoned(p) => write!(f, "{} was abandoned", p.display()),
        }
    }
}

/// A change in flight; its file goes when this is dropped (the lock right after).
#[derive(Debug)]
pub struct Intent {
    path: PathBuf,
    _lock: codex_sys::FileLock,
}

impl Intent {
    /// Ends this process's part without completing the change: the file stays, its lock
    /// goes when the process exits, and the next command's open runs the full reconcile,
    /// which completes it. For a change whose end this process cannot see to.
    pub fn abandon(self) {
        // The fd (and with it the lock) is kept until exit, when the kernel closes it.
        std::mem::forget(self);
    }
}

impl Drop for Intent {
    fn drop(&mut self) {
        // Unlinked while still locked: nobody ever sees this file unlocked while its
        // owner lives (but for the instant between its creation and its flock, which
        // costs at most one needless reconcile).
        let _ = fs::remove_file(&self.path);
    }
}

/// Numbers a process's intents (with the pid, a unique file name).
static SEQ: AtomicU64 = AtomicU64::new(0);

/// The name of intent `n` of process `pid` doing `what`.
pub(crate) fn intent_name(pid: u32, n: u64, what: &str) -> String {
    format!("{pid}-{n}-{what}")
}

/// The decision of [`Registry::reconcile_due`], from what was read: the boot id now, the
/// one recorded (None: no file), and whether an intent was found abandoned.
pub(crate) fn decide(
    boot_now: &str,
    recorded: Option<&str>,
    abandoned: Option<PathBuf>,
) -> Option<Due> {
    match recorded.map(str::trim) {
        Some(r) if !r.is_empty() && r == boot_now.trim() => abandoned.map(Due::Abandoned),
        _ => Some(Due::NewBoot),
    }
}

/// The kernel's boot id (empty if it cannot be read: every open then reconciles, which
/// is slow but safe).
pub(crate) fn boot_id() -> String {
    fs::read_to_string(BOOT_ID)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Registry {
    /// `<root>/intents`.
    pub fn intents_dir(&self) -> PathBuf {
        self.root().join(INTENTS_DIR)
    }

    /// Declares a change of several writes (`what` names it, for whoever finds it
    /// abandoned); hold the result until the change is complete.
    pub fn intent(&self, what: &str) -> Result<Intent> {
        let dir = self.intents_dir();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(intent_name(std::process::id(), n, what));
        let lock = match codex_sys::FileLock::exclusive(&path) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // A root made before intents existed.
                files::create_dir(&dir, 0o700).ctx(|| format!("creating {}", dir.display()))?;
                codex_sys::FileLock::exclusive(&path)
            }
            other => other,
        }
        .ctx(|| format!("declaring a change in {}", path.display()))?;
        Ok(Intent { path, _lock: lock })
    }

    /// Whether the full reconcile is due: a new boot, or an abandoned change. Reads one
    /// small file, the boot id and the (nearly always empty) `intents/`: O(1) in the
    /// number of containers. Takes no registry lock.
    pub fn reconcile_due(&self) -> Result<Option<Due>> {
        let recorded = match fs::read_to_string(self.root().join(RECONCILED_FILE)) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e).ctx(|| format!("reading {RECONCILED_FILE}")),
        };
        let now = boot_id();
        if decide(&now, recorded.as_deref(), None).is_some() {
            return Ok(Some(Due::NewBoot));
        }
        let abandoned = self.abandoned_intents()?.into_iter().next().map(|(p, _)| p);
        Ok(decide(&now, recorded.as_deref(), abandoned))
    }

    /// Every intent nobody holds, with its lock (now ours: its owner is dead).
    pub(crate) fn abandoned_intents(&self) -> Result<Vec<(PathBuf, codex_sys::FileLock)>> {
        let dir = self.intents_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx(|| format!("reading {}", dir.display())),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.ctx(|| format!("reading {}", dir.display()))?.path();
            match codex_sys::FileLock::try_exclusive(&path) {
                Ok(Some(lock)) => out.push((path, lock)),
                // Held: a change in flight. Gone: it just finished.
                Ok(None) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                // Not a lockable file (a symlink, a directory): not ours to judge.
                Err(_) => {}
            }
        }
        Ok(out)
    }

    /// Records that the full reconcile ran on this boot (under the registry lock).
    pub(crate) fn record_reconciled(&self) -> Result<()> {
        let path = self.root().join(RECONCILED_FILE);
        let now = boot_id();
        if fs::read_to_string(&path).is_ok_and(|s| s.trim() == now && !now.is_empty()) {
            return Ok(());
        }
        files::write_atomic(&path, format!("{now}\n").as_bytes())
    }
}

/// Deletes the intents a reconcile has found abandoned and repaired (their locks held).
pub(crate) fn forget(abandoned: Vec<(PathBuf, codex_sys::FileLock)>) {
    for (path, lock) in abandoned {
        let _ = fs::remove_file(&path);
        drop(lock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_boot_and_no_abandoned_intent_means_nothing_is_due() {
        assert_eq!(decide("b1", Some("b1\n"), None), None);
    }

    #[test]
    fn another_boot_a_missing_or_empty_record_means_a_new_boot() {
        assert_eq!(decide("b2", Some("b1"), None), Some(Due::NewBoot));
        assert_eq!(decide("b1", None, None), Some(Due::NewBoot));
        assert_eq!(decide("b1", Some("  \n"), None), Some(Due::NewBoot));
        // An unreadable boot id never matches: every open reconciles (slow, safe).
        assert_eq!(decide("", Some(""), None), Some(Due::NewBoot));
    }

    #[test]
    fn an_abandoned_intent_on_the_same_boot_is_due() {
        let p = PathBuf::from("/r/intents/1-0-rm");
        assert_eq!(
            decide("b1", Some("b1"), Some(p.clone())),
            Some(Due::Abandoned(p))
        );
    }

    #[test]
    fn intent_names_are_unique_per_process_and_count() {
        assert_eq!(intent_name(42, 7, "create"), "42-7-create");
        assert_ne!(intent_name(42, 7, "rm"), intent_name(42, 8, "rm"));
        assert_ne!(intent_name(42, 7, "rm"), intent_name(43, 7, "rm"));
    }

    #[test]
    fn a_held_intent_is_not_abandoned_a_dropped_one_is_gone_and_a_dead_ones_is() {
        let d = tempfile::tempdir().unwrap();
        let reg = Registry::open(&d.path().join("root")).unwrap();
        let held = reg.intent("create").unwrap();
        assert!(reg.abandoned_intents().unwrap().is_empty());
        drop(held);
        assert_eq!(fs::read_dir(reg.intents_dir()).unwrap().count(), 0);
        // What a killed owner leaves: the file, and no lock on it.
        let left = reg.intents_dir().join(intent_name(1, 0, "rm"));
        fs::write(&left, b"").unwrap();
        let found = reg.abandoned_intents().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, left);
        forget(found);
        assert!(!left.exists());
    }

    #[test]
    fn reconcile_due_says_new_boot_until_recorded_then_abandoned_only() {
        let d = tempfile::tempdir().unwrap();
        let reg = Registry::open(&d.path().join("root")).unwrap();
        assert!(!boot_id().is_empty(), "Linux has {BOOT_ID}");
        assert_eq!(reg.reconcile_due().unwrap(), Some(Due::NewBoot));
        reg.record_reconciled().unwrap();
        assert_eq!(reg.reconcile_due().unwrap(), None);
        let held = reg.intent("rm").unwrap();
        assert_eq!(
            reg.reconcile_due().unwrap(),
            None,
            "a live change is not due"
        );
        std::mem::forget(held); // the lock stays held by this process's fd
        let left = reg.intents_dir().join(intent_name(1, 0, "create"));
        fs::write(&left, b"").unwrap();
        assert_eq!(reg.reconcile_due().unwrap(), Some(Due::Abandoned(left)));
    }
}
