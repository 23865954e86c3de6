//! Events: what happened to containers, as JSON lines in `<root>/events.jsonl`
//! (rotated once to `events.jsonl.1` past [`MAX_SIZE`]: bounded), appended by whoever
//! acts, no daemon: the CLI (`create`, `stop`, `kill`, `pause`, `unpause`,
//! `destroy`), the supervisor's full-binary parts (`start`, `die`, `oom`, `restart`),
//! and the health probe (`health_status`). `codex-ctr events` reads them back, filters
//! them and, without `--until`, follows the file with inotify.
//!
//! An event is never worth failing the action it reports: writing one is best effort.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use crate::registry::ContainerRecord;

pub const EVENTS_FILE: &str = "events.jsonl";
const LOCK_FILE: &str = "events.lock";
/// The live file is rotated when it would grow past this; one old file is kept.
pub const MAX_SIZE: u64 = 1024 * 1024;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 UTC with nanoseconds.
    pub time: String,
    /// create, start, die, oom, restart, health_status, stop, kill, pause, unpause,
    /// destroy.
    pub action: String,
    /// The container's id and name.
    pub id: String,
    pub name: String,
    /// Details (exit code, signal, health status, restart count...) and the
    /// container's labels, as strings.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    /// An event about `rec`, stamped now, with its labels among the attributes.
    pub fn about(rec: &ContainerRecord, action: &str, details: &[(&str, String)]) -> Event {
        let mut attributes: BTreeMap<String, String> = rec
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in details {
            attributes.insert((*k).to_string(), v.clone());
        }
        Event {
            time: codex_runtime::state::now_rfc3339(),
            action: action.to_string(),
            id: rec.id.clone(),
            name: rec.name.clone(),
            attributes,
        }
    }
}

/// Appends `event` to the root's events file (best effort: an error is dropped).
pub fn emit(root: &Path, event: &Event) {
    let _ = append(root, event);
}

/// [`emit`] for an event about `rec`.
pub fn emit_about(root: &Path, rec: &ContainerRecord, action: &str, details: &[(&str, String)]) {
    emit(root, &Event::about(rec, action, details));
}

fn append(root: &Path, event: &Event) -> Result<()> {
    let mut line = serde_json::to_vec(event).map_err(|e| Error::invalid("event", e.to_string()))?;
    line.push(b'\n');
    let path = root.join(EVENTS_FILE);
    // One writer at a time, so a rotation never loses a line being written.
    let _lock =
        codex_sys::FileLock::exclusive(&root.join(LOCK_FILE)).ctx(|| "locking the events file")?;
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.len() + line.len() as u64 > MAX_SIZE) {
        std::fs::rename(&path, root.join(format!("{EVENTS_FILE}.1")))
            .ctx(|| format!("rotating {}", path.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .ctx(|| format!("opening {}", path.display()))?;
    f.write_all(&line)
        .ctx(|| format!("writing {}", path.display()))
}

/// Which events a reader wants.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    /// `container=NAME|ID-prefix`, `event=ACTION`, `label=KEY[=VALUE]`: filters of
    /// different keys must all match, filters of one key any of theirs.
    pub filters: Vec<(String, String)>,
}

impl EventQuery {
    /// Parses `KEY=VALUE` filters, naming the bad one.
    pub fn parse_filters(specs: &[String]) -> Result<Vec<(String, String)>> {
        specs
            .iter()
            .map(|f| match f.split_once('=') {
                Some((k @ ("container" | "event" | "label"), v)) if !v.is_empty() => {
                    Ok((k.to_string(), v.to_string()))
                }
                _ => Err(Error::invalid(
                    "filter",
                    format!("{f:?} is not container=, event= or label=KEY[=VALUE]"),
                )),
            })
            .collect()
    }

    /// Whether `e` is wanted.
    pub fn matches(&self, e: &Event) -> bool {
        let t = humantime::parse_rfc3339(&e.time).ok();
        if let (Some(since), Some(t)) = (self.since, t) {
            if t < since {
                return false;
            }
        }
        if let (Some(until), Some(t)) = (self.until, t) {
            if t > until {
                return false;
            }
        }
        let mut keys: BTreeMap<&str, bool> = BTreeMap::new();
        for (k, v) in &self.filters {
            let hit = match k.as_str() {
                "container" => e.name == *v || e.id.starts_with(v.as_str()),
                "event" => e.action == *v,
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => e.attributes.get(lk).is_some_and(|x| x == lv),
                    None => e.attributes.contains_key(v.as_str()),
                },
                _ => false,
            };
            *keys.entry(k.as_str()).or_insert(false) |= hit;
        }
        keys.values().all(|hit| *hit)
    }
}

