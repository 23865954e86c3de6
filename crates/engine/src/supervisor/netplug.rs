//! Plugging a created container into its networks, between the runtime's create and
//! start (the create/start split exists for this): for each network its record gives
//! it an address on, the network's bridge (made on first use, with the gateway
//! address), and a veth pair whose inner end is made in the container's namespace with
//! the recorded address and MAC (the first network also gives the default route).
//!
//! Nothing needs undoing at the end: when the container's namespace goes, the kernel
//! deletes the pair. A failure here fails the start; the caller deletes the runtime's
//! container, which takes the namespace and with it what was plugged.

use std::net::IpAddr;

use codex_net::{Handle, IpNet, Netns, VethSpec};

use crate::config::ContainerConfig;
use crate::error::{Error, Result};
use crate::network::sync::{sync, When};
use crate::network::{self, publish, NetworkRecord};
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
    }
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
        let prefix = net.subnet.prefix_len();
        let gateway = IpAddr::V4(net.gateway);
        h.ensure_bridge(
            &net.bridge,
            Some(IpNet {
                addr: gateway,
                prefix,
            }),
        )
        .map_err(|e| kernel(&format!("network {}", net.name), e))?;
        let host_name = veth_name(id, i);
        let inner = format!("eth{i}");
        // The default route goes through the first network that has a way out; an
        // internal network's containers get none.
        let default_route = !net.internal && !routed;
        routed |= default_route;
        let spec = VethSpec {
            bridge: &net.bridge,
            host_name: &host_name,
            netns: Netns::Pid(pid),
            container_name: &inner,
            address: IpNet {
                addr: IpAddr::V4(ep.ip),
                prefix,
            },
            mac: parse_mac(&ep.mac),
            gateway: default_route.then_some(gateway),
            mtu: None,
        };
        h.attach_veth(&spec)
            .map_err(|e| kernel(&format!("network {}", net.name), e))?;
        if let Some(bits) = cfg.network_rate {
            // Both ends: what the host end sends is what the container receives.
            h.set_rate_limit(&host_name, bits)
                .map_err(|e| kernel(&format!("limiting {host_name}"), e))?;
            Handle::in_netns(Netns::Pid(pid))
                .and_then(|mut inner_h| inner_h.set_rate_limit(&inner, bits))
                .map_err(|e| kernel(&format!("limiting {inner} in the container"), e))?;
        }
    }
    // Isolation, NAT and the published ports, before the container runs.
    sync(registry, When::Always)
}

/// The host side's name: 15 bytes at most, unique per container and network.
pub fn veth_name(id: &str, index: usize) -> String {
    format!("cv{}{index}", id.get(..11).unwrap_or(id))
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn kernel(what: &str, e: codex_net::Error) -> Error {
    Error::Io {
        context: what.to_string(),
        cause: std::io::Error::other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_side_names_fit_an_interface_name_and_differ_per_network() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let (a, b) = (veth_name(id, 0), veth_name(id, 1));
        assert!(a.len() <= 15 && b.len() <= 15, "{a} {b}");
        assert_ne!(a, b);
        assert!(codex_net::check_ifname("veth", &a).is_ok());
    }

    #[test]
    fn macs_parse_only_when_whole() {
        assert_eq!(
            parse_mac("02:42:0a:58:00:02"),
            Some([2, 0x42, 10, 0x58, 0, 2])
        );
        assert_eq!(parse_mac("02:42:0a:58:00"), None);
        assert_eq!(parse_mac("02:42:0a:58:00:02:07"), None);
        assert_eq!(parse_mac("zz:42:0a:58:00:02"), None);
    }
}
