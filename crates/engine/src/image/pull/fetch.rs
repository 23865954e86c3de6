//! One blob's download, resumable: the bytes go to `<store>/partial/<hex>` (0600, under
//! an exclusive `flock` on that file, so two pulls of one blob take turns and the second
//! reuses the first's finished file, checked, instead of fetching it again), which an
//! interrupted pull leaves behind. The next pull asks for the rest with `Range: bytes=N-`
//! and appends when the registry answers 206 for exactly that range; anything else starts
//! over. Only when the whole file has the blob's size and sha256 is it renamed into the
//! pull's layout: a half blob is never used.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;
use sha2::{Digest, Sha256};

use super::client::{bad, check, Client};
use super::progress::{due, ProgressEvent, ProgressSink};
use crate::error::{Context, Error, Result};
use crate::image::fsutil::hex;
use crate::image::keylock;
use crate::trace;

/// Where a download starts, given what is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// Nothing usable: from byte 0.
    Fresh,
    /// Bytes `0..n` are there: ask for the rest.
    From(u64),
    /// The whole size is there: check it.
    Complete,
}

/// The start for `have` bytes on disk of a blob of `size`.
pub(crate) fn plan(have: u64, size: u64) -> Start {
    match have {
        0 => Start::Fresh,
        n if n == size => Start::Complete,
        n if n < size => Start::From(n),
        _ => Start::Fresh,
    }
}

/// What to do with the registry's answer to a GET from byte `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Write the body after byte `from`.
    Append,
    /// The body is the whole blob: write it from byte 0.
    Whole,
    /// Drop the partial file and ask again without a range.
    Retry,
}

/// Decides on a 2xx/416 answer (`content_range`: its `Content-Range` header).
pub(crate) fn on_reply(from: u64, status: u16, content_range: Option<&str>, size: u64) -> Reply {
    match status {
        206 if from > 0 => {
            // "bytes FROM-LAST/SIZE" (or "/*"): only exactly our range is appended.
            let ok = content_range
                .and_then(|c| c.trim().strip_prefix("bytes "))
                .and_then(|c| c.split_once('/'))
                .and_then(|(range, total)| {
                    let (a, b) = range.split_once('-')?;
                    let a: u64 = a.trim().parse().ok()?;
                    let b: u64 = b.trim().parse().ok()?;
                    let total_ok = total == "*" || total.parse::<u64>().ok() == Some(size);
                    Some(a == from && b + 1 == size && total_ok)
                })
                .unwrap_or(false);
            if ok {
                Reply::Append
            } else {
                Reply::Retry
            }
        }
        416 | 206 => Reply::Retry,
        _ => Reply::Whole,
    }
}

fn sha256_of(f: &mut File) -> io::Result<String> {
    f.rewind()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// A blob download.
pub(crate) struct Fetch<'a> {
    pub partial_dir: PathBuf,
    pub hex: &'a str,
    pub size: u64,
    pub progress: Option<&'a ProgressSink>,
}

