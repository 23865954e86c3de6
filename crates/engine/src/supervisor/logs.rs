//! The container log: JSON lines `{"time","stream","log"}` in `container.log`, rotated
//! by size into `container.log.1` ... `container.log.N` (N = max files - 1).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// RFC 3339 with nanoseconds.
    pub time: String,
    /// "stdout" or "stderr".
    pub stream: String,
    /// The text, without its trailing newline.
    pub log: String,
    /// The text is not the end of its line: a terminal's output written before its
    /// newline came (a prompt). Readers print it without adding a newline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

pub use codex_shim::log::{Rotation, MAX_LINE};

/// Appends lines to a container's log, splitting each stream into lines (a partial
/// line waits for its end, up to [`MAX_LINE`] bytes) and rotating by size. The
/// writer is codex-shim's (the shim writes the log of a running container), with the
/// engine's errors.
pub struct LogWriter(pub(crate) codex_shim::log::LogWriter);

/// The engine's error for one of codex-shim's.
pub(crate) fn from_shim(e: codex_shim::Error) -> Error {
    Error::Io {
        context: e.context,
        cause: e.cause,
    }
}

impl LogWriter {
    pub fn open(path: &Path, rotation: Rotation) -> Result<LogWriter> {
        codex_shim::log::LogWriter::open(path, rotation)
            .map(LogWriter)
            .map_err(from_shim)
    }

    /// Feeds bytes read from `stream` (0 = stdout, 1 = stderr).
    pub fn feed(&mut self, stream: usize, data: &[u8]) -> Result<()> {
        self.0.feed(stream, data).map_err(from_shim)
    }

    /// Writes out what is left of unterminated lines (at the end of the container).
    pub fn flush(&mut self) -> Result<()> {
        self.0.flush().map_err(from_shim)
    }
}

/// Every record of a container's log, oldest first (rotated files included).
pub fn read_all(path: &Path, max_files: u32) -> Result<Vec<LogLine>> {
    let mut files: Vec<PathBuf> = (1..max_files.max(1))
        .rev()
        .map(|i| PathBuf::from(format!("{}.{i}", path.display())))
        .collect();
    files.push(path.to_path_buf());
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for l in text.lines() {
            // A line cut by a crash mid-write is skipped, not fatal.
            if let Ok(rec) = serde_json::from_str::<LogLine>(l) {
                out.push(rec);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_per_stream_and_partial_lines_wait() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("container.log");
        let mut w = LogWriter::open(&p, Rotation::default()).unwrap();
        w.feed(0, b"hello\nwor").unwrap();
        w.feed(1, b"oops\n").unwrap();
        w.feed(0, b"ld\n").unwrap();
        w.feed(0, b"no newline").unwrap();
        w.flush().unwrap();
        let lines: Vec<(String, String)> = read_all(&p, 3)
            .unwrap()
            .into_iter()
            .map(|l| (l.stream, l.log))
            .collect();
        assert_eq!(
            lines,
            [
                ("stdout", "hello"),
                ("stderr", "oops"),
                ("stdout", "world"),
                ("stdout", "no newline")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn rotation_keeps_max_files_and_nothing_is_lost_within_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("container.log");
        let mut w = LogWriter::open(
            &p,
            Rotation {
                max_size: 300,
                max_files: 3,
            },
        )
        .unwrap();
        for i in 0..40 {
            w.feed(0, format!("line {i:02}\n").as_bytes()).unwrap();
        }
        w.flush().unwrap();
        assert!(
            p.exists()
                && dir.path().join("container.log.1").exists()
                && dir.path().join("container.log.2").exists()
        );
        assert!(!dir.path().join("container.log.3").exists());
        for f in ["container.log", "container.log.1", "container.log.2"] {
            assert!(
                std::fs::metadata(dir.path().join(f)).unwrap().len() <= 300,
                "{f}"
            );
        }
        let all = read_all(&p, 3).unwrap();
        let nums: Vec<u32> = all.iter().map(|l| l.log[5..].parse().unwrap()).collect();
        assert_eq!(nums.last(), Some(&39));
        assert!(
            nums.windows(2).all(|w| w[1] == w[0] + 1),
            "the kept lines are contiguous: {nums:?}"
        );
    }

    #[test]
    fn records_are_encoded_exactly_as_serde_json_encodes_a_log_line() {
        let mut texts: Vec<String> = (0u8..=255)
            .map(|b| String::from_utf8_lossy(&[b'a', b, b'z']).into_owned())
            .collect();
        texts.push("caf\u{e9} \u{1f600} \u{2028}\u{7f} \"q\" \\ / <>&".into());
        texts.push(String::from_utf8_lossy(b"bad \xff\xfe utf-8 \xe2\x82").into_owned());
        texts.push(String::new());
        for text in texts {
            for stream in ["stdout", "stderr"] {
                for partial in [false, true] {
                    let line = LogLine {
                        time: "2026-11-23T10:00:00.123456789Z".into(),
                        stream: stream.into(),
                        log: text.clone(),
                        partial,
                    };
                    let mut want = serde_json::to_vec(&line).unwrap();
                    want.push(b'\n');
                    let mut got = Vec::new();
                    if partial {
                        codex_shim::log::encode_partial_record(&line.time, stream, &text, &mut got);
                    } else {
                        codex_shim::log::encode_record(&line.time, stream, &text, &mut got);
                    }
                    assert_eq!(
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(&want)
                    );
                }
            }
        }
    }

    #[test]
    fn record_times_have_the_runtimes_format() {
        let shape = |s: &str| s.bytes().map(|b| b.is_ascii_digit()).collect::<Vec<_>>();
        // Read twice in a row, both clocks agree to the second (retried if a second
        // boundary fell between the reads).
        let agree = (0..3).any(|_| {
            let ours = codex_shim::log::now_rfc3339();
            let theirs = codex_runtime::state::now_rfc3339();
            assert_eq!(shape(&ours), shape(&theirs), "{ours} {theirs}");
            ours[..19] == theirs[..19]
        });
        assert!(agree);
    }

    #[test]
    fn overlong_lines_are_cut_into_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("container.log");
        let mut w = LogWriter::open(&p, Rotation::default()).unwrap();
        w.feed(0, &vec![b'x'; MAX_LINE * 2 + 5]).unwrap();
        w.flush().unwrap();
        let sizes: Vec<usize> = read_all(&p, 1)
            .unwrap()
            .iter()
            .map(|l| l.log.len())
            .collect();
        assert_eq!(sizes, [MAX_LINE, MAX_LINE, 5]);
    }
}
