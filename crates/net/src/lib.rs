//! codex-net: the kernel side of container networks, over rtnetlink. A [`Handle`] acts
//! in one network namespace (the caller's, or one it is given): it makes and removes
//! bridges, plugs a container into a bridge with a veth pair whose inner end is created
//! inside the container's namespace as `eth0` (address, MAC, up, default route), lists
//! links, addresses and routes (to choose a free subnet), and rate-limits an interface
//! (a tbf qdisc); [`link_stats`] reads an interface's counters inside a container, and
//! [`nft`] applies the engine's nftables rules as one transaction.
//!
//! Every call is synchronous and makes no thread and no async runtime, so the engine's
//! single-threaded supervisor can call it between the runtime's `create` and `start`
//! (docs/networking-kernel.md says why, with the numbers).
//!
//! ```no_run
//! use codex_net::{Handle, Netns, VethSpec};
//! let mut host = Handle::current()?;
//! host.ensure_bridge("codex0", Some("10.88.0.1/16".parse()?))?;
//! let pid = 4242; // the container's init, between create and start
//! host.attach_veth(&VethSpec {
//!     bridge: "codex0",
//!     host_name: "vethc0a1b2c3",
//!     netns: Netns::Pid(pid),
//!     container_name: "eth0",
//!     address: "10.88.0.2/16".parse()?,
//!     mac: None,
//!     gateway: Some("10.88.0.1".parse()?),
//!     mtu: None,
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// Every unsafe block says why it is sound; nothing outside tests panics on a value that
// can be absent at run time (make lint and CI enforce both).
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod list;
mod netns;
pub mod nft;
mod ops;
mod socket;
mod tc;
mod types;

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

pub use error::{Error, Result};
pub use netns::Netns;
pub use types::{check_ifname, Address, IpNet, Link, LinkStats, Route};

use socket::Netlink;

/// What a container's veth pair is made of.
#[derive(Clone, Debug)]
pub struct VethSpec<'a> {
    /// The bridge the host end is attached to (it must exist).
    pub bridge: &'a str,
    /// The host end's name, unique on the host (the engine derives it from the id).
    pub host_name: &'a str,
    /// The container's network namespace.
    pub netns: Netns<'a>,
    /// The name inside the container, usually `eth0`.
    pub container_name: &'a str,
    /// The container's address and the subnet's prefix length.
    pub address: IpNet,
    /// The container end's MAC; the kernel picks a random one when `None`.
    pub mac: Option<[u8; 6]>,
    /// The default route's gateway (the bridge's address); none for an internal network.
    pub gateway: Option<IpAddr>,
    pub mtu: Option<u32>,
}

/// The veth pair as made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub host_index: u32,
    /// The container end's index inside its namespace.
    pub container_index: u32,
    /// The container end's MAC, as the kernel has it.
    pub mac: [u8; 6],
}

/// rtnetlink in one network namespace.
pub struct Handle {
    nl: Netlink,
    /// Which namespace that is, to refuse plugging a "container" that shares it.
    ns_id: netns::NsId,
}

impl Handle {
    /// Acts in the calling thread's network namespace.
    pub fn current() -> Result<Handle> {
        let ns = Netns::Path(std::path::Path::new("/proc/thread-self/ns/net")).open()?;
        Ok(Handle {
            nl: Netlink::open()?,
            ns_id: netns::id_of(ns.as_fd())?,
        })
    }

    /// Acts in `ns` (a test's own namespace, say), whatever the caller's is.
    pub fn in_netns(ns: Netns) -> Result<Handle> {
        let fd = ns.open()?;
        Ok(Handle {
            nl: netns::netlink_in(fd.as_fd())?,
            ns_id: netns::id_of(fd.as_fd())?,
        })
    }

    /// Creates the bridge `name` if it is not there, adds `address` to it (an address it
    /// already has is fine) and brings it up. Returns its index. A link of that name
    /// that is not a bridge is an error, and is left alone.
    pub fn ensure_bridge(&mut self, name: &str, address: Option<IpNet>) -> Result<u32> {
        check_ifname("bridge", name)?;
        let index = ops::ensure_bridge(&mut self.nl, name)?;
        if let Some(net) = address {
            ops::add_address(&mut self.nl, index, name, net)?;
        }
        ops::set_up(&mut self.nl, index, name)?;
        Ok(index)
    }

    /// Deletes the bridge `name` (its ports are detached by the kernel); `false` when
    /// there was none. A link of that name that is not a bridge is an error.
    pub fn delete_bridge(&mut self, name: &str) -> Result<bool> {
        self.delete_of_kind(name, "bridge")
    }

    /// Deletes a container's veth pair by its host end (the kernel removes both ends);
    /// `false` when there was none (its namespace died and took it along, say).
    pub fn delete_veth(&mut self, host_name: &str) -> Result<bool> {
        self.delete_of_kind(host_name, "veth")
    }

    fn delete_of_kind(&mut self, name: &str, want: &'static str) -> Result<bool> {
        check_ifname(want, name)?;
        let Some(m) = ops::get_link(&mut self.nl, name)? else {
            return Ok(false);
        };
        let l = ops::to_link(&m);
        if l.kind.as_deref() != Some(want) {
            return Err(Error::WrongKind {
                name: name.to_string(),
                kind: l.kind.unwrap_or_else(|| "device without a kind".into()),
                want,
            });
        }
        ops::delete_link(&mut self.nl, name)
    }

