//! File primitives of the registry: atomic writes, versioned reads, directories with the
//! right modes, randomness, and the mount check that keeps a removal from reaching into a
//! mounted filesystem.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::{Context, Error, Result};

/// Marks temp files of [`write_atomic`]: `.<file>.tmp-<random>`.
pub(crate) const TMP_MARK: &str = codex_sys::TMP_MARK;

/// Replaces `path` with `data` (mode 0600) so that a reader sees the old or the new file,
/// never a mix (codex_sys::atomic: random O_EXCL|O_NOFOLLOW temp name, fsync, rename,
/// fsync the directory).
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    codex_sys::write_atomic(path, data).ctx(|| format!("writing {}", path.display()))
}

/// [`write_atomic`] of a file that exists already (a container's record): its data is
/// synced, its directory is not. A host crash may undo the rename and leave the previous
/// record, complete: as if the crash came a moment earlier. After a reboot the full
/// reconcile looks at every record that says a container runs (see `intent`).
pub(crate) fn replace_atomic(path: &Path, data: &[u8]) -> Result<()> {
    codex_sys::AtomicFile::new(path)
        .without_dir_sync()
        .write(data)
        .ctx(|| format!("writing {}", path.display()))
}

/// [`write_atomic`] without any fsync: for the files of an ephemeral container
/// (`run --rm`), which a host crash may lose (see `ContainerRecord::ephemeral`).
pub(crate) fn write_unsynced(path: &Path, data: &[u8]) -> Result<()> {
    codex_sys::AtomicFile::new(path)
        .not_durable()
        .write(data)
        .ctx(|| format!("writing {}", path.display()))
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Serializes a persisted file: pretty JSON with a final newline (people read these).
pub(crate) fn to_json<T: serde::Serialize>(value: &T, path: &Path) -> Result<Vec<u8>> {
    let mut data = serde_json::to_vec_pretty(value).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        reason: format!("cannot serialize: {e}"),
    })?;
    data.push(b'\n');
    Ok(data)
}

/// Reads a versioned JSON file written by this or an earlier version. `Ok(None)` when the
/// file does not exist; `Error::Corrupt` naming the file when it is not JSON, has no
/// `version`, comes from a newer codex-ctr, or does not fit the type (with the JSON path
/// of the bad field).
pub(crate) fn read_versioned<T: DeserializeOwned>(
    path: &Path,
    supported: u32,
) -> Result<Option<T>> {
    // Through `take`, a plain read loop: `File::read_to_end` first asks the size (statx)
    // and position (lseek) of a file that fits the first read anyway; `ps` reads a
    // thousand of them.
    let mut text = Vec::with_capacity(4096);
    match File::open(path).and_then(|f| f.take(u64::MAX).read_to_end(&mut text)) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
    }
    parse_versioned(&text, supported)
        .map(Some)
        .map_err(|reason| Error::Corrupt {
            path: path.to_path_buf(),
            reason,
        })
}

/// Parses a versioned document; the error is the reason it is corrupt.
pub fn parse_versioned<T: DeserializeOwned>(
    text: &[u8],
    supported: u32,
) -> std::result::Result<T, String> {
    // The common case, a good file, parsed straight into `T`: the version alone first
    // (no tree is built), then the document. Anything else takes the path below, which
    // builds a JSON tree to say exactly what is wrong, and decides.
    #[derive(serde::Deserialize)]
    struct Header {
        version: Option<u64>,
    }
    if let Ok(Header {
        version: Some(version),
    }) = serde_json::from_slice(text)
    {
        if (1..=u64::from(supported)).contains(&version) {
            if let Ok(parsed) = serde_json::from_slice(text) {
                return Ok(parsed);
            }
        }
    }
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let version = match value.get("version") {
        None => return Err("no \"version\" field".into()),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("\"version\" is {v}, not a positive integer"))?,
    };
    if version == 0 {
        return Err("\"version\" is 0; versions start at 1".into());
    }
    if version > u64::from(supported) {
        return Err(format!(
            "version {version} was written by a newer codex-ctr (this one reads up to version {supported})"
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let at = e.path().to_string();
        if at == "." {
            e.into_inner().to_string()
        } else {
            format!("{at}: {}", e.into_inner())
        }
    })
}