impl Fetch<'_> {
    fn emit(&self, status: &str, current: u64) {
        ProgressSink::emit(
            self.progress,
            ProgressEvent::new(self.hex, status, current, self.size),
        );
    }

    /// Downloads (or finishes downloading) the blob and renames it to `dest`.
    pub(crate) fn run(&self, client: &mut Client, dest: &Path) -> Result<()> {
        let digest = format!("sha256:{}", self.hex);
        let path = self.partial_dir.join(self.hex);
        // Locked, reopened when the name no longer leads to the file we locked (the
        // pull we waited for renamed it into its layout, or a `prune` removed it).
        let (mut file, waited, previous) = keylock::lock_path(&path)?;
        if waited {
            trace::phase(&format!("pull: waited for blob {digest}"));
        }
        let have = file
            .metadata()
            .ctx(|| format!("reading {}", path.display()))?
            .len();
        if have == 0 {
            if let Some(prev) = previous {
                if self.reuse(prev, &mut file, &path, dest)? {
                    return Ok(());
                }
            }
        }
        let have = file
            .metadata()
            .ctx(|| format!("reading {}", path.display()))?
            .len();
        let mut start = plan(have, self.size);
        for _ in 0..2 {
            match start {
                Start::Complete => break,
                Start::From(n) => self.emit("Resuming", n),
                Start::Fresh => self.emit("Downloading", 0),
            }
            let from = match start {
                Start::From(n) => n,
                _ => 0,
            };
            trace::phase(&format!("pull: GET blob {digest} from byte {from}"));
            let blob = format!("blobs/{digest}");
            let url = client.url(&blob);
            let resp = client.send(&url, |agent, auth| {
                let mut req = agent.get(&url).header("Accept", "*/*");
                if let Some(a) = auth {
                    req = req.header("Authorization", a);
                }
                if from > 0 {
                    req = req.header("Range", format!("bytes={from}-"));
                }
                req.call()
            })?;
            let status = resp.status().as_u16();
            let reply = if status == 416 || (200..300).contains(&status) {
                let cr = resp
                    .headers()
                    .get("content-range")
                    .and_then(|h| h.to_str().ok());
                on_reply(from, status, cr, self.size)
            } else {
                check(&url, resp)?;
                return Err(bad(&url, format!("HTTP {status}")));
            };
            let at = match reply {
                Reply::Retry => {
                    file.set_len(0)
                        .ctx(|| format!("truncating {}", path.display()))?;
                    start = Start::Fresh;
                    continue;
                }
                Reply::Append => from,
                Reply::Whole => 0,
            };
            file.set_len(at)
                .ctx(|| format!("truncating {}", path.display()))?;
            file.seek(io::SeekFrom::Start(at))
                .ctx(|| format!("seeking {}", path.display()))?;
            let mut reader = resp
                .into_body()
                .into_with_config()
                .limit(self.size.saturating_sub(at).saturating_add(1))
                .reader();
            self.copy(&mut reader, &mut file, at, &digest)?;
            start = Start::Complete;
            break;
        }
        if start != Start::Complete {
            return Err(bad(&digest, "the registry would not serve the blob"));
        }
        self.emit("Verifying", self.size);
        let len = file
            .metadata()
            .ctx(|| format!("reading {}", path.display()))?
            .len();
        let got = sha256_of(&mut file).ctx(|| format!("reading {}", path.display()))?;
        if len != self.size || got != self.hex {
            // Useless: gone, so the next pull starts over.
            let _ = fs::remove_file(&path);
            return Err(Error::invalid(
                "digest",
                format!(
                    "blob {digest} from {}: {len} bytes with digest sha256:{got}, but {} bytes \
                     with sha256:{} were expected",
                    client.target.registry, self.size, self.hex
                ),
            ));
        }
        file.sync_all()
            .ctx(|| format!("writing {}", path.display()))?;
        fs::rename(&path, dest)
            .ctx(|| format!("moving {} to {}", path.display(), dest.display()))?;
        self.emit("Download complete", self.size);
        Ok(())
    }

    /// The file a pull we waited for downloaded (`prev`: the one we locked first, whose
    /// name has moved on since): when it is the whole blob, with its digest, it is
    /// linked to `dest` (or, when it has no name left, copied into our partial file for
    /// the usual check and rename) instead of downloading it again. Returns whether
    /// `dest` is done. A half or wrong file (a pull that failed, a pruned partial) is
    /// left alone: the download goes on as usual.
    fn reuse(
        &self,
        mut prev: Flock<File>,
        file: &mut Flock<File>,
        path: &Path,
        dest: &Path,
    ) -> Result<bool> {
        let digest = format!("sha256:{}", self.hex);
        let len = prev
            .metadata()
            .ctx(|| format!("reading the download of {digest}"))?
            .len();
        if len != self.size
            || sha256_of(&mut prev).ctx(|| format!("reading the download of {digest}"))? != self.hex
        {
            return Ok(false);
        }
        let proc_path = format!("/proc/self/fd/{}", prev.as_raw_fd());
        let linked = nix::unistd::linkat(
            nix::fcntl::AT_FDCWD,
            proc_path.as_str(),
            nix::fcntl::AT_FDCWD,
            dest,
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        );
        if linked.is_ok() {
            // Our empty partial file is useless: gone (whoever waits on it reopens).
            let _ = fs::remove_file(path);
            trace::phase(&format!("pull: reused blob {digest} another pull fetched"));
            self.emit("Download complete", self.size);
            return Ok(true);
        }
        // No name left (that pull is over and its work dir collected): copy it.
        prev.rewind()
            .ctx(|| format!("reading the download of {digest}"))?;
        io::copy(&mut *prev, &mut **file).ctx(|| format!("copying the download of {digest}"))?;
        trace::phase(&format!("pull: copied blob {digest} another pull fetched"));
        Ok(false)
    }

    /// The body into the file from byte `at`, with progress; more than the blob's size
    /// is an error (the file is truncated back to the blob's size first).
    fn copy(&self, reader: &mut dyn Read, file: &mut File, at: u64, digest: &str) -> Result<()> {
        let mut buf = vec![0u8; 1 << 16];
        let (mut current, mut last) = (at, at);
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = file.sync_data();
                    return Err(bad(
                        digest,
                        format!("download broke off at byte {current}: {e}"),
                    ));
                }
            };
            if current + n as u64 > self.size {
                let _ = file.set_len(0);
                return Err(bad(
                    digest,
                    format!("the registry sent more than its {} bytes", self.size),
                ));
            }
            file.write_all(&buf[..n])
                .ctx(|| format!("writing the download of {digest}"))?;
            current += n as u64;
            if due(last, current, self.size) {
                self.emit("Downloading", current);
                last = current;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_a_download_starts() {
        assert_eq!(plan(0, 100), Start::Fresh);
        assert_eq!(plan(40, 100), Start::From(40));
        assert_eq!(plan(100, 100), Start::Complete);
        assert_eq!(
            plan(101, 100),
            Start::Fresh,
            "longer than the blob: useless"
        );
        assert_eq!(plan(0, 0), Start::Fresh);
    }

    #[test]
    fn only_exactly_the_asked_range_is_appended() {
        assert_eq!(
            on_reply(40, 206, Some("bytes 40-99/100"), 100),
            Reply::Append
        );
        assert_eq!(on_reply(40, 206, Some("bytes 40-99/*"), 100), Reply::Append);
        // Another start, end or total: not what we asked for.
        assert_eq!(on_reply(40, 206, Some("bytes 0-99/100"), 100), Reply::Retry);
        assert_eq!(
            on_reply(40, 206, Some("bytes 40-98/100"), 100),
            Reply::Retry
        );
        assert_eq!(
            on_reply(40, 206, Some("bytes 40-99/200"), 100),
            Reply::Retry
        );
        assert_eq!(on_reply(40, 206, None, 100), Reply::Retry);
        assert_eq!(on_reply(40, 206, Some("garbage"), 100), Reply::Retry);
        // The range ignored: the whole blob comes, written from 0.
        assert_eq!(on_reply(40, 200, None, 100), Reply::Whole);
        assert_eq!(on_reply(0, 200, None, 100), Reply::Whole);
        // Not satisfiable, or a range we did not ask for.
        assert_eq!(on_reply(40, 416, None, 100), Reply::Retry);
        assert_eq!(on_reply(0, 206, Some("bytes 0-99/100"), 100), Reply::Retry);
    }
}
