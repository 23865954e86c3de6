//! Content checked on arrival: a blob is copied while it is hashed and refused unless its
//! digest (and size) is what the referrer said; a layer blob is unpacked while its
//! uncompressed stream is hashed and refused unless that is the config's diff_id. Both
//! write into a work dir only, so a refusal leaves nothing in the store.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::fsutil::hex;
use super::layer;
use super::new_file;
use crate::error::{Context, Error, Result};

/// The default bound on what one layer (or a loaded archive) may unpack to: large enough
/// for any real image layer, small enough that a decompression bomb cannot fill a disk.
pub const DEFAULT_MAX_UNPACKED: u64 = 32 << 30;

/// What a blob must be: its sha256 hex and, when known, its size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expect<'a> {
    pub hex: &'a str,
    pub size: Option<u64>,
}

/// A reader that hashes what it reads and fails (not a short read) past `max` bytes.
pub(crate) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
    max: u64,
    what: String,
}

impl<R: Read> Hashing<R> {
    pub(crate) fn new(inner: R, max: u64, what: impl Into<String>) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
            max,
            what: what.into(),
        }
    }

    /// Reads the rest (a tar's trailing blocks count in its digest) and returns
    /// (hex, length).
    pub(crate) fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((hex(&self.hasher.finalize()), self.len))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.len += n as u64;
        if self.len > self.max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is larger than {} bytes (the size limit)",
                    self.what, self.max
                ),
            ));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn mismatch(what: &str, field: &str, got: &str, want: &str) -> Error {
    Error::invalid(
        "digest",
        format!("{what}: content has {field} {got}, but {want} was expected (corrupt or tampered)"),
    )
}

/// Copies `src` into the new file `dest` (fsynced), checking it against `expect`.
/// Returns (hex, size).
pub(crate) fn copy_blob(
    src: &mut dyn Read,
    dest: &Path,
    expect: Option<Expect<'_>>,
    max: u64,
    what: &str,
) -> Result<(String, u64)> {
    let mut out = new_file(dest)?;
    let mut r = Hashing::new(src, max, what);
    io::copy(&mut r, &mut out)
        .and_then(|_| out.flush())
        .and_then(|_| out.sync_all())
        .map_err(|e| io_or_invalid(what, "copying", e))?;
    let (got, len) = r.finish().map_err(|e| io_or_invalid(what, "reading", e))?;
    if let Some(x) = expect {
        if got != x.hex {
            return Err(mismatch(
                what,
                "digest",
                &format!("sha256:{got}"),
                &format!("sha256:{}", x.hex),
            ));
        }
        if let Some(size) = x.size.filter(|&s| s != len) {
            return Err(Error::invalid(
                "size",
                format!("{what}: blob is {len} bytes, but its descriptor says {size}"),
            ));
        }
    }
    Ok((got, len))
}

/// Reads a small JSON blob (a manifest, index or config) whole, checked against `expect`.
pub(crate) fn read_small(
    src: &mut dyn Read,
    expect: Option<Expect<'_>>,
    what: &str,
) -> Result<Vec<u8>> {
    let mut r = Hashing::new(src, super::manifest::JSON_MAX, what);
    let mut data = Vec::new();
    r.read_to_end(&mut data)
        .map_err(|e| io_or_invalid(what, "reading", e))?;
    let (got, len) = r.finish().map_err(|e| io_or_invalid(what, "reading", e))?;
    if let Some(x) = expect {
        if got != x.hex {
            return Err(mismatch(
                what,
                "digest",
                &format!("sha256:{got}"),
                &format!("sha256:{}", x.hex),
            ));
        }
        if let Some(size) = x.size.filter(|&s| s != len) {
            return Err(Error::invalid(
                "size",
                format!("{what}: blob is {len} bytes, but its descriptor says {size}"),
            ));
        }
    }
    Ok(data)
}

/// A size-limit or corrupt-stream error is the input's fault (`Invalid`); anything else
/// is I/O.
fn io_or_invalid(what: &str, doing: &str, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof {
        Error::invalid("source", format!("{what}: {e}"))
    } else {
        Error::Io {
            context: format!("{doing} {what}"),
            cause: e,
        }
    }
}

/// Unpacks the layer blob at `blob` (plain, gzip or zstd tar: by its bytes) into `dest`
/// (an existing empty directory), refusing it unless its uncompressed stream has the
/// sha256 `diff_hex` and stays within `max` bytes. Returns the compression's name and the
/// uncompressed size.
pub(crate) fn unpack_layer(
    blob: &Path,
    diff_hex: &str,
    dest: &Path,
    max: u64,
    what: &str,
) -> Result<(&'static str, u64)> {
    let mut file = File::open(blob).ctx(|| format!("opening {}", blob.display()))?;
    let mut head = [0u8; 512];
    let n = read_head(&mut file, &mut head).ctx(|| format!("reading {}", blob.display()))?;
    let file = File::open(blob).ctx(|| format!("opening {}", blob.display()))?;
    let source = Path::new(what);
    let (reader, kind) =
        layer::decoder(BufReader::with_capacity(1 << 16, file), &head[..n], source)?;
    let mut hashing = Hashing::new(reader, max, what);
    layer::unpack_limited(&mut hashing, dest, source, max)?;
    let (got, len) = hashing
        .finish()
        .map_err(|e| io_or_invalid(what, "reading", e))?;
    if got != diff_hex {
        return Err(mismatch(
            what,
            "diff_id",
            &format!("sha256:{got}"),
            &format!("sha256:{diff_hex} (the image config's rootfs.diff_ids)"),
        ));
    }
    let name = match kind {
        layer::Compression::None => "tar",
        layer::Compression::Gzip => "gzip",
        layer::Compression::Zstd => "zstd",
    };
    Ok((name, len))
}

/// The compression of a blob by its first bytes, without unpacking it.
pub(crate) fn compression_of(blob: &Path) -> Result<&'static str> {
    let mut file = File::open(blob).ctx(|| format!("opening {}", blob.display()))?;
    let mut head = [0u8; 512];
    let n = read_head(&mut file, &mut head).ctx(|| format!("reading {}", blob.display()))?;
    let (_, kind) = layer::decoder(io::empty(), &head[..n], blob)?;
    Ok(match kind {
        layer::Compression::None => "tar",
        layer::Compression::Gzip => "gzip",
        layer::Compression::Zstd => "zstd",
    })
}

fn read_head(file: &mut File, head: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
