//! Reading a container's log as its supervisor writes it: a query (which streams,
//! since when, the last N lines) over the rotated files, and a follower that hands out
//! new lines as they are written and ends when the container stops.
//!
//! The follower keeps the live file open and remembers its offset, so a poll reads only
//! what is new; when the supervisor rotates, the open handle (now `container.log.1`) is
//! drained before the new live file is opened. It sleeps in `poll(2)` on an inotify
//! watch of the container directory and a pidfd of the supervisor: output and the
//! container's end are seen at once, without a polling interval.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::error::{Context, Error, Result};
use crate::supervisor::logs::LogLine;

/// Which lines of a log a caller wants.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only lines written at or after this time.
    pub since: Option<SystemTime>,
    /// Only the last N lines of what is already there (following continues after them).
    pub tail: Option<usize>,
    /// Only stdout (`true, false`) or only stderr (`false, true`); both or neither: all.
    pub stdout: bool,
    pub stderr: bool,
}

impl LogQuery {
    fn wants(&self, l: &LogLine) -> bool {
        let stream_ok = self.stdout == self.stderr
            || (self.stdout && l.stream == "stdout")
            || (self.stderr && l.stream == "stderr");
        stream_ok
            && self
                .since
                .is_none_or(|since| line_time(l).is_none_or(|t| t >= since))
    }

    /// Applies the stream and time filters, then `tail`.
    pub fn select(&self, lines: Vec<LogLine>) -> Vec<LogLine> {
        let mut picked: Vec<LogLine> = lines.into_iter().filter(|l| self.wants(l)).collect();
        if let Some(n) = self.tail {
            let skip = picked.len().saturating_sub(n);
            picked.drain(..skip);
        }
        picked
    }
}

/// `--since`: an RFC 3339 time (`2026-11-23T10:00:00Z`), or a duration before now
/// (`10m`, `1h30m`, `90s`), or Unix seconds.
pub fn parse_since(s: &str) -> Result<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<u64>() {
        // `+` panics past the range of SystemTime (found by fuzz/cli_parsers).
        return SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .ok_or_else(|| Error::invalid("since", format!("{s:?} is too far in the future")));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return SystemTime::now()
            .checked_sub(d)
            .ok_or_else(|| Error::invalid("since", format!("{s:?} reaches before the epoch")));
    }
    Err(Error::invalid(
        "since",
        format!(
            "{s:?} is neither a time (2026-11-23T10:00:00Z), a duration (10m) nor Unix seconds"
        ),
    ))
}

fn line_time(l: &LogLine) -> Option<SystemTime> {
    humantime::parse_rfc3339(&l.time).ok()
}

/// The rotated files oldest first, then the live one.
fn files(path: &Path, max_files: u32) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..max_files.max(1))
        .rev()
        .map(|i| PathBuf::from(format!("{}.{i}", path.display())))
        .collect();
    out.push(path.to_path_buf());
    out
}

fn parse_lines(text: &[u8], out: &mut Vec<LogLine>) {
    for l in text.split(|b| *b == b'\n') {
        if let Ok(rec) = serde_json::from_slice::<LogLine>(l) {
            out.push(rec);
        }
    }
}

/// Reads an open log file from its current offset to the end; complete lines go to
/// `out`, a trailing partial line stays in `partial` for the next read.
fn read_new(file: &mut File, partial: &mut Vec<u8>, out: &mut Vec<LogLine>) -> Result<()> {
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).ctx(|| "reading the log")?;
    if buf.is_empty() {
        return Ok(());
    }
    partial.extend_from_slice(&buf);
    if let Some(end) = partial.iter().rposition(|b| *b == b'\n') {
        let rest = partial.split_off(end + 1);
        parse_lines(partial, out);
        *partial = rest;
    }
    Ok(())
}

/// What a [`LogFollower::poll`] found.
#[derive(Debug)]
pub enum Followed {
    /// New lines (already filtered).
    Lines(Vec<LogLine>),
    /// Nothing new within the timeout; the container still runs.
    Idle,
    /// The container is no longer running and everything it wrote was returned.
    Ended,
}

