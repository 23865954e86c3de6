//! Plugging a created container into its networks, between the runtime's create and
//! start (the create/start split exists for this): for each network its record gives
//! it an address on, the network's bridge (made on first use, with the gateway
//! address), and a veth pair whose inner end is made in the container's namespace with
//! the recorded address and MAC (the first network also gives the default route).
//!
//! Nothing needs undoing at the end: when the container's namespace goes, the kernel
//! deletes the pair. A failure here fails the start; the caller deletes the runtime's
//! container, which takes the namespace and with it what was plugged.

use std::collections::BTreeSet;

use codex_net::Handle;

use crate::config::ContainerConfig;
use crate::error::{Error, Result};
use crate::network::link::{self, kernel};
use crate::network::sync::{sync, When};
use crate::network::{self, hostsync, publish, NetworkRecord};
use crate::registry::Registry;

/// Plugs container `id`, whose init is `pid`, into every network it has an address on,
/// publishes its ports and brings the engine's rules up to date. On error what it
/// recorded is undone (the caller deletes the runtime container, and with it the veths).
pub(super) fn plug(registry: &Registry, id: &str, pid: i32, cfg: &ContainerConfig) -> Result<()> {
    let nets: Vec<NetworkRecord> = network::list(registry)?
        .into_iter()
        .filter(|n| n.endpoints.contains_key(id))
        .collect();
    if nets.is_empty() {
        return Ok(());
    }
    let done = plug_into(registry, id, pid, cfg, &nets);
    if done.is_err() {
        // Best effort: the first error is the one to report; a stale binding of a
        // container that is not running never reaches the rules anyway.
        let _ = publish::clear_ports(registry, id);
        let _ = sync(registry, When::IfApplied);
        return done;
    }
    // Its peers learn its name and address now: their hosts files were written at
    // their own starts (best effort: a peer's file that cannot be written is that
    // peer's problem, rewritten at its next start).
    let names: BTreeSet<String> = nets.iter().map(|n| n.name.clone()).collect();
    hostsync::refresh(registry, &names, Some(id));
    done
}

fn plug_into(
    registry: &Registry,
    id: &str,
    pid: i32,
    cfg: &ContainerConfig,
    nets: &[NetworkRecord],
) -> Result<()> {
    let specs = cfg.publish.specs()?;
    if !specs.is_empty() {
        // DNAT to its address on the first network that routes out.
        let target = nets.iter().find(|n| !n.internal).ok_or_else(|| {
            Error::invalid(
                "ports",
                "the container is only on internal networks: nothing can reach a published port",
            )
        })?;
        publish::bind_ports(registry, id, &target.name, &specs)?;
    }
    let mut h = Handle::current().map_err(|e| kernel("opening rtnetlink", e))?;
    let mut routed = false;
    for (i, net) in nets.iter().enumerate() {
        let Some(ep) = net.endpoints.get(id) else {
            continue;
        };
        // The default route goes through the first network that has a way out; an
        // internal network's containers get none.
        let default_route = !net.internal && !routed;
        routed |= default_route;
        link::plug_one(&mut h, id, pid, net, ep, i, default_route, cfg.network_rate)?;
    }
    // Isolation, NAT and the published ports, before the container runs.
    sync(registry, When::Always)
}
