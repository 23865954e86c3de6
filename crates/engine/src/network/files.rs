//! A container's `/etc/hosts` and `/etc/resolv.conf` on the host: files in its directory,
//! bind-mounted over the image's own. The bundle names them at create; their content is
//! written again before every start, so a start sees the peers and host nameservers of
//! that moment. (Rewriting them while a container runs, as peers join and leave, is for
//! the bridge wiring: a bind mount pins the inode, so that rewrite must be in place.)

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::config::ContainerConfig;
use crate::error::{Context, Error, Result};
use crate::registry::Registry;

use super::hostfiles::{host_resolv_conf_path, hosts_file, resolv_conf, Hosts};
use super::peers::hosts_for;

/// The files, in the container's directory.
pub const HOSTS_FILE: &str = "hosts";
pub const RESOLV_FILE: &str = "resolv.conf";

/// Readable inside the container by any user (no secrets in them); written as root.
const FILE_MODE: u32 = 0o644;

/// Adds the binds of the two files to `spec`'s mounts (`dir`: the container's directory).
pub fn add_mounts(spec: &mut Value, dir: &Path) {
    let binds = [
        ("/etc/hosts", HOSTS_FILE),
        ("/etc/resolv.conf", RESOLV_FILE),
    ]
    .map(|(dest, file)| {
        json!({"destination": dest, "type": "bind", "source": dir.join(file),
                   "options": ["rbind", "rprivate", "nosuid", "nodev", "noexec"]})
    });
    match spec["mounts"].as_array_mut() {
        Some(m) => m.extend(binds),
        None => spec["mounts"] = Value::Array(binds.to_vec()),
    }
}

/// What container `id`'s hosts file says now, from the registry's records.
pub fn hosts_in(registry: &Registry, id: &str) -> Result<Hosts> {
    let networks = super::list(registry)?;
    let names = peer_names(registry, id, &networks);
    hosts_from(registry, id, &networks, &names)
}

/// The names of `id`'s peers on `networks`: one record read each, not a listing of every
/// container (a container on no network, or alone on one, costs the same among 1 or 1000).
fn peer_names(
    registry: &Registry,
    id: &str,
    networks: &[super::NetworkRecord],
) -> BTreeMap<String, String> {
    networks
        .iter()
        .filter(|n| n.endpoints.contains_key(id))
        .flat_map(|n| n.endpoints.keys())
        .filter_map(|peer| Some((peer.clone(), registry.name_of(peer).ok()??)))
        .collect()
}

/// Container names by id, from `names/` (O(N): one `readlink` per container).
pub fn names_by_id(registry: &Registry) -> Result<BTreeMap<String, String>> {
    Ok(registry
        .container_names()?
        .into_iter()
        .map(|(name, id)| (id, name))
        .collect())
}

/// [`hosts_in`] over records the caller read once for many containers.
pub fn hosts_from(
    registry: &Registry,
    id: &str,
    networks: &[super::NetworkRecord],
    names: &BTreeMap<String, String>,
) -> Result<Hosts> {
    let rec = registry.get(id)?;
    let cfg: ContainerConfig = serde_json::from_value(rec.config.clone())
        .map_err(|e| Error::invalid("config", e.to_string()))?;
    hosts_of(networks, names, &rec.id, &rec.name, &cfg)
}

fn hosts_of(
    networks: &[super::NetworkRecord],
    names: &BTreeMap<String, String>,
    id: &str,
    name: &str,
    cfg: &ContainerConfig,
) -> Result<Hosts> {
    let hostname = cfg
        .hostname
        .clone()
        .unwrap_or_else(|| id.chars().take(12).collect());
    hosts_for(networks, names, id, name, &hostname, &cfg.add_hosts)
}

/// Its resolv.conf: `--dns`, else the host's usable nameservers.
pub fn resolv_conf_for(cfg: &ContainerConfig) -> String {
    let etc = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let host = match host_resolv_conf_path(&etc) {
        // Read once: the create and every start come here.
        "/etc/resolv.conf" => etc,
        upstream => std::fs::read_to_string(upstream).unwrap_or(etc),
    };
    resolv_conf(&host, &cfg.dns)
}

/// Writes both files of container `rec` (made with `cfg`) into `dir` (atomically;
/// before its start). A file that already says the same (what its create wrote, a
/// restart's) is left as it is.
pub fn write_files(
    registry: &Registry,
    rec: &crate::registry::ContainerRecord,
    cfg: &ContainerConfig,
    dir: &Path,
) -> Result<()> {
    let networks = super::list(registry)?;
    let names = peer_names(registry, &rec.id, &networks);
    let hosts = hosts_file(&hosts_of(&networks, &names, &rec.id, &rec.name, cfg)?);
    write(&dir.join(HOSTS_FILE), hosts.as_bytes())?;
    write(&dir.join(RESOLV_FILE), resolv_conf_for(cfg).as_bytes())
}