/// Reads the events files from where a previous read stopped, following rotation.
pub struct EventReader {
    dir: PathBuf,
    /// The live file as last read: (inode, offset).
    at: Option<(u64, u64)>,
    partial: Vec<u8>,
    inotify: Inotify,
}

impl EventReader {
    /// A reader of `root`'s events that starts with everything kept (the rotated file
    /// first).
    pub fn open(root: &Path) -> Result<EventReader> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .ctx(|| "creating an inotify instance")?;
        inotify
            .add_watch(
                root,
                AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_FROM,
            )
            .ctx(|| format!("watching {}", root.display()))?;
        Ok(EventReader {
            dir: root.to_path_buf(),
            at: None,
            partial: Vec::new(),
            inotify,
        })
    }

    /// The events written since the last call (all kept ones on the first).
    pub fn read_new(&mut self) -> Result<Vec<Event>> {
        let live = self.dir.join(EVENTS_FILE);
        let old = self.dir.join(format!("{EVENTS_FILE}.1"));
        let mut out = Vec::new();
        let ino = std::fs::symlink_metadata(&live).map(|m| m.ino()).ok();
        match self.at {
            None => {
                // First read: the rotated file, then the live one.
                let mut buf = Vec::new();
                self.read_from(&old, 0, &mut buf);
                parse(&mut buf, &mut out);
            }
            Some((seen, off)) if Some(seen) != ino => {
                // Rotated since: the rest of the file we were reading is now `.1`.
                let mut buf = std::mem::take(&mut self.partial);
                if std::fs::symlink_metadata(&old).is_ok_and(|m| m.ino() == seen) {
                    self.read_from(&old, off, &mut buf);
                }
                parse(&mut buf, &mut out);
                self.at = None;
            }
            Some(_) => {}
        }
        if let Some(ino) = ino {
            let off = self.at.map_or(0, |(_, o)| o);
            let mut buf = std::mem::take(&mut self.partial);
            let read = self.read_from(&live, off, &mut buf);
            self.at = Some((ino, off + read));
            parse(&mut buf, &mut out);
            self.partial = buf;
        }
        Ok(out)
    }

    /// Appends `path`'s bytes from `off` to `buf`; how many were read.
    fn read_from(&self, path: &Path, off: u64, buf: &mut Vec<u8>) -> u64 {
        let Ok(mut f) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
        else {
            return 0;
        };
        if f.seek(SeekFrom::Start(off)).is_err() {
            return 0;
        }
        let before = buf.len();
        let _ = f.read_to_end(buf);
        (buf.len() - before) as u64
    }

    /// An fd that turns readable when the events files change, for programs that wait
    /// in their own event loop (then call [`EventReader::read_new`]).
    pub fn wake_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Waits up to `timeout` for the events files to change.
    pub fn wait(&mut self, timeout: Duration) -> Result<()> {
        let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
        let t = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, t) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).ctx(|| "waiting for events"),
        }
        while self.inotify.read_events().is_ok_and(|e| !e.is_empty()) {}
        Ok(())
    }
}

impl crate::engine::Engine {
    /// A reader of this engine's events (every kept one first, then new ones: see
    /// [`EventReader::read_new`] and [`EventReader::wait`]).
    pub fn events(&self) -> Result<EventReader> {
        EventReader::open(self.root())
    }
}

/// Moves the complete lines of `buf` into `out` as events (a line that does not
/// parse, cut by a crash, is skipped); leaves an unterminated tail in `buf`.
/// How much of the live file's end [`newest_about`] reads, before it reads everything:
/// an event written just now is among the last few (8 KiB is about 30 events).
const TAILS: [u64; 2] = [8 * 1024, 64 * 1024];

/// The newest kept event about container `id` with `action` (a `die`, for the exit code
/// of a container removed before it could be read from its record). The live file's
/// last bytes are read first ([`TAILS`]); only if it is not there is everything kept
/// read. (Parsing 64 KiB of events took 0.5 ms, a `run --rm`'s end waited for it.)
pub fn newest_about(root: &Path, id: &str, action: &str) -> Option<Event> {
    let about = |events: Vec<Event>| {
        events
            .into_iter()
            .rev()
            .find(|e| e.id == id && e.action == action)
    };
    for tail in TAILS {
        if let Some(e) = about(read_tail(&root.join(EVENTS_FILE), tail)) {
            return Some(e);
        }
    }
    about(EventReader::open(root).ok()?.read_new().ok()?)
}

/// The whole lines among the last `max` bytes of the events file `path`.
fn read_tail(path: &Path, max: u64) -> Vec<Event> {
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(max);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    if from > 0 {
        // Started inside a line: it begins after the first newline.
        let start = buf
            .iter()
            .position(|b| *b == b'\n')
            .map_or(buf.len(), |p| p + 1);
        buf.drain(..start);
    }
    let mut out = Vec::new();
    parse(&mut buf, &mut out);
    out
}