/// Creates `dir` with exactly `mode` (the umask does not apply). `Ok(false)` if it existed.
pub(crate) fn create_dir(dir: &Path, mode: u32) -> std::io::Result<bool> {
    match DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates `dir` and its missing parents with `mode`; leaves existing ones alone.
pub(crate) fn create_dir_all(dir: &Path, mode: u32) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new().mode(mode).recursive(true).create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

/// Makes `dir` (creating it if missing) a root-owned directory of group `gid` with exactly
/// `mode`, fixing one an earlier version made with other modes. A symlink in its place is
/// refused, never followed: the owner and mode are set through the opened directory.
pub fn ensure_shared_dir(dir: &Path, mode: u32, gid: u32) -> std::io::Result<()> {
    open_shared_dir(dir, mode, gid).map(drop)
}

/// [`ensure_shared_dir`] of an engine root, marked so that the filesystem places each
/// store made in it (`containers/`, `names/`, `runtime/`, the layers...) as a tree of its
/// own ([`codex_sys::placement`]), away from whatever else churns beside the root.
pub(crate) fn ensure_root_dir(root: &Path, mode: u32, gid: u32) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let fd = open_shared_dir(root, mode, gid)?;
    // A hint: a filesystem that refuses it costs only the placement.
    let _ = codex_sys::placement::spread_children(fd.as_fd());
    Ok(())
}

/// [`ensure_shared_dir`], returning the directory open.
pub(crate) fn open_shared_dir(dir: &Path, mode: u32, gid: u32) -> std::io::Result<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    match DirBuilder::new().mode(mode & 0o700).create(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let fd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)?;
    let md = fd.metadata()?;
    if md.uid() != 0 || md.gid() != gid {
        // SAFETY: fchown on a directory fd we own.
        if unsafe { libc::fchown(fd.as_raw_fd(), 0, gid) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    if md.mode() & 0o7777 != mode || md.gid() != gid {
        fd.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    Ok(fd)
}

/// `N` bytes from the kernel's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .ctx(|| "reading /dev/urandom")?;
    Ok(buf)
}

/// The mount points of this mount namespace, from /proc/self/mountinfo.
pub(crate) fn mount_points() -> Result<Vec<PathBuf>> {
    let text = fs::read("/proc/self/mountinfo").ctx(|| "reading /proc/self/mountinfo")?;
    Ok(text
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| PathBuf::from(OsString::from_vec(unescape_octal(field))))
        .collect())
}

/// The mount points at or below `dir` (a canonical path).
pub(crate) fn mounts_under(mounts: &[PathBuf], dir: &Path) -> Vec<PathBuf> {
    mounts
        .iter()
        .filter(|m| m.starts_with(dir))
        .cloned()
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field.get(i + 1..i + 4).filter(|d| {
            field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3'
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// Removes a directory tree without following symlinks; a tree that is already gone (or
/// being removed by someone else) is fine.
pub(crate) fn remove_tree(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(e).ctx(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_octal(br"/a\040b\134c\011"), b"/a b\\c\t".to_vec());
        assert_eq!(unescape_octal(br"/plain\9"), br"/plain\9".to_vec());
    }

    /// The direct parse and the tree's agree: a good file gives the same value either
    /// way, and what the direct parse refuses but the tree accepts (a repeated key, whose
    /// last value counts, as before) still parses; a bad field is still named by path.
    #[test]
    fn a_file_parses_the_same_on_the_direct_path_and_through_the_tree() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Doc {
            version: u32,
            name: String,
        }
        let good = br#"{"version": 1, "name": "a", "extra": [1, 2]}"#;
        assert_eq!(
            parse_versioned::<Doc>(good, 1).unwrap(),
            Doc {
                version: 1,
                name: "a".into()
            }
        );
        let repeated = br#"{"version": 1, "name": "a", "name": "b"}"#;
        assert_eq!(parse_versioned::<Doc>(repeated, 1).unwrap().name, "b");
        let bad = br#"{"version": 1, "name": 5}"#;
        let err = parse_versioned::<Doc>(bad, 1).unwrap_err();
        assert!(err.starts_with("name: "), "{err}");
    }

    #[test]
    fn newer_version_is_refused_with_the_versions() {
        let err = parse_versioned::<serde_json::Value>(br#"{"version": 7}"#, 1).unwrap_err();
        assert!(
            err.contains("version 7") && err.contains("up to version 1"),
            "{err}"
        );
        let err = parse_versioned::<serde_json::Value>(br#"{"names": {}}"#, 1).unwrap_err();
        assert!(err.contains("version"), "{err}");
    }
}
