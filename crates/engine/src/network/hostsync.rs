//! Keeping running containers' `/etc/hosts` current as peers join and leave (a start,
//! `network connect`/`disconnect`, `rm`): every container on the networks concerned gets
//! its hosts file rewritten from the records.
//!
//! The file is bind-mounted over the container's `/etc/hosts`, and a bind mount pins the
//! inode: a new file renamed over it on the host is never seen inside. So the rewrite is
//! in place, and made so that a reader inside never sees an empty or cut-off file: the
//! new text goes in with one `pwrite` at offset 0 and the file is never truncated below
//! the new length. When the new text is shorter than the old, the rest is filled with a
//! comment line (`#` and spaces) instead of truncating, so the file length never drops
//! under a concurrent reader. What remains is the kernel's own guarantee for one write
//! into the page cache against a concurrent read (no lock is shared with readers): a
//! reader racing the write may see part of it. For files of a few hundred bytes that is
//! one page copy.
//!
//! The host side opens the file with `O_NOFOLLOW` in the engine's own directory (the
//! container can write the file's content but cannot replace the directory entry) and
//! refuses anything but a regular file. A container that grew its own hosts file past
//! [`MAX_PAD`] gets it truncated first (it wrote the junk; no reader of ours relies on
//! it).
//!
//! Rewrites are serialised by `<root>/hosts.lock` and each computes the text after taking
//! it, so the last writer writes the latest state.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::files::{hosts_from, hosts_in, names_by_id, HOSTS_FILE};
use super::hostfiles::hosts_file;
use crate::error::{Context, Error, Result};
use crate::registry::Registry;

const LOCK_FILE: &str = "hosts.lock";

/// Past this much shrinkage the file is truncated rather than padded (see the module doc).
pub const MAX_PAD: u64 = 64 * 1024;

/// What to write over a file of `old_len` bytes so that it holds `text` and never gets
/// shorter than `text` while being written: `text` plus, when the old file was longer,
/// a comment line filling the difference. `None` when the difference is past
/// [`MAX_PAD`] (the caller truncates).
pub fn padded(text: &str, old_len: u64) -> Option<Vec<u8>> {
    let mut out = text.as_bytes().to_vec();
    let len = out.len() as u64;
    if old_len <= len {
        return Some(out);
    }
    let gap = old_len - len;
    if gap > MAX_PAD {
        return None;
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    let gap = old_len.saturating_sub(out.len() as u64) as usize;
    match gap {
        0 => {}
        1 => out.push(b'\n'),
        n => {
            out.push(b'#');
            out.extend(std::iter::repeat_n(b' ', n - 2));
            out.push(b'\n');
        }
    }
    Some(out)
}

/// Writes `text` over the file at `path` in place (see the module doc). A missing file
/// is not an error (`false`): the container has none of its own (`host`, `strict`) or
/// is being removed.
pub fn write_in_place(path: &Path, text: &str) -> Result<bool> {
    let file = match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(Error::Io {
                context: format!("opening {}", path.display()),
                cause: e,
            })
        }
    };
    let meta = file
        .metadata()
        .ctx(|| format!("reading {}", path.display()))?;
    if !meta.file_type().is_file() {
        return Err(Error::invalid(
            "hosts",
            format!("{} is not a regular file", path.display()),
        ));
    }
    let data = match padded(text, meta.len()) {
        Some(d) => d,
        None => {
            file.set_len(text.len() as u64)
                .ctx(|| format!("truncating {}", path.display()))?;
            text.as_bytes().to_vec()
        }
    };
    file.write_all_at(&data, 0)
        .ctx(|| format!("writing {}", path.display()))?;
    Ok(true)
}

/// Rewrites the hosts file of every container on any of `networks` (by name), except
/// `skip`, from the records as they are after taking the lock. Returns how many files
/// were written. A container whose record or file cannot be read is skipped: its next
/// start writes the file anew, and one broken container must not stop the others'.
pub fn refresh(registry: &Registry, networks: &BTreeSet<String>, skip: Option<&str>) -> usize {
    if networks.is_empty() {
        return 0;
    }
    let lock_path = registry.root().join(LOCK_FILE);
    let Ok(_lock) = codex_sys::lock::FileLock::exclusive(&lock_path) else {
        return 0;
    };
    let Ok(nets) = super::list(registry) else {
        return 0;
    };
    let ids: BTreeSet<String> = nets
        .iter()
        .filter(|n| networks.contains(&n.name))
        .flat_map(|n| n.endpoints.keys().cloned())
        .filter(|id| Some(id.as_str()) != skip)
        .collect();
    // Read once for all of them: a start on a network of N containers rewrites N files,
    // each from one read of its own record.
    let Ok(names) = names_by_id(registry) else {
        return 0;
    };
    ids.iter()
        .filter(|id| rewrite_from(registry, id, &nets, &names).unwrap_or(false))
        .count()
}

