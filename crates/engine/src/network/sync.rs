//! Makes the kernel's packet filter match the registry: plans the rules from every
//! network record ([`super::rules::Plan`]) and applies them as one nft transaction in
//! the engine's own table, in the network namespace the engine runs in. Called after
//! every change that alters the plan (a start that plugs a container, a container's end,
//! `rm`, `network rm`, a reconcile that freed addresses); since the plan is always
//! computed from the whole registry, the first sync after a crash removes whatever the
//! crash left stale.
//!
//! Syncs are serialised by `<root>/network.lock` and each one reads the registry after
//! taking it, so the last apply is always of the latest state. A sync whose script is
//! the one last applied (same namespace, same boot, the table still there, asked over
//! nfnetlink) runs no `nft`.
//!
//! A root that never plugged a container into a network never runs `nft` at all
//! ([`When::IfApplied`] skips it): `network create`/`rm` on a host without nftables, or
//! in a namespace a test must not change, touch no packet filter. The marker file
//! `<root>/nft-table` (written before the first apply, removed after the table is gone)
//! says that a table may exist, and in which namespace: a sync from another namespace
//! leaves that one alone.

use std::collections::BTreeSet;
use std::path::Path;

use super::rules::{table_name, Plan};
use crate::error::{Context, Error, Result};
use crate::registry::{ContainerStatus, Registry};

const LOCK_FILE: &str = "network.lock";
const MARKER_FILE: &str = "nft-table";

/// When a sync runs `nft`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Always: a container is being plugged in and needs the rules.
    Always,
    /// Only if this root may have a table: an earlier sync applied one.
    IfApplied,
}

/// Containers whose published ports are live: being started, running or paused. Only
/// the containers with bindings on some network are looked at (one record read each):
/// the others publish nothing, and a start must not read every container's record.
fn active(registry: &Registry, networks: &[super::NetworkRecord]) -> Result<BTreeSet<String>> {
    let bound: BTreeSet<&String> = networks
        .iter()
        .flat_map(|n| n.endpoints.iter())
        .filter(|(_, ep)| !ep.ports.is_empty())
        .map(|(id, _)| id)
        .collect();
    Ok(bound
        .into_iter()
        .filter_map(|id| registry.get(id).ok())
        .filter(|r| {
            matches!(
                r.status,
                ContainerStatus::Created | ContainerStatus::Running | ContainerStatus::Paused
            )
        })
        .map(|r| r.id)
        .collect())
}

/// Applies the registry's rules (see the module doc).
pub fn sync(registry: &Registry, when: When) -> Result<()> {
    let root = registry.root();
    let marker = root.join(MARKER_FILE);
    let here = netns_id()?;
    if when == When::IfApplied && !applied_here(&marker, &here) {
        return Ok(());
    }
    let lock_path = root.join(LOCK_FILE);
    let _lock = codex_sys::lock::FileLock::exclusive(&lock_path)
        .ctx(|| format!("locking {}", lock_path.display()))?;
    let networks = super::list(registry)?;
    let plan = Plan::from_records(&networks, &active(registry, &networks)?);
    let table = table_name(root);
    let script = plan.script(&table);
    let stamp = format!("{table} {here} {} {}\n", boot_id(), digest(&script));
    // Cheap (a read when already set), so checked on every sync.
    if plan.needs_forwarding() {
        enable_forwarding()?;
    }
    for bridge in plan.localnet_bridges() {
        allow_localnet(bridge)?;
    }
    // The same script was applied in this namespace during this boot, and the table is
    // still there (someone may have flushed it): nothing to do, and no `nft` process
    // (the common case: a start that publishes nothing).
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == stamp)
        && codex_net::nft::ip_table_exists(&table).unwrap_or(false)
    {
        return Ok(());
    }
    if !plan.is_empty() {
        // Before the apply: a crash after it must still leave the marker. The stamp
        // without the digest says "a table may be here", nothing more.
        codex_runtime::state::write_atomic(&marker, format!("{table} {here} - -\n").as_bytes())?;
    }
    codex_net::nft::apply(None, &script).map_err(|e| Error::Io {
        context: format!("applying the network rules (nft table ip {table})"),
        cause: std::io::Error::other(e.to_string()),
    })?;
    if !plan.is_empty() {
        codex_runtime::state::write_atomic(&marker, stamp.as_bytes())?;
    } else {
        std::fs::remove_file(&marker)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .ctx(|| format!("removing {}", marker.display()))?;
    }
    Ok(())
}

/// This boot's id: a namespace's inode number can repeat after a reboot, a boot id
/// cannot.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn digest(script: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(script.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The network namespace this thread is in, as `dev:inode`.
fn netns_id() -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let p = Path::new("/proc/thread-self/ns/net");
    let m = std::fs::metadata(p).ctx(|| format!("reading {}", p.display()))?;
    Ok(format!("{}:{}", m.dev(), m.ino()))
}

/// Whether the marker says a table was applied in namespace `here`. A root used from
/// another namespace (a test's own, say) has its table there, not here: a sync from
/// here must not write rules into a namespace the root never used.
fn applied_here(marker: &Path, here: &str) -> bool {
    std::fs::read_to_string(marker).is_ok_and(|m| m.split_whitespace().nth(1) == Some(here))
}

/// Turns IPv4 forwarding on in the engine's network namespace, as Docker's daemon does
/// when it starts: without it nothing leaves a bridge for the uplink. It makes the host
/// a router between all its interfaces, which its own firewall then governs; the
/// engine's table keeps codex networks apart and internal networks closed.
fn enable_forwarding() -> Result<()> {
    write_sysctl(Path::new("/proc/sys/net/ipv4/ip_forward"))
}

/// Lets the bridge carry packets with loopback sources (a published port reached at
/// 127.0.0.1 is DNAT-ed to the container before the source is masqueraded).
fn allow_localnet(bridge: &str) -> Result<()> {
    let p = Path::new("/proc/sys/net/ipv4/conf")
        .join(bridge)
        .join("route_localnet");
    if !p.exists() {
        // The bridge is made by the first start on the network; it sets this then.
        return Ok(());
    }
    write_sysctl(&p)
}

fn write_sysctl(path: &Path) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(path, b"1").ctx(|| format!("writing 1 to {}", path.display()))
}
