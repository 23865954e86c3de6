//! A container's `/etc/hosts` and `/etc/resolv.conf` on the host: files in its directory,
//! bind-mounted over the image's own. The bundle names them at create; their content is
//! written again before every start, so a start sees the peers and host nameservers of
//! that moment. (Rewriting them while a container runs, as peers join and leave, is for
//! the bridge wiring: a bind mount pins the inode, so that rewrite must be in place.)

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
    let rec = registry.get(id)?;
    let cfg: ContainerConfig = serde_json::from_value(rec.config.clone())
        .map_err(|e| Error::invalid("config", e.to_string()))?;
    let names = registry
        .index()?
        .containers()
        .iter()
        .map(|(name, id)| (id.clone(), name.clone()))
        .collect();
    let hostname = cfg
        .hostname
        .clone()
        .unwrap_or_else(|| rec.id.chars().take(12).collect());
    hosts_for(
        &super::list(registry)?,
        &names,
        &rec.id,
        &rec.name,
        &hostname,
        &cfg.add_hosts,
    )
}

/// Its resolv.conf: `--dns`, else the host's usable nameservers.
pub fn resolv_conf_for(cfg: &ContainerConfig) -> String {
    let etc = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let host = std::fs::read_to_string(host_resolv_conf_path(&etc)).unwrap_or(etc);
    resolv_conf(&host, &cfg.dns)
}

/// Writes both files of container `id` into `dir` (atomically; before its start).
pub fn write_files(registry: &Registry, id: &str, dir: &Path) -> Result<()> {
    let rec = registry.get(id)?;
    let cfg: ContainerConfig =
        serde_json::from_value(rec.config).map_err(|e| Error::invalid("config", e.to_string()))?;
    let hosts = hosts_file(&hosts_in(registry, id)?);
    write(&dir.join(HOSTS_FILE), hosts.as_bytes())?;
    write(&dir.join(RESOLV_FILE), resolv_conf_for(&cfg).as_bytes())
}

/// Placeholders for the bundle's binds, made with the container's directory (the real
/// content comes at start).
pub fn write_placeholders(dir: &Path) -> Result<()> {
    write(&dir.join(HOSTS_FILE), b"127.0.0.1\tlocalhost\n")?;
    write(&dir.join(RESOLV_FILE), b"")
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    // Not synced: every start rewrites both files before the container sees them, and
    // the placeholders' directory entries are made durable by the record's write that
    // commits the create (it syncs the container's directory). Four fsyncs less on the
    // start path, two on create.
    codex_sys::AtomicFile::new(path)
        .mode(FILE_MODE)
        .not_durable()
        .write(data)
        .ctx(|| format!("writing {}", path.display()))
}
