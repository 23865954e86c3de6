//! Intents: how a command learns in O(1) that a crash left the registry's files for the
//! full reconcile to repair, so that opening the engine does not read every container.
//!
//! A change that takes more than one write (create, rm, rename, an `--rm` supervisor's
//! removal) first takes a slot file in `<root>/intents/` (`slot-N`, the first whose
//! `flock` it gets without waiting, made if none is free), holds the lock and marks the
//! slot in flight (its first byte); when the change is done it marks the slot idle
//! (still locked) and then closes it. A process killed half-way leaves a slot marked in
//! flight with nobody's lock on it: "abandoned". Opening the engine lists `intents/`
//! (one slot per change ever in flight at once: a few) and tries each file's lock
//! without waiting; a slot it gets that is marked in flight is abandoned, and only then
//! does the open run the full reconcile. A live writer's intent is locked, so readers
//! never wait for it.
//!
//! Slots are reused, not made and unlinked per change (but for those past the first
//! [`KEPT_SLOTS`], which a burst of changes at once makes: unlinked when done, so that
//! an open's look stays a few files): on an ext4 without a journal
//! (these VMs), every inode made and deleted within about 30 s makes each later inode
//! allocation step over it, so a `run --rm` that made two intent files slowed every
//! later create (docs/benchmarks.md, thirteenth pass). A file named otherwise (an intent
//! of an older version, `PID-N-WHAT`) is in flight for as long as it exists.
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
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

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

/// The prefix of a reusable intent slot's file name.
const SLOT_PREFIX: &str = "slot-";
/// A slot's length: its mark, then what the change is (for whoever reads it).
const SLOT_LEN: usize = 32;
/// A slot's first byte while its change is in flight.
const IN_FLIGHT: u8 = b'1';
/// A slot's first byte while it is free.
const IDLE: u8 = b'0';
/// Slots tried before a declaration gives up (each one locked by a live change).
const MAX_SLOTS: usize = 4096;
/// Slots kept once their change is done; one past these (a burst of changes at once)
/// is unlinked when its change is done, so that an open's look stays a few files.
const KEPT_SLOTS: usize = 8;

/// A change in flight; its slot is marked idle (or, past [`KEPT_SLOTS`], unlinked) when
/// this is dropped, its lock going right after.
#[derive(Debug)]
pub struct Intent {
    lock: codex_sys::FileLock,
    /// A slot past [`KEPT_SLOTS`]: unlinked when the change is done.
    unlink: Option<PathBuf>,
}

impl Intent {
    /// Ends this process's part without completing the change: the slot stays in
    /// flight, its lock goes when the process exits, and the next command's open runs
    /// the full reconcile, which completes it. For a change whose end this process
    /// cannot see to.
    pub fn abandon(self) {
        // The fd (and with it the lock) is kept until exit, when the kernel closes it.
        std::mem::forget(self);
    }
}

impl Drop for Intent {
    fn drop(&mut self) {
        // Marked idle (or unlinked) while still locked: nobody ever sees this slot
        // unlocked and in flight while its owner lives. A mark that fails to be written
        // costs one needless reconcile.
        match &self.unlink {
            Some(path) => {
                let _ = fs::remove_file(path);
            }
            None => {
                let _ = self.lock.file().write_at(&[IDLE], 0);
            }
        }
    }
}

/// What an in-flight slot holds: its mark and `what`, padded to [`SLOT_LEN`].
fn slot_record(what: &str) -> [u8; SLOT_LEN] {
    let mut rec = [b' '; SLOT_LEN];
    rec[0] = IN_FLIGHT;
    let what = what.as_bytes();
    let n = what.len().min(SLOT_LEN - 3);
    rec[2..2 + n].copy_from_slice(&what[..n]);
    rec[SLOT_LEN - 1] = b'\n';
    rec
}

/// The number of the slot at `path` (`slot-N`); `None` for any other name (an older
/// version's intent file).
fn slot_number(path: &Path) -> Option<usize> {
    path.file_name()?
        .to_str()?
        .strip_prefix(SLOT_PREFIX)?
        .parse()
        .ok()
}

fn is_slot(path: &Path) -> bool {
    slot_number(path).is_some()
}

/// Whether `path` is a slot past [`KEPT_SLOTS`] (one a done change unlinks).
fn is_extra_slot(path: &Path) -> bool {
    slot_number(path).is_some_and(|n| n >= KEPT_SLOTS)
}

