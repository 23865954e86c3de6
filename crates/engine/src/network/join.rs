//! `--network container:NAME`: a container that shares another's network namespace, as
//! Docker's do. The create resolves NAME to the other container's full id (recorded as
//! `container:<id>`, so a rename of the other changes nothing), takes its hostname, and
//! binds the other's `/etc/hosts` and `/etc/resolv.conf` files (the same inodes: peers
//! joining the other's networks show up in both, hostsync.rs). Each start points the
//! bundle's network namespace at the other's init (`/proc/PID/ns/net`), refused when
//! the other is not running: there is no namespace to join.
//!
//! Not for `strict` containers: their user namespace would not own the joined network
//! namespace, so they could not mount `/sys`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::files::HOSTS_FILE;
use super::mode::NetworkMode;
use crate::config::{ContainerConfig, Isolation};
use crate::error::{Context, Error, Result};
use crate::registry::{ContainerRecord, ContainerStatus, Registry};

/// The container a `container:NAME` config joins, resolved at create; the config then
/// names it by full id. Refused: no such container, or a strict joiner.
pub fn resolve_target(
    registry: &Registry,
    config: &mut ContainerConfig,
) -> Result<Option<ContainerRecord>> {
    let Some(NetworkMode::Container(reference)) = config.network.clone() else {
        return Ok(None);
    };
    if config.isolation == Isolation::Strict {
        return Err(Error::invalid(
            "network",
            format!(
                "container:{reference}: a strict container (user namespace) cannot share \
                 another container's network namespace"
            ),
        ));
    }
    let target = registry.get(&reference).map_err(|e| match e {
        Error::NotFound { .. } => Error::invalid(
            "network",
            format!("container:{reference}: no such container"),
        ),
        other => other,
    })?;
    config.network = Some(NetworkMode::Container(target.id.clone()));
    Ok(Some(target))
}

/// At create, for a joiner: the other container's hostname, and its hosts and
/// resolv.conf files bound over the image's (when it has them).
pub fn share_files(spec: &mut Value, registry: &Registry, target: &ContainerRecord) -> Result<()> {
    spec["hostname"] = hostname_of(target).into();
    let dir = registry.container_dir(&target.id)?;
    if has_files(&dir) {
        super::files::add_mounts(spec, &dir);
    }
    Ok(())
}

/// Before each start of a joiner: points its bundle at the other container's
/// namespace, refused when that one is not running. Nothing for other modes.
pub fn prepare_start(registry: &Registry, config: &ContainerConfig, bundle: &Path) -> Result<()> {
    match &config.network {
        Some(NetworkMode::Container(target)) => {
            point_bundle(bundle, &target_netns(registry, target)?)
        }
        _ => Ok(()),
    }
}

/// The hostname a joiner takes: the other container's (its `--hostname`, else the
/// first 12 characters of its id, as the profile gives).
pub fn hostname_of(target: &ContainerRecord) -> String {
    serde_json::from_value::<ContainerConfig>(target.config.clone())
        .ok()
        .and_then(|c| c.hostname)
        .unwrap_or_else(|| target.id.chars().take(12).collect())
}

/// Whether the other container has hosts and resolv.conf files of its own to share
/// (`host` and `strict` ones keep their image's).
pub fn has_files(target_dir: &Path) -> bool {
    target_dir.join(HOSTS_FILE).is_file()
}

/// The network namespace to join at start: that of the other container's init.
pub fn target_netns(registry: &Registry, target_id: &str) -> Result<PathBuf> {
    let rec = registry.get(target_id).map_err(|e| match e {
        Error::NotFound { .. } => Error::invalid(
            "network",
            format!("container:{target_id}: that container no longer exists"),
        ),
        other => other,
    })?;
    match (rec.status, rec.pid) {
        (ContainerStatus::Running | ContainerStatus::Paused, Some(pid)) if pid > 0 => {
            Ok(PathBuf::from(format!("/proc/{pid}/ns/net")))
        }
        (status, _) => Err(Error::invalid(
            "network",
            format!(
                "container:{}: {} is {status}, not running: there is no network namespace \
                 to join (start it first)",
                rec.name, rec.name
            ),
        )),
    }
}

/// Sets the path of the spec's `network` namespace (the joined one). Pure.
pub fn set_netns_path(spec: &mut Value, path: &Path) -> Result<()> {
    let ns = spec["linux"]["namespaces"]
        .as_array_mut()
        .and_then(|a| a.iter_mut().find(|n| n["type"] == "network"))
        .ok_or_else(|| {
            Error::invalid(
                "spec",
                "linux.namespaces has no network namespace to point at the other container's",
            )
        })?;
    ns["path"] = path.to_string_lossy().into_owned().into();
    Ok(())
}

/// Points `bundle/config.json`'s network namespace at `path` (before each start: the
/// other container's init changes with its restarts). Written atomically.
pub fn point_bundle(bundle: &Path, path: &Path) -> Result<()> {
    let file = bundle.join("config.json");
    let text = std::fs::read(&file).ctx(|| format!("reading {}", file.display()))?;
    let mut spec: Value = serde_json::from_slice(&text).map_err(|e| Error::Corrupt {
        path: file.clone(),
        reason: e.to_string(),
    })?;
    set_netns_path(&mut spec, path)?;
    let out =
        serde_json::to_vec_pretty(&spec).map_err(|e| Error::invalid("spec", e.to_string()))?;
    codex_runtime::state::write_atomic(&file, &out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_network_namespace_gets_the_path_and_nothing_else_changes() {
        let mut spec = json!({"linux": {"namespaces": [
            {"type": "pid"}, {"type": "network"}, {"type": "mount"}]}});
        set_netns_path(&mut spec, Path::new("/proc/42/ns/net")).unwrap();
        assert_eq!(
            spec["linux"]["namespaces"],
            json!([{"type": "pid"}, {"type": "network", "path": "/proc/42/ns/net"},
                   {"type": "mount"}])
        );
        // Again (a restart): replaced, not added.
        set_netns_path(&mut spec, Path::new("/proc/43/ns/net")).unwrap();
        assert_eq!(spec["linux"]["namespaces"][1]["path"], "/proc/43/ns/net");
        let mut host = json!({"linux": {"namespaces": [{"type": "mount"}]}});
        let e = set_netns_path(&mut host, Path::new("/x")).unwrap_err();
        assert!(e.to_string().starts_with("spec:"), "{e}");
    }

    #[test]
    fn the_hostname_is_the_other_containers() {
        let mut rec: ContainerRecord = serde_json::from_value(json!({
            "version": 1, "id": "ab".repeat(32), "name": "web",
            "created": "2026-01-01T00:00:00Z", "status": "running",
            "config": {"command": ["true"]}
        }))
        .unwrap();
        assert_eq!(hostname_of(&rec), "abababababab");
        rec.config = json!({"command": ["true"], "hostname": "web.local"});
        assert_eq!(hostname_of(&rec), "web.local");
    }
}
