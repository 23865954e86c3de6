//! The container log: JSON lines `{"time","stream","log"}` in `container.log`, rotated
//! by size into `container.log.1` ... `container.log.N` (N = max files - 1).
//!
//! The records are encoded here by hand, byte for byte as `serde_json` encodes the
//! engine's `LogLine` (which reads them back); codex-engine's tests hold the two
//! encodings equal.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::{Context, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Bytes a file may reach before it is rotated.
    pub max_size: u64,
    /// Files kept, the live one included (at least 1).
    pub max_files: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_size: 10 << 20,
            max_files: 3,
        }
    }
}

/// The longest record: a partial line waits for its end up to this many bytes.
pub const MAX_LINE: usize = 16 * 1024;

/// Appends lines to a container's log, splitting each stream into lines (a partial
/// line waits for its end, up to [`MAX_LINE`] bytes) and rotating by size.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
    partial: [Vec<u8>; 2],
    dropped: u64,
    /// A terminal's output: what has no newline yet is written at once (a shell's
    /// prompt must reach an attached user), as records marked partial.
    tty: bool,
}

/// A container's output may hold secrets: only root reads its log.
const LOG_MODE: u32 = 0o600;

impl LogWriter {
    pub fn open(path: &Path, rotation: Rotation) -> Result<LogWriter> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(LOG_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .ctx(|| format!("opening {}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            rotation: Rotation {
                max_files: rotation.max_files.max(1),
                ..rotation
            },
            partial: [Vec::new(), Vec::new()],
            dropped: 0,
            tty: false,
        })
    }

    /// Lines that could not be written (a full disk, an I/O error) and were dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Writes unterminated output at once, as partial records (a terminal's output).
    pub fn set_tty(&mut self, on: bool) {
        self.tty = on;
    }

    /// Feeds bytes read from `stream` (0 = stdout, 1 = stderr).
    pub fn feed(&mut self, stream: usize, data: &[u8]) -> Result<()> {
        let mut buf = std::mem::take(&mut self.partial[stream]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
            self.write_line(stream, &buf[start..start + nl])?;
            start += nl + 1;
        }
        let mut rest = buf.split_off(start);
        while rest.len() >= MAX_LINE {
            let tail = rest.split_off(MAX_LINE);
            self.write_line(stream, &rest)?;
            rest = tail;
        }
        if self.tty && !rest.is_empty() {
            // Up to the last whole character: a character cut by the read waits for
            // its other bytes.
            let whole = match std::str::from_utf8(&rest) {
                Ok(_) => rest.len(),
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                Err(_) => rest.len(),
            };
            let tail = rest.split_off(whole);
            if !rest.is_empty() {
                self.write_record(stream, &rest, true)?;
            }
            rest = tail;
        }
        self.partial[stream] = rest;
        Ok(())
    }

    /// Takes the unterminated lines that wait for their end (stdout, stderr): for
    /// another writer of the same log to [`LogWriter::set_pending`].
    pub fn take_pending(&mut self) -> [Vec<u8>; 2] {
        std::mem::take(&mut self.partial)
    }

    /// Continues unterminated lines that another writer of this log took.
    pub fn set_pending(&mut self, pending: [Vec<u8>; 2]) {
        self.partial = pending;
    }

    /// Writes out what is left of unterminated lines (at the end of the container).
    pub fn flush(&mut self) -> Result<()> {
        for stream in 0..2 {
            let rest = std::mem::take(&mut self.partial[stream]);
            if !rest.is_empty() {
                self.write_line(stream, &rest)?;
            }
        }
        self.file
            .flush()
            .ctx(|| format!("flushing {}", self.path.display()))
    }

    /// Writes one record, or drops it when the log cannot take it: a full disk must
    /// cost the container its log lines, never its supervision (the pump used to stop
    /// on the error, and the unsupervised container was killed).
    fn write_line(&mut self, stream: usize, text: &[u8]) -> Result<()> {
        self.write_record(stream, text, false)
    }

    /// Writes one record; `partial`: the text is not the end of a line.
    fn write_record(&mut self, stream: usize, text: &[u8], partial: bool) -> Result<()> {
        let mut out = Vec::with_capacity(text.len() + 80);
        encode(
            &now_rfc3339(),
            if stream == 0 { "stdout" } else { "stderr" },
            &String::from_utf8_lossy(text),
            partial,
            &mut out,
        );
        let full = self.size > 0 && self.size + out.len() as u64 > self.rotation.max_size;
        if full && self.rotate().is_err() {
            self.dropped += 1;
            return Ok(());
        }
        if self.file.write_all(&out).is_err() {
            // A short write left part of a record: cut it off, so the next record
            // starts on a line of its own and every line stays whole JSON.
            let _ = self.file.set_len(self.size);
            self.dropped += 1;
            return Ok(());
        }
        self.size += out.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        let keep = self.rotation.max_files - 1;
        if keep == 0 {
            self.file
                .set_len(0)
                .ctx(|| format!("truncating {}", self.path.display()))?;
            self.size = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(name(keep));
        for i in (1..keep).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        std::fs::rename(&self.path, name(1)).ctx(|| format!("rotating {}", self.path.display()))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(LOG_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path)
            .ctx(|| format!("opening {}", self.path.display()))?;
        self.size = 0;
        Ok(())
    }
}