/// Follows one container's log; see the module doc.
pub struct LogFollower {
    /// The log's path through [`LogFollower::dir`]: `/proc/self/fd/N/container.log`.
    path: PathBuf,
    /// The container's directory, held open: the log is found through it even after
    /// the directory is renamed away (a `run --rm`'s container removed by its
    /// supervisor, whose files stay until its attached command has exited), so a log
    /// created or rotated just before that is still read to its end.
    _dir: OwnedFd,
    max_files: u32,
    query: LogQuery,
    live: Option<(File, u64)>,
    partial: Vec<u8>,
    inotify: Inotify,
    backlog: Option<Vec<LogLine>>,
}

impl LogFollower {
    /// The inotify instance, for a caller that closes it its own way; the rest is
    /// dropped.
    pub fn into_inotify_fd(self) -> std::os::fd::OwnedFd {
        self.inotify.into()
    }

    /// Opens the log of the container whose directory is `dir`: what is there already
    /// (filtered by `query`, `tail` applied) is the first batch.
    pub fn open(dir: &Path, file_name: &str, max_files: u32, query: LogQuery) -> Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .ctx(|| "creating an inotify instance")?;
        inotify
            .add_watch(
                dir,
                AddWatchFlags::IN_MODIFY
                    | AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_CLOSE_WRITE
                    // The container's removal (its directory renamed away, then deleted):
                    // an attached `run --rm` waits for it (crate::run_end).
                    | AddWatchFlags::IN_MOVE_SELF
                    | AddWatchFlags::IN_DELETE_SELF,
            )
            .ctx(|| format!("watching {}", dir.display()))?;
        let held: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(dir)
            .ctx(|| format!("opening {}", dir.display()))?
            .into();
        let path = PathBuf::from(format!(
            "/proc/self/fd/{}/{file_name}",
            std::os::fd::AsRawFd::as_raw_fd(&held)
        ));
        // The live file is opened first: a rotation while the older files are read
        // then shows as a changed inode on the next poll, and nothing is skipped.
        let live = open_with_inode(&path);
        let mut lines = Vec::new();
        for f in files(&path, max_files) {
            if f == path {
                break;
            }
            if let Ok(text) = std::fs::read(&f) {
                parse_lines(&text, &mut lines);
            }
        }
        let mut me = LogFollower {
            path,
            _dir: held,
            max_files,
            query,
            live,
            partial: Vec::new(),
            inotify,
            backlog: None,
        };
        if let Some((f, _)) = me.live.as_mut() {
            read_new(f, &mut me.partial, &mut lines)?;
        }
        me.backlog = Some(me.query.select(lines));
        Ok(me)
    }

    /// New lines since the last call (the backlog first), without waiting.
    fn take_new(&mut self) -> Result<Vec<LogLine>> {
        if let Some(b) = self.backlog.take() {
            return Ok(b);
        }
        let mut lines = Vec::new();
        if let Some((f, _)) = self.live.as_mut() {
            // With a single log file, rotation truncates it in place: start over.
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if f.stream_position().is_ok_and(|pos| pos > len) {
                let _ = f.seek(SeekFrom::Start(0));
                self.partial.clear();
            }
            read_new(f, &mut self.partial, &mut lines)?;
        }
        let current = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
        let held = self.live.as_ref().map(|(_, ino)| *ino);
        if current.is_some() && current != held {
            // Rotated (or created). The writer may have appended to the held file
            // between the read above and its rotation: drain it once more (it is no
            // longer written to). Files rotated since are newer than it: `.1` is the
            // newest; the one we held is `.k` (its inode cannot be reused: we hold it).
            if let Some((f, _)) = self.live.as_mut() {
                read_new(f, &mut self.partial, &mut lines)?;
            }
            let (live, mut newer) = self.snapshot(held);
            // Oldest first: `.k-1` down to `.1`, then the live file.
            while let Some(mut f) = newer.pop() {
                let mut text = Vec::new();
                if f.read_to_end(&mut text).is_ok() {
                    parse_lines(&text, &mut lines);
                }
            }
            self.partial.clear();
            self.live = live;
            if let Some((f, _)) = self.live.as_mut() {
                read_new(f, &mut self.partial, &mut lines)?;
            }
        }
        Ok(lines.into_iter().filter(|l| self.query.wants(l)).collect())
    }

    /// Opens the live file and the rotated files newer than the one with inode `held`
    /// (`.1` first), as one consistent picture: the supervisor renames `.k` to `.k+1`
    /// one by one while it rotates, so a look in the middle (a missing `.1`, or names
    /// that change between two looks) is retried. Open files stay right whatever is
    /// renamed after.
    fn snapshot(&self, held: Option<u64>) -> (Option<(File, u64)>, Vec<File>) {
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        let inode = |p: &Path| std::fs::metadata(p).map(|m| m.ino()).ok();
        let mut last = None;
        for _ in 0..100 {
            let live = open_with_inode(&self.path);
            let rotated: Vec<Option<(File, u64)>> = (1..self.max_files.max(1))
                .map(|i| open_with_inode(&name(i)))
                .collect();
            let inos: Vec<Option<u64>> = rotated.iter().map(|r| r.as_ref().map(|x| x.1)).collect();
            let again: Vec<Option<u64>> = (1..self.max_files.max(1))
                .map(|i| inode(&name(i)))
                .collect();
            let stable = inos == again && live.as_ref().map(|l| l.1) == inode(&self.path);
            let no_gap = inos.windows(2).all(|w| w[0].is_some() || w[1].is_none());
            let newer: Vec<File> = rotated
                .into_iter()
                .map_while(|r| r.filter(|(_, ino)| Some(*ino) != held))
                .map(|(f, _)| f)
                .collect();
            if stable && no_gap {
                return (live, newer);
            }
            last = Some((live, newer));
            std::thread::sleep(Duration::from_millis(1));
        }
        last.unwrap_or((None, Vec::new()))
    }

    /// The fd that becomes readable when the container directory changes (for callers
    /// that wait in their own event loop, then call [`LogFollower::poll`] with a zero
    /// timeout).
    pub fn wake_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Reads and forgets the pending change events (after a wait on [`LogFollower::wake_fd`]).
    pub fn drain(&self) {
        while self.inotify.read_events().is_ok_and(|e| !e.is_empty()) {}
    }

    /// Returns new lines, or waits up to `timeout` for some. `running` tells whether
    /// the container still runs and gives its supervisor's pidfd to wake on its exit.
    pub fn poll(
        &mut self,
        timeout: Duration,
        mut running: impl FnMut() -> Result<Option<Option<OwnedFd>>>,
    ) -> Result<Followed> {
        let lines = self.take_new()?;
        if !lines.is_empty() {
            return Ok(Followed::Lines(lines));
        }
        let Some(pidfd) = running()? else {
            // Stopped: whatever was written before the end is read now.
            let lines = self.take_new()?;
            return Ok(if lines.is_empty() {
                Followed::Ended
            } else {
                Followed::Lines(lines)
            });
        };
        let mut fds = vec![PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
        if let Some(p) = pidfd.as_ref() {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        let t = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, t) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).ctx(|| "waiting for the log"),
        }
        drop(fds);
        // Drain the events: they only say "look again".
        self.drain();
        let lines = self.take_new()?;
        Ok(if lines.is_empty() {
            Followed::Idle
        } else {
            Followed::Lines(lines)
        })
    }
}

