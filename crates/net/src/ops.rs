//! The rtnetlink requests, each on a [`Netlink`] of the namespace it acts in. Names in
//! errors come from the caller, so every failure says which interface or address.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Error, Result};
use crate::socket::Netlink;
use crate::types::{IpNet, Link, LinkStats};

const ENODEV: i32 = libc::ENODEV;
const EEXIST: i32 = libc::EEXIST;

fn by_name(name: &str) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    m
}

/// The link called `name`, or `None`.
pub fn get_link(nl: &mut Netlink, name: &str) -> Result<Option<LinkMessage>> {
    let what = format!("looking up interface {name:?}");
    match nl.get(RouteNetlinkMessage::GetLink(by_name(name)), &what) {
        Ok(RouteNetlinkMessage::NewLink(m)) => Ok(Some(m)),
        Ok(other) => Err(Error::Protocol(format!(
            "{what}: unexpected answer {other:?}"
        ))),
        Err(e) if e.errno() == Some(ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn link_index(nl: &mut Netlink, name: &str) -> Result<u32> {
    get_link(nl, name)?
        .map(|m| m.header.index)
        .ok_or_else(|| Error::NoSuchLink(name.to_string()))
}

pub fn to_link(m: &LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        kind: None,
        master: None,
        up: m.header.flags.contains(LinkFlags::Up),
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Controller(i) => l.master = Some(*i),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    l
}

pub fn stats_of(m: &LinkMessage) -> Option<LinkStats> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Stats64(s) => Some(LinkStats {
            rx_bytes: s.rx_bytes,
            tx_bytes: s.tx_bytes,
            rx_packets: s.rx_packets,
            tx_packets: s.tx_packets,
        }),
        _ => None,
    })
}

pub fn dump_links(nl: &mut Netlink) -> Result<Vec<LinkMessage>> {
    let msgs = nl.dump(
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        "listing interfaces",
    )?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .collect())
}

/// Creates a bridge, or finds the one that is there; refuses a name taken by another
/// kind of link. Returns its index.
pub fn ensure_bridge(nl: &mut Netlink, name: &str) -> Result<u32> {
    let mut m = by_name(name);
    m.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Bridge,
        )]));
    let what = format!("creating bridge {name:?}");
    match nl.request(
        RouteNetlinkMessage::NewLink(m),
        NLM_F_CREATE | NLM_F_EXCL,
        &what,
    ) {
        Ok(()) => {}
        Err(e) if e.errno() == Some(EEXIST) => {}
        Err(e) => return Err(e),
    }
    let link = get_link(nl, name)?.ok_or_else(|| Error::NoSuchLink(name.to_string()))?;
    let l = to_link(&link);
    if l.kind.as_deref() != Some("bridge") {
        return Err(Error::WrongKind {
            name: name.to_string(),
            kind: l.kind.unwrap_or_else(|| "device without a kind".into()),
            want: "bridge",
        });
    }
    Ok(l.index)
}

/// A veth pair: `host` attached to `master`, its peer created directly inside the
/// namespace `peer_ns` (an nsfs fd) under `peer_name`, so the name cannot clash with the
/// host's own `eth0` and no rename is needed.
pub fn create_veth(
    nl: &mut Netlink,
    host: &str,
    master: u32,
    peer_ns: std::os::fd::RawFd,
    peer_name: &str,
    mac: Option<[u8; 6]>,
    mtu: Option<u32>,
) -> Result<()> {
    let mut peer = by_name(peer_name);
    peer.attributes.push(LinkAttribute::NetNsFd(peer_ns));
    if let Some(mac) = mac {
        peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    let mut m = by_name(host);
    m.attributes.push(LinkAttribute::Controller(master));
    if let Some(mtu) = mtu {
        m.attributes.push(LinkAttribute::Mtu(mtu));
        peer.attributes.push(LinkAttribute::Mtu(mtu));
    }
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    nl.request(
        RouteNetlinkMessage::NewLink(m),
        NLM_F_CREATE | NLM_F_EXCL,
        &format!("creating veth {host:?} (peer {peer_name:?} in the container)"),
    )
}

pub fn set_up(nl: &mut Netlink, index: u32, name: &str) -> Result<()> {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    nl.request(
        RouteNetlinkMessage::SetLink(m),
        0,
        &format!("bringing up {name:?}"),
    )
}

/// Deletes the link called `name`; `false` when there was none.
pub fn delete_link(nl: &mut Netlink, name: &str) -> Result<bool> {
    match nl.request(
        RouteNetlinkMessage::DelLink(by_name(name)),
        0,
        &format!("deleting interface {name:?}"),
    ) {
        Ok(()) => Ok(true),
        Err(e) if e.errno() == Some(ENODEV) => Ok(false),
        Err(e) => Err(e),
    }
}

fn family(a: &IpAddr) -> AddressFamily {
    if a.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// Adds `net` to the interface; an address that is already there is fine.
pub fn add_address(nl: &mut Netlink, index: u32, name: &str, net: IpNet) -> Result<()> {
    let mut m = AddressMessage::default();
    m.header.family = family(&net.addr);
    m.header.prefix_len = net.prefix;
    m.header.index = index;
    m.attributes.push(AddressAttribute::Local(net.addr));
    m.attributes.push(AddressAttribute::Address(net.addr));
    match nl.request(
        RouteNetlinkMessage::NewAddress(m),
        NLM_F_CREATE | NLM_F_EXCL,
        &format!("adding address {net} to {name:?}"),
    ) {
        Err(e) if e.errno() == Some(EEXIST) => Ok(()),
        r => r,
    }
}

/// `ip route add default via GW dev NAME`.
pub fn add_default_route(nl: &mut Netlink, index: u32, name: &str, gw: IpAddr) -> Result<()> {
    let mut m = RouteMessage::default();
    m.header.address_family = family(&gw);
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::Boot;
    m.header.scope = RouteScope::Universe;
    m.header.kind = RouteType::Unicast;
    let gw_attr = match gw {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    };
    m.attributes.push(RouteAttribute::Gateway(gw_attr));
    m.attributes.push(RouteAttribute::Oif(index));
    nl.request(
        RouteNetlinkMessage::NewRoute(m),
        NLM_F_CREATE | NLM_F_EXCL,
        &format!("adding default route via {gw} on {name:?}"),
    )
}
