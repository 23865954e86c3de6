//! The container log: JSON lines `{"time","stream","log"}` in `container.log`, rotated
//! by size into `container.log.1` ... `container.log.N` (N = max files - 1).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Result};

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// RFC 3339 with nanoseconds.
    pub time: String,
    /// "stdout" or "stderr".
    pub stream: String,
    /// The text, without its trailing newline.
    pub log: String,
}

#[derive(Debug, Clone, Copy)]
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

/// Appends lines to a container's log, splitting each stream into lines (a partial
/// line waits for its end, up to 16 KiB) and rotating by size.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
    partial: [Vec<u8>; 2],
}

const MAX_LINE: usize = 16 * 1024;

impl LogWriter {
    pub fn open(path: &Path, rotation: Rotation) -> Result<LogWriter> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
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
        })
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
        self.partial[stream] = rest;
        Ok(())
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

    fn write_line(&mut self, stream: usize, text: &[u8]) -> Result<()> {
        let line = LogLine {
            time: codex_runtime::state::now_rfc3339(),
            stream: if stream == 0 { "stdout" } else { "stderr" }.into(),
            log: String::from_utf8_lossy(text).into_owned(),
        };
        let mut out = serde_json::to_vec(&line).unwrap_or_default();
        out.push(b'\n');
        if self.size > 0 && self.size + out.len() as u64 > self.rotation.max_size {
            self.rotate()?;
        }
        self.file
            .write_all(&out)
            .ctx(|| format!("writing {}", self.path.display()))?;
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
            .open(&self.path)
            .ctx(|| format!("opening {}", self.path.display()))?;
        self.size = 0;
        Ok(())
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
