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

use crate::error::{Error, Result};
use crate::network::{self, NetworkRecord};
use crate::registry::Registry;

/// Plugs container `id`, whose init is `pid`, into every network it has an address on.
pub(super) fn plug(registry: &Registry, id: &str, pid: i32) -> Result<()> {
    let nets: Vec<NetworkRecord> = network::list(registry)?
        .into_iter()
        .filter(|n| n.endpoints.contains_key(id))
        .collect();
    if nets.is_empty() {
        return Ok(());
    }
    let mut h = Handle::current().map_err(|e| kernel("opening rtnetlink", e))?;
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
            gateway: (i == 0).then_some(gateway),
            mtu: None,
        };
        h.attach_veth(&spec)
            .map_err(|e| kernel(&format!("network {}", net.name), e))?;
    }
    Ok(())
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
