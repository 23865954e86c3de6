//! Layer tarballs, both ways.
//!
//! [`unpack`] walks the tar entries itself (never `tar::Entry::unpack_in`): every path is
//! split into components, absolute paths and `..` are refused, and every entry is created
//! relative to a file descriptor of its parent directory, reached from the layer root one
//! component at a time with `O_NOFOLLOW | O_DIRECTORY` — so a symlink in the layer (or
//! anything but a real directory) can never be walked through, and nothing is written
//! outside the layer. OCI whiteouts become overlayfs whiteouts: `.wh.NAME` a 0:0 character
//! device `NAME`, `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.
//!
//! [`pack`] writes the *canonical* tar of a directory tree: entries in sorted depth-first
//! order, GNU headers with numeric ids only (no user or group names), second-resolution
//! mtimes, hard links by (dev, inode), overlay whiteouts turned back into `.wh.` entries,
//! and only the xattrs a layer carries (`user.*`, `security.capability`). The same tree
//! always gives the same bytes, so a directory and any tar (plain, gzip, zstd) of it give
//! the same digest; and `unpack` applies exactly what `pack` records, so packing an
//! unpacked layer reproduces it.

mod archive;
mod changes;
mod pack;
mod sys;
mod unpack;
mod upper;

pub(crate) use archive::{decoder, looks_like_tar, open_archive, Compression};
pub(crate) use changes::changes;
pub use changes::{Change, ChangeKind};
pub(crate) use pack::{pack, ExactReader};
pub(crate) use unpack::{unpack, unpack_limited};
pub(crate) use upper::{pack_upper, IdMap, IdRange, UpperOptions};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &std::ffi::CStr = c"trusted.overlay.opaque";

/// The xattrs a layer carries; everything else (security.selinux, ACLs, trusted.*) is
/// host-specific and dropped.
fn layer_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.") || name == b"security.capability"
}

/// Appends the layer xattrs among `names` (each named by `bytes`, read by `get`; `None`:
/// gone meanwhile) as one sorted PAX header before the entry that follows; nothing when
/// there are none. Names that are not UTF-8 cannot be PAX keys and are dropped.
fn append_layer_xattrs<W: std::io::Write, N>(
    tar: &mut tar::Builder<W>,
    names: &[N],
    bytes: impl Fn(&N) -> &[u8],
    mut get: impl FnMut(&N) -> std::io::Result<Option<Vec<u8>>>,
) -> std::io::Result<()> {
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    for name in names {
        let raw = bytes(name);
        if !layer_xattr(raw) {
            continue;
        }
        let Ok(key) = std::str::from_utf8(raw) else {
            continue;
        };
        let Some(value) = get(name)? else { continue };
        records.push((format!("SCHILY.xattr.{key}"), value));
    }
    if records.is_empty() {
        return Ok(());
    }
    records.sort();
    tar.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
}

#[cfg(test)]
mod xattr_tests {
    use super::append_layer_xattrs;

    /// Only the layer xattrs that still exist and have UTF-8 names become PAX records,
    /// sorted, on the entry that follows; no header at all when none is left.
    #[test]
    fn layer_xattrs_become_sorted_pax_records_of_the_next_entry() {
        let names: Vec<&[u8]> = vec![
            b"user.z",
            b"security.selinux",
            b"user.gone",
            b"security.capability",
            b"user.\xff",
            b"trusted.overlay.opaque",
            b"user.a",
        ];
        let mut tar = tar::Builder::new(Vec::new());
        append_layer_xattrs(
            &mut tar,
            &names,
            |n| n,
            |n| Ok((*n != b"user.gone").then(|| [b"v:".as_slice(), n].concat())),
        )
        .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, "f", std::io::empty()).unwrap();
        // Nothing to record: no header before the second entry.
        append_layer_xattrs(&mut tar, &names[1..2], |n| n, |_| Ok(Some(b"x".to_vec()))).unwrap();
        tar.append_data(&mut h, "g", std::io::empty()).unwrap();
        let bytes = tar.into_inner().unwrap();

        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let records: Vec<(String, Vec<u8>)> = match entry.pax_extensions().unwrap() {
                Some(exts) => exts
                    .map(|e| {
                        let e = e.unwrap();
                        (e.key().unwrap().to_string(), e.value_bytes().to_vec())
                    })
                    .collect(),
                None => Vec::new(),
            };
            seen.push((path, records));
        }
        let rec = |k: &str, v: &str| (format!("SCHILY.xattr.{k}"), v.as_bytes().to_vec());
        assert_eq!(
            seen,
            vec![
                (
                    "f".to_string(),
                    vec![
                        rec("security.capability", "v:security.capability"),
                        rec("user.a", "v:user.a"),
                        rec("user.z", "v:user.z"),
                    ]
                ),
                ("g".to_string(), vec![]),
            ]
        );
    }
}
