//! The kernel side of one container's place on one network: its veth pair (host end on
//! the network's bridge, `eth<n>` inside with the recorded address and MAC), its
//! default route, its rate limit; and what its namespace has (links, addresses, the
//! default route). Used by the start (supervisor/netplug.rs) and by `network connect` /
//! `disconnect` on a running container (live.rs).

use std::net::{IpAddr, Ipv4Addr};

use codex_net::{Handle, IpNet, Netns, VethSpec};

use super::{Endpoint, NetworkRecord};
use crate::error::{Error, Result};

/// The host side's name: 15 bytes at most (for `slot` < 100), unique per container
/// and slot.
pub fn veth_name(id: &str, slot: usize) -> String {
    format!("cv{}{slot}", id.get(..11).unwrap_or(id))
}

pub(crate) fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

pub(crate) fn kernel(what: &str, e: codex_net::Error) -> Error {
    Error::Io {
        context: what.to_string(),
        cause: std::io::Error::other(e.to_string()),
    }
}

/// Plugs the container whose init is `pid` into `net` at `ep` through slot `slot`
/// (host end [`veth_name`], inside `eth<slot>`): the bridge is made if missing, the
/// default route added when `default_route`, and both ends limited to `rate` bits/s.
/// A failure leaves no pair behind (codex-net deletes it).
#[allow(clippy::too_many_arguments)]
pub fn plug_one(
    h: &mut Handle,
    id: &str,
    pid: i32,
    net: &NetworkRecord,
    ep: &Endpoint,
    slot: usize,
    default_route: bool,
    rate: Option<u64>,
) -> Result<()> {
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
    let host_name = veth_name(id, slot);
    let inner = format!("eth{slot}");
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
    // A pair of this container's previous run may still be there: the kernel tears a
    // dead network namespace (and the veth ends in it) down later, asynchronously, and a
    // restart can come first. The name is this container's own (its id and slot).
    let _ = h.delete_veth(&host_name);
    h.attach_veth(&spec)
        .map_err(|e| kernel(&format!("network {}", net.name), e))?;
    if let Some(bits) = rate {
        // Both ends: what the host end sends is what the container receives.
        let limited = h
            .set_rate_limit(&host_name, bits)
            .map_err(|e| kernel(&format!("limiting {host_name}"), e))
            .and_then(|()| {
                Handle::in_netns(Netns::Pid(pid))
                    .and_then(|mut inner_h| inner_h.set_rate_limit(&inner, bits))
                    .map_err(|e| kernel(&format!("limiting {inner} in the container"), e))
            });
        if let Err(e) = limited {
            let _ = h.delete_veth(&host_name);
            return Err(e);
        }
    }
    Ok(())
}

/// What a container's network namespace holds, for choosing a slot and the default route.
#[derive(Debug, Clone, Default)]
pub struct NsView {
    pub links: Vec<String>,
    /// IPv4 addresses by interface name.
    pub addresses: Vec<(String, Ipv4Addr)>,
    /// An IPv4 default route in the main table.
    pub has_default: bool,
}

impl NsView {
    /// The interface holding `ip`, if any.
    pub fn ifname_of(&self, ip: Ipv4Addr) -> Option<&str> {
        self.addresses
            .iter()
            .find(|(_, a)| *a == ip)
            .map(|(n, _)| n.as_str())
    }
}

/// Reads the namespace of process `pid`.
pub fn view(pid: i32) -> Result<NsView> {
    let mut h = Handle::in_netns(Netns::Pid(pid))
        .map_err(|e| kernel("entering the container's netns", e))?;
    let links = h
        .links()
        .map_err(|e| kernel("listing the container's links", e))?
        .into_iter()
        .map(|l| l.name)
        .collect();
    let addresses = h
        .addresses()
        .map_err(|e| kernel("listing the container's addresses", e))?
        .into_iter()
        .filter_map(|a| match a.net.addr {
            IpAddr::V4(v4) => Some((a.ifname, v4)),
            IpAddr::V6(_) => None,
        })
        .collect();
    let has_default = h
        .routes()
        .map_err(|e| kernel("listing the container's routes", e))?
        .iter()
        .any(|r| r.is_ipv4 && r.destination.is_none() && r.table == 254);
    Ok(NsView {
        links,
        addresses,
        has_default,
    })
}

/// The names of the links in the engine's own namespace.
pub fn host_links() -> Result<Vec<String>> {
    let mut h = Handle::current().map_err(|e| kernel("opening rtnetlink", e))?;
    Ok(h.links()
        .map_err(|e| kernel("listing links", e))?
        .into_iter()
        .map(|l| l.name)
        .collect())
}

/// Deletes the container's interface `ifname` (a veth: the kernel removes its host end
/// too) in the namespace of `pid`; `false` when it was not there.
pub fn unplug(pid: i32, ifname: &str) -> Result<bool> {
    Handle::in_netns(Netns::Pid(pid))
        .and_then(|mut h| h.delete_veth(ifname))
        .map_err(|e| kernel(&format!("removing {ifname} from the container"), e))
}

/// Adds the default route via `gw` on `ifname` in the namespace of `pid`.
pub fn add_default_route(pid: i32, ifname: &str, gw: Ipv4Addr) -> Result<()> {
    Handle::in_netns(Netns::Pid(pid))
        .and_then(|mut h| h.add_default_route(ifname, IpAddr::V4(gw)))
        .map_err(|e| kernel(&format!("routing the container out through {ifname}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_side_names_fit_an_interface_name_and_differ_per_slot() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let (a, b) = (veth_name(id, 0), veth_name(id, 1));
        assert!(a.len() <= 15 && b.len() <= 15, "{a} {b}");
        assert_ne!(a, b);
        assert!(codex_net::check_ifname("veth", &a).is_ok());
        assert!(codex_net::check_ifname("veth", &veth_name(id, 99)).is_ok());
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
