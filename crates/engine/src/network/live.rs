//! `network connect` / `network disconnect`: a container joins or leaves a network,
//! running or not. The record changes under the registry lock (the address handed out
//! or freed there, so concurrent connects never share one); a running (or paused)
//! container is plugged or unplugged at once (a veth into its namespace, as a start
//! does, through the lowest free slot); a created or stopped one is plugged by its next
//! start. Then the hosts files of every container on the network are rewritten in place
//! (hostsync.rs: peers resolve the new name and aliases at once, and stop resolving a
//! container that left) and the rules are synced.
//!
//! Order: a connect records before plugging (a crash in between leaves an address that
//! the next start plugs or `rm` frees); a disconnect unplugs before freeing (an address
//! is never handed out while a container still has it configured).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::connect::{
    check_mode, check_network_ref, endpoint_for, free_slot, next_default_route,
    takes_default_route, ConnectOptions, Remaining,
};
use super::link;
use super::mode::effective;
use super::peers::{attachments, Attachment};
use super::sync::{sync, When};
use super::{find_in, hostsync, put, release_in, Endpoint, NetworkRecord, DEFAULT_NETWORK};
use crate::config::ContainerConfig;
use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::registry::{ContainerRecord, ContainerStatus, Registry};

/// Serialises plugging and unplugging on one root: two connects of one container
/// would otherwise pick the same free slot.
const PLUG_LOCK: &str = "plug.lock";

/// The pid of the container's init while it has a namespace to plug into.
fn live_pid(rec: &ContainerRecord) -> Option<i32> {
    match rec.status {
        ContainerStatus::Running | ContainerStatus::Paused => rec.pid.filter(|p| *p > 0),
        _ => None,
    }
}

/// How long a connect or disconnect waits for a start under way to finish.
const SETTLE: Duration = Duration::from_secs(30);