fn parse(buf: &mut Vec<u8>, out: &mut Vec<Event>) {
    let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    for line in buf[..end].split(|b| *b == b'\n') {
        if let Ok(e) = serde_json::from_slice::<Event>(line) {
            out.push(e);
        }
    }
    buf.drain(..end);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, name: &str, labels: &[(&str, &str)]) -> Event {
        Event {
            time: codex_runtime::state::now_rfc3339(),
            action: action.into(),
            id: format!("{name}0000"),
            name: name.into(),
            attributes: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn filters_of_one_key_are_alternatives_and_of_different_keys_all_apply() {
        let e = event("die", "web", &[("tier", "front")]);
        let q = |f: &[&str]| EventQuery {
            filters: EventQuery::parse_filters(
                &f.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .unwrap(),
            ..Default::default()
        };
        assert!(q(&[]).matches(&e));
        assert!(q(&["event=die", "event=start"]).matches(&e));
        assert!(!q(&["event=start"]).matches(&e));
        assert!(q(&["container=web", "label=tier=front"]).matches(&e));
        assert!(q(&["container=web0"]).matches(&e), "an id prefix");
        assert!(!q(&["container=web", "label=tier=back"]).matches(&e));
        assert!(q(&["label=tier"]).matches(&e));
        for bad in ["", "event", "kind=x", "event="] {
            let err = EventQuery::parse_filters(&[bad.to_string()]).unwrap_err();
            assert!(err.to_string().starts_with("filter: "), "{bad}");
        }
        let past = EventQuery {
            until: Some(SystemTime::now() - Duration::from_secs(60)),
            ..Default::default()
        };
        assert!(!past.matches(&e));
        let future = EventQuery {
            since: Some(SystemTime::now() + Duration::from_secs(60)),
            ..Default::default()
        };
        assert!(!future.matches(&e));
    }

    /// The newest event of a kind about one container, whether it is among the file's
    /// last bytes (the usual case) or only further back (then everything is read).
    #[test]
    fn the_newest_event_about_a_container_is_found_near_the_end_or_further_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(newest_about(root, "a0000", "die").is_none());
        emit(root, &event("die", "a", &[("exit_code", "1")]));
        emit(root, &event("die", "a", &[("exit_code", "2")]));
        // Enough of others' events to push a's out of the tail read first.
        let big = "x".repeat(4000);
        for i in 0..(TAILS[1] as usize / 4000 + 2) {
            emit(root, &event("start", &format!("b{i}-{big}"), &[]));
        }
        let far = newest_about(root, "a0000", "die").expect("found further back");
        assert_eq!(far.attributes["exit_code"], "2");
        emit(root, &event("die", "a", &[("exit_code", "3")]));
        let near = newest_about(root, "a0000", "die").expect("found in the tail");
        assert_eq!(near.attributes["exit_code"], "3");
        assert!(newest_about(root, "a0000", "oom").is_none());
        // The tail alone: only whole lines, the newest last.
        let tail = read_tail(&root.join(EVENTS_FILE), 10_000);
        assert_eq!(
            tail.last().map(|e| e.attributes["exit_code"].as_str()),
            Some("3")
        );
        assert!(
            tail.len() <= 3,
            "{} lines from 10 kB of 4 kB lines",
            tail.len()
        );
    }

    #[test]
    fn events_are_appended_rotated_and_read_on_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut r = EventReader::open(root).unwrap();
        assert!(r.read_new().unwrap().is_empty());
        emit(root, &event("create", "a", &[]));
        emit(root, &event("start", "a", &[]));
        let got: Vec<String> = r
            .read_new()
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(got, ["create", "start"]);
        // Enough to rotate (more than MAX_SIZE in all), read on the way.
        let big = "x".repeat(4000);
        let mut seen = 0;
        for i in 0..400 {
            emit(root, &event("die", &format!("{i}-{big}"), &[]));
            if i % 50 == 0 {
                seen += r.read_new().unwrap().len();
            }
        }
        seen += r.read_new().unwrap().len();
        assert_eq!(seen, 400, "nothing lost across the rotation");
        assert!(root.join("events.jsonl.1").exists());
        let live = std::fs::metadata(root.join(EVENTS_FILE)).unwrap().len();
        assert!(live <= MAX_SIZE);
        let mode = std::fs::metadata(root.join(EVENTS_FILE)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A new reader sees what is kept: bounded, the newest last.
        let all = EventReader::open(root).unwrap().read_new().unwrap();
        assert!(all.len() < 400 && all.len() > 100, "{}", all.len());
        // The newest ones, contiguous.
        let nums: Vec<usize> = all
            .iter()
            .map(|e| e.name.split('-').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(nums.last(), Some(&399));
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    }
}