/// Appends one record and its newline to `out`:
/// `{"time":"...","stream":"...","log":"..."}` with JSON string escapes.
pub fn encode_record(time: &str, stream: &str, log: &str, out: &mut Vec<u8>) {
    encode(time, stream, log, false, out)
}

/// [`encode_record`] of a record that is not the end of its line:
/// `{"time":"...","stream":"...","log":"...","partial":true}`.
pub fn encode_partial_record(time: &str, stream: &str, log: &str, out: &mut Vec<u8>) {
    encode(time, stream, log, true, out)
}

fn encode(time: &str, stream: &str, log: &str, partial: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":");
    json_string(time, out);
    out.extend_from_slice(b",\"stream\":");
    json_string(stream, out);
    out.extend_from_slice(b",\"log\":");
    json_string(log, out);
    if partial {
        out.extend_from_slice(b",\"partial\":true");
    }
    out.extend_from_slice(b"}\n");
}

/// A JSON string as serde_json writes it: `"` and `\` escaped, the control
/// characters as `\b \t \n \f \r` or `\u00xx` (lower-case hex), all else verbatim.
fn json_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x00..=0x1f => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Now, as RFC 3339 UTC with nanoseconds (`2026-11-23T10:00:00.000000000Z`), the
/// format of codex-runtime's `state::now_rfc3339`.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

/// `secs` after the Unix epoch plus `nanos`, as RFC 3339 UTC with nanoseconds.
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_that_cannot_be_written_drops_lines_instead_of_failing() {
        // /dev/full fails every write with ENOSPC, as a full disk does.
        let mut log = LogWriter::open(Path::new("/dev/full"), Rotation::default()).unwrap();
        log.feed(0, b"one\ntwo\n").unwrap();
        log.feed(1, b"three\n").unwrap();
        log.flush().unwrap();
        assert_eq!(log.dropped(), 3);
    }

    #[test]
    fn a_terminal_writes_unterminated_output_at_once_but_never_half_a_character() {
        let dir = std::env::temp_dir().join(format!("codex-shim-ttylog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.log");
        let _ = std::fs::remove_file(&path);
        let mut log = LogWriter::open(&path, Rotation::default()).unwrap();
        log.set_tty(true);
        // "é" is two bytes: the read cut it.
        log.feed(0, b"line\r\n/ # caf\xc3").unwrap();
        log.feed(0, b"\xa9").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let logs: Vec<&str> = text.lines().collect();
        assert_eq!(logs.len(), 3, "{text}");
        assert!(logs[0].ends_with(r#""log":"line\r"}"#), "{text}");
        assert!(
            logs[1].ends_with(r#""log":"/ # caf","partial":true}"#),
            "{text}"
        );
        assert!(logs[2].ends_with(r#""log":"é","partial":true}"#), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn times_are_rfc3339_utc_with_nanoseconds() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            rfc3339(1_795_428_000 + 59, 123_456_789),
            "2026-11-23T10:00:59.123456789Z"
        );
        assert_eq!(now_rfc3339().len(), "1970-01-01T00:00:00.000000000Z".len());
    }

    #[test]
    fn records_escape_like_json() {
        let mut out = Vec::new();
        encode_record("t", "stdout", "a\"b\\c\n\u{1}\u{7f}é", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"time\":\"t\",\"stream\":\"stdout\",\"log\":\"a\\\"b\\\\c\\n\\u0001\u{7f}é\"}\n"
        );
    }
}