/// The container's record once no start is under way: a start lists the networks to
/// plug before its container runs, so a connect or disconnect in between would be
/// missed (or undone) by it. Waits for that start to end, up to [`SETTLE`].
fn settled(registry: &Registry, id: &str) -> Result<ContainerRecord> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let rec = registry.get(id)?;
        if !crate::engine::starting(&rec) {
            return Ok(rec);
        }
        if Instant::now() >= deadline {
            return Err(Error::wrong_state(
                rec.name.clone(),
                "being started",
                "a network change waits for the start to finish",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config_of(rec: &ContainerRecord) -> Result<ContainerConfig> {
    serde_json::from_value(rec.config.clone()).map_err(|e| Error::invalid("config", e.to_string()))
}

/// `default` is the default network's other name.
fn network_name(reference: &str) -> &str {
    if reference == "default" {
        DEFAULT_NETWORK
    } else {
        reference
    }
}

fn plug_lock(registry: &Registry) -> Result<codex_sys::lock::FileLock> {
    let p = registry.root().join(PLUG_LOCK);
    codex_sys::lock::FileLock::exclusive(&p).ctx(|| format!("locking {}", p.display()))
}

impl Engine {
    /// Connects `container` to `network` (`network connect [--alias A]... [--ip IP]`);
    /// returns its place there. Refused: a mode that is not a network (`none`, `host`,
    /// `container:NAME`), a container made with one of those, a container already on
    /// the network, an address outside the subnet or taken.
    pub fn connect_network(
        &self,
        network: &str,
        container: &str,
        opts: &ConnectOptions,
    ) -> Result<Attachment> {
        check_network_ref(network)?;
        super::connect::check_aliases(&opts.aliases)?;
        let reg = &self.registry;
        let rec = reg.get(container)?;
        check_mode(&rec.name, &effective(&config_of(&rec)?))?;
        let network = network_name(network);
        if network == DEFAULT_NETWORK {
            self.default_network()?;
        }
        let id = rec.id.clone();
        let (net, ep) = reg.update(|idx| {
            let Some(name) = reg.name_of(&id)? else {
                return Err(Error::NotFound {
                    kind: "container",
                    name: container.to_string(),
                });
            };
            let mut net = find_in(reg, idx, network)?;
            let holder = |other: &str| {
                reg.name_of(other)
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| other.to_string())
            };
            let ep = endpoint_for(&net, &id, &name, opts, holder)?;
            net.endpoints.insert(id.clone(), ep.clone());
            put(idx, &net)?;
            Ok((net, ep))
        })?;
        if let Err(e) = self.plug_if_running(&id, &net, &ep) {
            // Still running: the connect failed, and its address goes back. Stopped
            // meanwhile: the record stands and the next start plugs it.
            if reg.get(&id).ok().as_ref().and_then(live_pid).is_some() {
                let _ = reg.update(|idx| release_in(reg, idx, &net.name, &id));
                return Err(e);
            }
        }
        hostsync::refresh(reg, &BTreeSet::from([net.name.clone()]), None);
        let about = [("network", net.name.clone())];
        crate::events::emit_about(self.root(), &rec, "network-connect", &about);
        attachments(&super::list(reg)?, &id)
            .remove(&net.name)
            .ok_or_else(|| Error::NotFound {
                kind: "network",
                name: net.name.clone(),
            })
    }

    /// Plugs container `id` into `net` now if it runs, and brings the rules up to date.
    fn plug_if_running(&self, id: &str, net: &NetworkRecord, ep: &Endpoint) -> Result<()> {
        let reg = &self.registry;
        let rec = settled(reg, id)?;
        let Some(pid) = live_pid(&rec) else {
            return Ok(());
        };
        let cfg = config_of(&rec)?;
        {
            let _lock = plug_lock(reg)?;
            let view = link::view(pid)?;
            if view.ifname_of(ep.ip).is_some() {
                // A start that was under way plugged it already.
                return sync(reg, When::Always);
            }
            let slot = free_slot(id, &link::host_links()?, &view.links).ok_or_else(|| {
                Error::invalid("network", format!("{}: no free interface slot", rec.name))
            })?;
            let mut h =
                codex_net::Handle::current().map_err(|e| link::kernel("opening rtnetlink", e))?;
            let default = takes_default_route(net.internal, view.has_default);
            link::plug_one(&mut h, id, pid, net, ep, slot, default, cfg.network_rate)?;
        }
        // Isolation and NAT for this network's bridge (it may be its first container).
        sync(reg, When::Always)
    }

    /// Disconnects `container` from `network` (`network disconnect [-f]`): a running
    /// container loses the interface at once (its default route moving to another
    /// network that routes out, if the one it had goes), the address is freed, and the
    /// peers' hosts files forget it. With `force`, the address is freed even when the
    /// interface could not be removed (its namespace in a bad state, say).
    pub fn disconnect_network(&self, network: &str, container: &str, force: bool) -> Result<()> {
        check_network_ref(network)?;
        let reg = &self.registry;
        let rec = reg.get(container)?;
        check_mode(&rec.name, &effective(&config_of(&rec)?))?;
        let net = find_in(reg, &reg.index()?, network_name(network))?;
        let Some(ep) = net.endpoints.get(&rec.id).cloned() else {
            return Err(Error::invalid(
                "network",
                format!("{} is not connected to network {}", rec.name, net.name),
            ));
        };
        if let Err(e) = self.unplug_if_running(&rec.id, &net, &ep) {
            if !force {
                return Err(e);
            }
        }
        reg.update(|idx| release_in(reg, idx, &net.name, &rec.id))?;
        // Its published ports on that network go with the address.
        let synced = if ep.ports.is_empty() {
            Ok(())
        } else {
            sync(reg, When::IfApplied)
        };
        hostsync::refresh(reg, &BTreeSet::from([net.name.clone()]), None);
        // Its own file no longer lists that network's peers.
        let _ = hostsync::rewrite_locked(reg, &rec.id);
        let about = [("network", net.name.clone())];
        crate::events::emit_about(self.root(), &rec, "network-disconnect", &about);
        synced
    }

    fn unplug_if_running(&self, id: &str, net: &NetworkRecord, ep: &Endpoint) -> Result<()> {
        let reg = &self.registry;
        let Some(pid) = live_pid(&settled(reg, id)?) else {
            return Ok(());
        };
        let _lock = plug_lock(reg)?;
        let view = link::view(pid)?;
        if let Some(ifname) = view.ifname_of(ep.ip) {
            link::unplug(pid, ifname)?;
        }
        // Where the default route goes, if the interface took it along.
        let after = link::view(pid)?;
        let remaining: Vec<Remaining> = super::list(reg)?
            .into_iter()
            .filter(|n| n.name != net.name)
            .filter_map(|n| {
                let mine = n.endpoints.get(id)?;
                Some(Remaining {
                    network: n.name.clone(),
                    internal: n.internal,
                    gateway: n.gateway,
                    ifname: after.ifname_of(mine.ip).map(str::to_string),
                })
            })
            .collect();
        if let Some((ifname, gw)) = next_default_route(after.has_default, &remaining) {
            link::add_default_route(pid, &ifname, gw)?;
        }
        Ok(())
    }
}