    /// Plugs a container into a bridge: a veth pair, the host end on the bridge and up,
    /// the other end made inside the container's namespace under its final name, with
    /// its address, MAC, up, and a default route via the gateway. On any failure the
    /// pair is deleted again, so nothing is left half-made.
    pub fn attach_veth(&mut self, spec: &VethSpec) -> Result<Attached> {
        check_ifname("veth host name", spec.host_name)?;
        check_ifname("container interface name", spec.container_name)?;
        if let Some(gw) = spec.gateway {
            if gw.is_ipv4() != spec.address.addr.is_ipv4() {
                return Err(Error::invalid(
                    format!("gateway {gw}"),
                    format!("is not of the same family as the address {}", spec.address),
                ));
            }
        }
        let ns = spec.netns.open()?;
        // A pid read before the container unshared (or a wrong one) names our own
        // namespace: its "eth0" would land on the host.
        if netns::id_of(ns.as_fd())? == self.ns_id {
            return Err(Error::invalid(
                format!("netns of veth {:?}", spec.host_name),
                "is the namespace the bridge is in, not a container's own",
            ));
        }
        let master = ops::link_index(&mut self.nl, spec.bridge)?;
        ops::create_veth(
            &mut self.nl,
            spec.host_name,
            master,
            ns.as_raw_fd(),
            spec.container_name,
            spec.mac,
            spec.mtu,
        )?;
        match self.finish_veth(spec, &ns) {
            Ok(a) => Ok(a),
            Err(e) => {
                // Best effort: the first error is the one worth reporting.
                let _ = ops::delete_link(&mut self.nl, spec.host_name);
                Err(e)
            }
        }
    }

    fn finish_veth(&mut self, spec: &VethSpec, ns: &std::os::fd::OwnedFd) -> Result<Attached> {
        let host_index = ops::link_index(&mut self.nl, spec.host_name)?;
        ops::set_up(&mut self.nl, host_index, spec.host_name)?;

        let mut inner = netns::netlink_in(ns.as_fd())?;
        let name = spec.container_name;
        let link = ops::get_link(&mut inner, name)?
            .ok_or_else(|| Error::NoSuchLink(format!("{name} (in the container)")))?;
        let index = link.header.index;
        ops::add_address(&mut inner, index, name, spec.address)?;
        ops::set_up(&mut inner, index, name)?;
        if let Some(gw) = spec.gateway {
            ops::add_default_route(&mut inner, index, name, gw)?;
        }
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                netlink_packet_route::link::LinkAttribute::Address(b) => {
                    <[u8; 6]>::try_from(b.as_slice()).ok()
                }
                _ => None,
            })
            .ok_or_else(|| Error::Protocol(format!("{name} in the container has no MAC")))?;
        Ok(Attached {
            host_index,
            container_index: index,
            mac,
        })
    }

    /// `ip route add default via GW dev NAME` in this namespace: a container's default
    /// route moved to another of its networks (`network disconnect` of the one that had
    /// it). A default route already there is an error.
    pub fn add_default_route(&mut self, name: &str, gw: IpAddr) -> Result<()> {
        let index = ops::link_index(&mut self.nl, name)?;
        ops::add_default_route(&mut self.nl, index, name, gw)
    }

    /// Every link in the namespace (`ip link`).
    pub fn links(&mut self) -> Result<Vec<Link>> {
        Ok(ops::dump_links(&mut self.nl)?
            .iter()
            .map(ops::to_link)
            .collect())
    }

    /// Every address on every interface, IPv4 and IPv6 (`ip addr`).
    pub fn addresses(&mut self) -> Result<Vec<Address>> {
        list::addresses(&mut self.nl)
    }

    /// Every route of every table, IPv4 and IPv6 (`ip route show table all`).
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        list::routes(&mut self.nl)
    }

    /// Limits what leaves interface `name` to `bits_per_sec` (a token-bucket root qdisc,
    /// replacing any root qdisc it had). A container's veth limited on both ends (the
    /// host end through the host's handle, eth0 through one [`Handle::in_netns`] its
    /// namespace) is limited both ways.
    pub fn set_rate_limit(&mut self, name: &str, bits_per_sec: u64) -> Result<()> {
        let index = ops::link_index(&mut self.nl, name)?;
        tc::set_rate(&mut self.nl, index, name, bits_per_sec)
    }

    /// Removes the limit; `false` when there was none.
    pub fn clear_rate_limit(&mut self, name: &str) -> Result<bool> {
        let index = ops::link_index(&mut self.nl, name)?;
        tc::clear_rate(&mut self.nl, index, name)
    }

    /// The counters of interface `name` in this namespace.
    pub fn link_stats(&mut self, name: &str) -> Result<LinkStats> {
        let m = ops::get_link(&mut self.nl, name)?
            .ok_or_else(|| Error::NoSuchLink(name.to_string()))?;
        ops::stats_of(&m).ok_or_else(|| Error::Protocol(format!("{name:?} has no counters")))
    }
}

/// The counters of interface `ifname` (usually `eth0`) inside the namespace `ns`: what
/// the container received (rx) and sent (tx).
pub fn link_stats(ns: Netns, ifname: &str) -> Result<LinkStats> {
    Handle::in_netns(ns)?.link_stats(ifname)
}