fn open_with_inode(path: &Path) -> Option<(File, u64)> {
    let mut f = File::open(path).ok()?;
    let ino = f.metadata().ok()?.ino();
    f.seek(SeekFrom::Start(0)).ok()?;
    Some((f, ino))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::logs::{LogWriter, Rotation};

    fn texts(lines: &[LogLine]) -> Vec<String> {
        lines.iter().map(|l| l.log.clone()).collect()
    }

    /// fuzz/cli_parsers found `--since 10000175010170000017` panicking in `SystemTime + _`.
    #[test]
    fn since_past_the_end_of_time_is_an_error_not_a_panic() {
        let err = parse_since("10000175010170000017").unwrap_err().to_string();
        assert!(err.contains("since"), "{err}");
        assert_eq!(
            parse_since("1700000000").unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
    }

    #[test]
    fn since_accepts_times_durations_and_unix_seconds() {
        let t = parse_since("2026-11-23T10:00:00Z").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_795_428_000
        );
        assert_eq!(
            parse_since("1795428000").unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_428_000)
        );
        let ago = SystemTime::now()
            .duration_since(parse_since("10m").unwrap())
            .unwrap();
        // The wall clock may step back a little between the two reads.
        assert!(ago > Duration::from_secs(599), "{ago:?}");
        let err = parse_since("yesterday").unwrap_err().to_string();
        assert!(err.starts_with("since: "), "{err}");
    }

    #[test]
    fn query_filters_streams_then_takes_the_tail() {
        let l = |s: &str, t: &str| LogLine {
            time: "2026-11-23T10:00:00.000000000Z".into(),
            stream: s.into(),
            log: t.into(),
            partial: false,
        };
        let all = vec![l("stdout", "a"), l("stderr", "b"), l("stdout", "c")];
        let q = LogQuery {
            stdout: true,
            tail: Some(1),
            ..Default::default()
        };
        assert_eq!(texts(&q.select(all.clone())), ["c"]);
        let q = LogQuery {
            since: Some(parse_since("2026-11-23T10:00:01Z").unwrap()),
            ..Default::default()
        };
        assert!(q.select(all).is_empty());
    }

    #[test]
    fn the_follower_reads_new_lines_across_a_rotation_and_ends_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let rot = Rotation {
            max_size: 200,
            max_files: 3,
        };
        let mut w = LogWriter::open(&dir.path().join("c.log"), rot).unwrap();
        w.feed(0, b"first\n").unwrap();
        let mut f = LogFollower::open(dir.path(), "c.log", 3, LogQuery::default()).unwrap();
        let running = || Ok(Some(None));
        let got = match f.poll(Duration::ZERO, running).unwrap() {
            Followed::Lines(l) => texts(&l),
            other => panic!("{other:?}"),
        };
        assert_eq!(got, ["first"]);
        let mut seen = Vec::new();
        for i in 0..10 {
            w.feed(1, format!("line {i}\n").as_bytes()).unwrap();
            if let Followed::Lines(l) = f.poll(Duration::from_millis(100), running).unwrap() {
                seen.extend(texts(&l));
            }
        }
        assert!(dir.path().join("c.log.1").exists(), "the test must rotate");
        let want: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
        assert_eq!(seen, want);
        assert!(matches!(
            f.poll(Duration::ZERO, || Ok(None)).unwrap(),
            Followed::Ended
        ));
    }

    #[test]
    fn lines_in_files_rotated_between_two_polls_are_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        // About two lines per file; five files hold every line of this test.
        let rot = Rotation {
            max_size: 200,
            max_files: 5,
        };
        let running = || Ok(Some(None));
        // Opened before the log exists (as `run` does), then three rotations at once.
        let mut f = LogFollower::open(dir.path(), "c.log", 5, LogQuery::default()).unwrap();
        let mut w = LogWriter::open(&dir.path().join("c.log"), rot).unwrap();
        let mut seen = Vec::new();
        for i in 0..6 {
            w.feed(0, format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(
            dir.path().join("c.log.2").exists(),
            "the test must rotate twice"
        );
        while let Followed::Lines(l) = f.poll(Duration::ZERO, running).unwrap() {
            seen.extend(texts(&l));
        }
        for i in 6..12 {
            w.feed(0, format!("line {i}\n").as_bytes()).unwrap();
        }
        while let Followed::Lines(l) = f.poll(Duration::ZERO, running).unwrap() {
            seen.extend(texts(&l));
        }
        assert!(
            dir.path().join("c.log.4").exists(),
            "the test must rotate 4 times"
        );
        let want: Vec<String> = (0..12).map(|i| format!("line {i}")).collect();
        assert_eq!(seen, want);
    }
}