/// Both files as the container's create sees them (`index`: the index its create is
/// changing, with the container's own addresses): what its start most often writes
/// again, which it then skips.
pub fn write_at_create(
    registry: &Registry,
    index: &crate::registry::Index,
    rec: &crate::registry::ContainerRecord,
    cfg: &ContainerConfig,
    dir: &Path,
) -> Result<()> {
    let networks: Vec<_> = super::records_in(registry, index)?.into_values().collect();
    let names = peer_names(registry, &rec.id, &networks);
    let hosts = hosts_file(&hosts_of(&networks, &names, &rec.id, &rec.name, cfg)?);
    write_new(&dir.join(HOSTS_FILE), hosts.as_bytes())?;
    write_new(&dir.join(RESOLV_FILE), resolv_conf_for(cfg).as_bytes())
}

/// A create's file, in the container's directory that nobody reads before the create
/// commits it: written in place, not synced (as [`write`], for the same reasons).
fn write_new(path: &Path, data: &[u8]) -> Result<()> {
    codex_sys::AtomicFile::new(path)
        .mode(FILE_MODE)
        .not_durable()
        .fresh()
        .write(data)
        .ctx(|| format!("writing {}", path.display()))
}

/// Whether `path` is a regular file holding exactly `data` (a symlink is not followed).
fn content_is(path: &Path, data: &[u8]) -> bool {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    else {
        return false;
    };
    let mut old = Vec::with_capacity(data.len() + 1);
    let is_file = f.metadata().is_ok_and(|m| m.is_file());
    // One byte more than `data`: a longer file is read far enough to differ.
    is_file
        && f.by_ref()
            .take(data.len() as u64 + 1)
            .read_to_end(&mut old)
            .is_ok()
        && old == data
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    // The same content already: no new file (on a disk mounted `discard` without a
    // journal, every replaced file's block is a synchronous discard).
    if content_is(path, data) {
        return Ok(());
    }
    // Not synced: every start writes both files before the container sees them, and
    // the create's directory entries are made durable by the record's write that
    // commits the create (it syncs the container's directory). Four fsyncs less on the
    // start path, two on create.
    codex_sys::AtomicFile::new(path)
        .mode(FILE_MODE)
        .not_durable()
        .write(data)
        .ctx(|| format!("writing {}", path.display()))
}

/// Before a start, once the rootfs is mounted (`dir`: the container's directory): the
/// mount points of the binds for a `strict` container (see [`ensure_mount_points`]).
pub fn prepare_rootfs(cfg: &ContainerConfig, dir: &Path) -> Result<()> {
    if cfg.isolation == crate::config::Isolation::Strict && dir.join(HOSTS_FILE).exists() {
        ensure_mount_points(&dir.join(crate::engine::ROOTFS_DIR))?;
    }
    Ok(())
}

/// Makes empty `/etc/hosts` and `/etc/resolv.conf` in the mounted rootfs when the image
/// has none, as mount points for the binds. The runtime would make them itself, as the
/// container's root; a `strict` container's root cannot (its rootfs belongs to the host's
/// root, which its user namespace does not map), so the engine does it first, as the
/// host's root, in the container's own upper layer. Nothing is followed: an `/etc` that
/// is a symlink is left to the runtime (which resolves it inside the rootfs), and an
/// existing entry of any kind is left as it is.
pub fn ensure_mount_points(rootfs: &Path) -> Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{open, openat, OFlag};
    use nix::sys::stat::{mkdirat, Mode};
    let ctx = |what: &str, e: Errno| Error::Io {
        context: format!("{what} in {}", rootfs.display()),
        cause: e.into(),
    };
    let dir_flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    let root = open(rootfs, dir_flags, Mode::empty()).map_err(|e| ctx("opening /", e))?;
    let etc = match openat(&root, "etc", dir_flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => {
            match mkdirat(&root, "etc", Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(ctx("making /etc", e)),
            }
            openat(&root, "etc", dir_flags, Mode::empty()).map_err(|e| ctx("opening /etc", e))?
        }
        // A symlink or not a directory: the runtime's business.
        Err(Errno::ELOOP | Errno::ENOTDIR) => return Ok(()),
        Err(e) => return Err(ctx("opening /etc", e)),
    };
    for name in [HOSTS_FILE, RESOLV_FILE] {
        let flags =
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(&etc, name, flags, Mode::from_bits_truncate(FILE_MODE)) {
            Ok(_) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(ctx(&format!("making /etc/{name}"), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_made_only_where_missing_and_links_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        // No /etc at all: made, with both files empty.
        ensure_mount_points(d.path()).unwrap();
        assert_eq!(std::fs::read(d.path().join("etc/hosts")).unwrap(), b"");
        assert!(d.path().join("etc/resolv.conf").is_file());
        // Existing ones are kept.
        std::fs::write(d.path().join("etc/hosts"), "image's\n").unwrap();
        ensure_mount_points(d.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("etc/hosts")).unwrap(),
            "image's\n"
        );
        // An /etc that is a symlink leads nowhere on the host.
        let r = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), r.path().join("etc")).unwrap();
        ensure_mount_points(r.path()).unwrap();
        assert!(!outside.path().join("hosts").exists());
        // A dangling symlink named hosts is not created through.
        let s = tempfile::tempdir().unwrap();
        std::fs::create_dir(s.path().join("etc")).unwrap();
        let target = outside.path().join("made-through-link");
        std::os::unix::fs::symlink(&target, s.path().join("etc/hosts")).unwrap();
        ensure_mount_points(s.path()).unwrap();
        assert!(!target.exists());
        assert!(s.path().join("etc/resolv.conf").is_file());
    }
}
