//! Opening a source archive: the compression, detected from its first bytes.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{Context, Error, Result};

/// The compression of a tar file, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Opens a tar, tar.gz or tar.zst file (detected by magic bytes, not by name) as a stream
/// of uncompressed tar.
pub(crate) fn open_archive(path: &Path) -> Result<(Box<dyn Read>, Compression)> {
    let mut file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
        }
    }
    file.seek(SeekFrom::Start(0))
        .ctx(|| format!("reading {}", path.display()))?;
    decoder(file, &head[..n], path)
}

/// Wraps `input` (positioned at its start; `head` is a copy of its first up to 512 bytes)
/// in the decompressor its magic bytes name. `source` names the archive in errors.
pub(crate) fn decoder<R: Read + 'static>(
    input: R,
    head: &[u8],
    source: &Path,
) -> Result<(Box<dyn Read>, Compression)> {
    let bad = |why: &str| Error::invalid("source", format!("{}: {why}", source.display()));
    let kind = if head.is_empty() {
        return Err(bad("is an empty file, not a tar archive"));
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(bad(
            "is xz-compressed; only plain, gzip and zstd tar archives are supported",
        ));
    } else if head.starts_with(b"BZh") {
        return Err(bad(
            "is bzip2-compressed; only plain, gzip and zstd tar archives are supported",
        ));
    } else if looks_like_tar(head) {
        Compression::None
    } else {
        return Err(bad("is not a tar archive (plain, gzip or zstd)"));
    };
    let reader: Box<dyn Read> = match kind {
        Compression::None => Box::new(BufReader::with_capacity(1 << 16, input)),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(input))),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(input)
                .ctx(|| format!("starting zstd decoder for {}", source.display()))?,
        ),
    };
    Ok((reader, kind))
}

pub(crate) fn looks_like_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    if &head[257..262] == b"ustar" || head.iter().all(|&b| b == 0) {
        return true;
    }
    // A v7 header has no magic: trust a valid checksum.
    let stored = head[148..156]
        .iter()
        .skip_while(|&&b| b == b' ' || b == 0)
        .take_while(|&&b| (b'0'..=b'7').contains(&b))
        .fold(0u32, |a, &b| a * 8 + u32::from(b - b'0'));
    let sum: u32 = head
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(b)
            }
        })
        .sum();
    stored == sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use tar::Header;

    #[test]
    fn tar_detection() {
        let mut h = Header::new_gnu();
        h.set_path("a").unwrap();
        h.set_size(0);
        h.set_cksum();
        assert!(looks_like_tar(h.as_bytes()));
        let mut v7 = Header::new_old();
        v7.set_path("a").unwrap();
        v7.set_size(0);
        v7.set_cksum();
        assert!(looks_like_tar(v7.as_bytes()));
        assert!(!looks_like_tar(&[b'x'; 512]));
        assert!(!looks_like_tar(b"short"));
    }
}