/// Whether the locked file is still the one at `path`: a slot its change unlinked
/// while another process had it open (and then got its lock) is not.
fn still_at(path: &Path, lock: &codex_sys::FileLock) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (lock.file().metadata(), fs::symlink_metadata(path)) {
        (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
        _ => false,
    }
}

/// Whether the file at `path`, whose lock the caller got, stands for an abandoned
/// change: a slot marked in flight, or an intent file of an older version.
fn is_abandoned(path: &Path, lock: &codex_sys::FileLock) -> bool {
    if !is_slot(path) {
        return true;
    }
    let mut mark = [0u8; 1];
    // An empty slot (made, never marked: its maker died first) is idle.
    matches!(lock.file().read_at(&mut mark, 0), Ok(1) if mark[0] != IDLE)
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
        let mut n = 0;
        // Tries of the same slot (made by another process, or unlinked under us).
        let mut again = 0;
        while n < MAX_SLOTS {
            if again > 100 {
                (n, again) = (n + 1, 0);
            }
            again += 1;
            let path = dir.join(format!("{SLOT_PREFIX}{n}"));
            let lock = match codex_sys::FileLock::try_exclusive(&path) {
                // Unlinked by its change after this open: tried again.
                Ok(Some(lock)) if !still_at(&path, &lock) => continue,
                // Free, unless a dead change left it in flight: that one stays for the
                // reconcile it calls for.
                Ok(Some(lock)) if !is_abandoned(&path, &lock) => lock,
                // Another change holds it, or left it.
                Ok(_) => {
                    (n, again) = (n + 1, 0);
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    // Made (or found made by another process at the same moment), then
                    // tried again like any other.
                    make_slot(&dir, &path)?;
                    continue;
                }
                Err(e) => return Err(e).ctx(|| format!("locking {}", path.display())),
            };
            lock.file()
                .write_all_at(&slot_record(what), 0)
                .ctx(|| format!("declaring a change in {}", path.display()))?;
            let unlink = is_extra_slot(&path).then_some(path);
            return Ok(Intent { lock, unlink });
        }
        Err(crate::error::Error::invalid(
            "intents",
            format!("{MAX_SLOTS} changes are in flight in {}", dir.display()),
        ))
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
                // Unlinked by its change after this open (and so not abandoned).
                Ok(Some(lock)) if !still_at(&path, &lock) => {}
                Ok(Some(lock)) if is_abandoned(&path, &lock) => out.push((path, lock)),
                // Idle: a free slot.
                Ok(Some(_)) => {}
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

/// Clears the intents a reconcile has found abandoned and repaired (their locks held):
/// a slot is marked idle, an older version's intent file deleted.
pub(crate) fn forget(abandoned: Vec<(PathBuf, codex_sys::FileLock)>) {
    for (path, lock) in abandoned {
        if is_slot(&path) && !is_extra_slot(&path) {
            let _ = lock.file().write_at(&[IDLE], 0);
        } else {
            let _ = fs::remove_file(&path);
        }
        drop(lock);
    }
}

/// Makes the slot file `path` if it is not there (and `dir`, in a root made before
/// intents existed). Empty: idle until a change marks it.
fn make_slot(dir: &Path, path: &Path) -> Result<()> {
    let open = || {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            files::create_dir(dir, 0o700).ctx(|| format!("creating {}", dir.display()))?;
            open()
        }
        other => other,
    }
    .map(drop)
    .ctx(|| format!("making {}", path.display()))
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
    fn a_held_intent_is_not_abandoned_a_dropped_one_leaves_an_idle_slot_a_dead_ones_is() {
        let d = tempfile::tempdir().unwrap();
        let reg = Registry::open(&d.path().join("root")).unwrap();
        let held = reg.intent("create").unwrap();
        assert!(reg.abandoned_intents().unwrap().is_empty());
        let slot = reg.intents_dir().join("slot-0");
        assert_eq!(&fs::read(&slot).unwrap()[..10], b"1 create  ");
        // A second change at once takes another slot.
        let second = reg.intent("rm").unwrap();
        assert!(reg.intents_dir().join("slot-1").exists());
        drop(second);
        drop(held);
        assert!(reg.abandoned_intents().unwrap().is_empty());
        // Reused, not made again: still two slots.
        let again = reg.intent("rename").unwrap();
        assert_eq!(&fs::read(&slot).unwrap()[..10], b"1 rename  ");
        drop(again);
        assert_eq!(fs::read_dir(reg.intents_dir()).unwrap().count(), 2);
        assert_eq!(fs::read(&slot).unwrap()[0], IDLE);

        // What a killed owner leaves: a slot in flight with no lock on it, which no
        // later change takes over; an empty slot (made, never marked) is idle.
        fs::write(reg.intents_dir().join("slot-2"), b"").unwrap();
        reg.intent("rm").unwrap().abandon();
        // The abandoned one is held by this process's leaked fd: copy its state to a
        // slot nobody holds, as a dead owner leaves it.
        let dead = reg.intents_dir().join("slot-7");
        fs::write(&dead, slot_record("rm")).unwrap();
        let taken = (0..10)
            .map(|_| reg.intent("create").unwrap())
            .collect::<Vec<_>>();
        assert_eq!(
            fs::read(&dead).unwrap()[..4],
            slot_record("rm")[..4],
            "an abandoned slot was taken over"
        );
        drop(taken);
        let found = reg.abandoned_intents().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, dead);
        forget(found);
        assert_eq!(fs::read(&dead).unwrap()[0], IDLE, "forgotten: idle again");
        assert!(reg.abandoned_intents().unwrap().is_empty());

        // An older version's intent file is in flight as long as it exists.
        let old = reg.intents_dir().join("1-0-rm");
        fs::write(&old, b"").unwrap();
        let found = reg.abandoned_intents().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, old);
        forget(found);
        assert!(!old.exists());
    }

    #[test]
    fn slots_past_the_kept_ones_are_unlinked_when_done_and_a_lock_on_an_unlinked_one_is_not_used() {
        let d = tempfile::tempdir().unwrap();
        let reg = Registry::open(&d.path().join("root")).unwrap();
        let burst = (0..KEPT_SLOTS + 3)
            .map(|_| reg.intent("create").unwrap())
            .collect::<Vec<_>>();
        let count = || fs::read_dir(reg.intents_dir()).unwrap().count();
        assert_eq!(count(), KEPT_SLOTS + 3);
        // What another process's open of an extra slot holds once its change is done.
        let extra = reg.intents_dir().join(format!("{SLOT_PREFIX}{KEPT_SLOTS}"));
        let stale = fs::File::open(&extra).unwrap();
        drop(burst);
        assert_eq!(count(), KEPT_SLOTS, "the extra slots were not unlinked");
        assert!(reg.abandoned_intents().unwrap().is_empty());
        // A file at the slot's name is another inode than the one held open.
        let again = (0..KEPT_SLOTS + 1)
            .map(|_| reg.intent("rm").unwrap())
            .collect::<Vec<_>>();
        use std::os::unix::fs::MetadataExt;
        assert_ne!(
            stale.metadata().unwrap().ino(),
            fs::metadata(&extra).unwrap().ino()
        );
        drop(again);
        assert!(reg.abandoned_intents().unwrap().is_empty());
        assert!(is_extra_slot(&extra));
        assert!(!is_extra_slot(&reg.intents_dir().join("slot-0")));
        assert!(!is_extra_slot(&reg.intents_dir().join("1-0-rm")));

        // A lock got on a slot after its change unlinked it is no lock on the slot
        // now at that name.
        let path = reg.intents_dir().join("slot-99");
        fs::write(&path, b"").unwrap();
        let held = codex_sys::FileLock::try_exclusive(&path).unwrap().unwrap();
        assert!(still_at(&path, &held));
        fs::remove_file(&path).unwrap();
        assert!(!still_at(&path, &held));
        fs::write(&path, b"").unwrap();
        assert!(!still_at(&path, &held));
        let fresh = codex_sys::FileLock::try_exclusive(&path).unwrap().unwrap();
        assert!(still_at(&path, &fresh));
    }

    #[test]
    fn a_slot_record_is_marked_in_flight_and_names_the_change_within_its_length() {
        let r = slot_record("create");
        assert_eq!(r[0], IN_FLIGHT);
        assert_eq!(&r[2..8], b"create");
        assert_eq!(r[SLOT_LEN - 1], b'\n');
        let long = slot_record(&"x".repeat(100));
        assert_eq!(long.len(), SLOT_LEN);
        assert_eq!(long[SLOT_LEN - 1], b'\n');
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
        let left = reg.intents_dir().join("slot-9");
        fs::write(&left, slot_record("create")).unwrap();
        assert_eq!(reg.reconcile_due().unwrap(), Some(Due::Abandoned(left)));
    }
}