fn rewrite_from(
    registry: &Registry,
    id: &str,
    nets: &[super::NetworkRecord],
    names: &std::collections::BTreeMap<String, String>,
) -> Result<bool> {
    let path = registry.container_dir(id)?.join(HOSTS_FILE);
    if !path.exists() {
        return Ok(false);
    }
    let text = hosts_file(&hosts_from(registry, id, nets, names)?);
    write_in_place(&path, &text)
}

/// Rewrites container `id`'s hosts file from the records (under the caller's lock, or
/// alone). `false` when it has no file.
pub fn rewrite(registry: &Registry, id: &str) -> Result<bool> {
    let path = registry.container_dir(id)?.join(HOSTS_FILE);
    if !path.exists() {
        return Ok(false);
    }
    let text = hosts_file(&hosts_in(registry, id)?);
    write_in_place(&path, &text)
}

/// [`rewrite`] under the hosts lock.
pub fn rewrite_locked(registry: &Registry, id: &str) -> Result<bool> {
    let lock_path = registry.root().join(LOCK_FILE);
    let _lock = codex_sys::lock::FileLock::exclusive(&lock_path)
        .ctx(|| format!("locking {}", lock_path.display()))?;
    rewrite(registry, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorter_text_is_padded_to_the_old_length_with_a_comment() {
        let text = "127.0.0.1\tlocalhost\n";
        for old in 0..(text.len() as u64 + 40) {
            let out = padded(text, old).unwrap();
            assert_eq!(out.len() as u64, old.max(text.len() as u64), "old {old}");
            assert!(out.starts_with(text.as_bytes()));
            let rest = std::str::from_utf8(&out[text.len()..]).unwrap();
            // Whatever fills the gap is blank or a comment: no name resolves from it.
            assert!(
                rest.lines()
                    .all(|l| l.trim().is_empty() || l.starts_with('#')),
                "{rest:?}"
            );
        }
        // A text without a final newline gets one before the filler.
        let out = padded("a b", 10).unwrap();
        assert_eq!(out, b"a b\n#    \n");
        assert!(padded("x\n", MAX_PAD + 3).is_none());
        assert_eq!(
            padded("x\n", MAX_PAD + 2).unwrap().len() as u64,
            MAX_PAD + 2
        );
    }

    #[test]
    fn in_place_keeps_the_inode_and_refuses_links_and_non_files() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        std::fs::write(&p, "10.0.0.9\told-peer-with-a-long-name\n").unwrap();
        let ino = std::fs::metadata(&p).unwrap().ino();
        assert!(write_in_place(&p, "10.0.0.2\tweb\n").unwrap());
        let now = std::fs::read_to_string(&p).unwrap();
        assert!(now.starts_with("10.0.0.2\tweb\n"), "{now:?}");
        assert!(!now.contains("old-peer"), "{now:?}");
        assert_eq!(std::fs::metadata(&p).unwrap().ino(), ino);
        // Longer again: the whole text, nothing of the filler.
        let long = "10.0.0.2\tweb\n10.0.0.3\tdb alias-one alias-two alias-three\n";
        write_in_place(&p, long).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), long);
        // Grown by the container past MAX_PAD: truncated to the text.
        std::fs::write(&p, vec![b'x'; (MAX_PAD * 2) as usize]).unwrap();
        write_in_place(&p, "a\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a\n");
        // Missing: nothing to do.
        assert!(!write_in_place(&dir.path().join("none"), "a\n").unwrap());
        // A symlink is not followed (positive control: the target is writable).
        let target = dir.path().join("target");
        std::fs::write(&target, "keep\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(write_in_place(&target, "ok\n").unwrap());
        std::fs::write(&target, "keep\n").unwrap();
        assert!(write_in_place(&link, "evil\n").is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
        // A directory is refused.
        let d = dir.path().join("d");
        std::fs::create_dir(&d).unwrap();
        assert!(write_in_place(&d, "x\n").is_err());
    }
}
