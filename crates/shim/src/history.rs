//! A container's usage history: a fixed-size file in its state directory
//! (`usage.ring`) that the supervisor writes one sample into every monitor interval,
//! overwriting the oldest, and that `codex-ctr stats --plot` reads back.
//!
//! A file rather than memory of the supervisor: the shim stays as small as it was (a
//! sample is one `pwrite` of 24 bytes, no buffer kept), any reader can read it without
//! talking to the supervisor, and it outlives the supervisor (a stopped container's
//! last hours can still be plotted). Bounded: [`SLOTS`] samples, 24 KiB.
//!
//! Format: the magic `CXUSAGE1`, then [`SLOTS`] records of three little-endian u64:
//! the wall-clock time in ms since the epoch (0: an empty slot), the cgroup's CPU
//! counter in ns (cumulative: a rate is the difference of two samples; it starts
//! again at each run, in a new cgroup), and the memory in use in bytes. The writer
//! continues after the newest record it finds, so restarts and new supervisors
//! append to the same ring.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// The file's name in the container's directory.
pub const FILE: &str = "usage.ring";
/// How many samples are kept.
pub const SLOTS: u64 = 1024;
const MAGIC: &[u8; 8] = b"CXUSAGE1";
const RECORD: u64 = 24;

/// One sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub time_ms: u64,
    pub cpu_ns: u64,
    pub memory: u64,
}

impl Sample {
    fn encode(&self) -> [u8; RECORD as usize] {
        let mut b = [0u8; RECORD as usize];
        b[..8].copy_from_slice(&self.time_ms.to_le_bytes());
        b[8..16].copy_from_slice(&self.cpu_ns.to_le_bytes());
        b[16..].copy_from_slice(&self.memory.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Sample {
        let num = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[r]);
            u64::from_le_bytes(a)
        };
        Sample {
            time_ms: num(0..8),
            cpu_ns: num(8..16),
            memory: num(16..24),
        }
    }
}

/// The writer's side.
#[derive(Debug)]
pub struct History {
    file: File,
    next: u64,
}

fn open(path: &Path, write: bool) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .create(write)
        .mode(0o600)
        // Written by root in a directory the container never sees; still, never
        // follow a link planted there.
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Calls `f` with every record of `file` and its slot, reading a few at a time (the
/// shim's heap stays as it is).
fn each_record(file: &File, mut f: impl FnMut(u64, Sample)) -> io::Result<bool> {
    let mut magic = [0u8; 8];
    match file.read_exact_at(&mut magic, 0) {
        Ok(()) if &magic == MAGIC => {}
        Ok(()) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let mut buf = [0u8; (RECORD * 32) as usize];
    let mut slot = 0;
    while slot < SLOTS {
        let n = file.read_at(&mut buf, 8 + slot * RECORD)?;
        let whole = n / RECORD as usize;
        if whole == 0 {
            break;
        }
        for r in buf[..whole * RECORD as usize].chunks_exact(RECORD as usize) {
            if slot < SLOTS {
                f(slot, Sample::decode(r));
            }
            slot += 1;
        }
    }
    Ok(true)
}

impl History {
    /// Opens (or makes) the history at `path`, to write after its newest sample.
    pub fn open(path: &Path) -> io::Result<History> {
        let file = open(path, true)?;
        let mut newest: Option<(u64, u64)> = None;
        let ours = each_record(&file, |slot, s| {
            if s.time_ms != 0 && newest.is_none_or(|(t, _)| s.time_ms >= t) {
                newest = Some((s.time_ms, slot));
            }
        })?;
        if !ours {
            // New, or not a history of this version: start it afresh.
            file.set_len(0)?;
            file.write_all_at(MAGIC, 0)?;
        }
        Ok(History {
            file,
            next: newest.map_or(0, |(_, slot)| (slot + 1) % SLOTS),
        })
    }

    /// Writes `s` over the oldest sample.
    pub fn push(&mut self, s: &Sample) -> io::Result<()> {
        self.file
            .write_all_at(&s.encode(), 8 + self.next * RECORD)?;
        self.next = (self.next + 1) % SLOTS;
        Ok(())
    }

    /// Every sample kept at `path`, oldest first (none if there is no history).
    pub fn read(path: &Path) -> io::Result<Vec<Sample>> {
        let file = match open(path, false) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut all = Vec::new();
        each_record(&file, |_, s| {
            if s.time_ms != 0 {
                all.push(s);
            }
        })?;
        all.sort_by_key(|s| s.time_ms);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: u64) -> Sample {
        Sample {
            time_ms: t,
            cpu_ns: t * 10,
            memory: t * 100,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_samples_across_writers() {
        let dir = std::env::temp_dir().join(format!("codex-shim-ring-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE);
        let _ = std::fs::remove_file(&path);
        assert_eq!(History::read(&path).unwrap(), Vec::new());
        let mut h = History::open(&path).unwrap();
        for t in 1..=10 {
            h.push(&sample(t)).unwrap();
        }
        drop(h);
        assert_eq!(
            History::read(&path).unwrap(),
            (1..=10).map(sample).collect::<Vec<_>>()
        );
        // A new writer (a restart) continues after the newest, then wraps around.
        let mut h = History::open(&path).unwrap();
        for t in 11..=SLOTS + 20 {
            h.push(&sample(t)).unwrap();
        }
        drop(h);
        let all = History::read(&path).unwrap();
        assert_eq!(all.len() as u64, SLOTS);
        assert_eq!(all.first(), Some(&sample(21)));
        assert_eq!(all.last(), Some(&sample(SLOTS + 20)));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            8 + SLOTS * RECORD,
            "bounded"
        );
        // And again after the wrap.
        let mut h = History::open(&path).unwrap();
        h.push(&sample(SLOTS + 21)).unwrap();
        let all = History::read(&path).unwrap();
        assert_eq!(all.first(), Some(&sample(22)));
        assert_eq!(all.last(), Some(&sample(SLOTS + 21)));
        // Something else in its place is started afresh, not misread.
        std::fs::write(&path, b"not a history at all, longer than the magic").unwrap();
        assert_eq!(History::read(&path).unwrap(), Vec::new());
        let mut h = History::open(&path).unwrap();
        h.push(&sample(5)).unwrap();
        assert_eq!(History::read(&path).unwrap(), vec![sample(5)]);
        // A link in its place is not followed.
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(dir.join("elsewhere"), &path).unwrap();
        assert!(History::open(&path).is_err());
        assert!(!dir.join("elsewhere").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
