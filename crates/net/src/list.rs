//! Dumps of a namespace's addresses and routes, in the shapes of [`crate::types`].

use std::collections::HashMap;
use std::net::IpAddr;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::ops;
use crate::socket::Netlink;
use crate::types::{Address, IpNet, Route};

pub fn addresses(nl: &mut Netlink) -> Result<Vec<Address>> {
    let names: HashMap<u32, String> = ops::dump_links(nl)?
        .iter()
        .map(|m| {
            let l = ops::to_link(m);
            (l.index, l.name)
        })
        .collect();
    let msgs = nl.dump(
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        "listing addresses",
    )?;
    let mut out = Vec::new();
    for m in msgs {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on a
        // point-to-point link and the same as IFA_LOCAL otherwise (IPv6 has only it).
        let mut local = None;
        let mut address = None;
        for attr in &a.attributes {
            match attr {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                _ => {}
            }
        }
        let Some(ip) = local.or(address) else {
            continue;
        };
        out.push(Address {
            index: a.header.index,
            ifname: names.get(&a.header.index).cloned().unwrap_or_default(),
            net: IpNet {
                addr: ip,
                prefix: a.header.prefix_len,
            },
        });
    }
    Ok(out)
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

pub fn routes(nl: &mut Netlink) -> Result<Vec<Route>> {
    let msgs = nl.dump(
        RouteNetlinkMessage::GetRoute(RouteMessage::default()),
        "listing routes",
    )?;
    let mut out = Vec::new();
    for m in msgs {
        let RouteNetlinkMessage::NewRoute(r) = m else {
            continue;
        };
        let is_ipv4 = match r.header.address_family {
            AddressFamily::Inet => true,
            AddressFamily::Inet6 => false,
            _ => continue,
        };
        let mut route = Route {
            destination: None,
            gateway: None,
            oif: None,
            table: u32::from(r.header.table),
            is_ipv4,
            unicast: r.header.kind == RouteType::Unicast,
        };
        for attr in &r.attributes {
            match attr {
                RouteAttribute::Destination(d) => {
                    route.destination = ip_of(d).map(|addr| IpNet {
                        addr,
                        prefix: r.header.destination_prefix_length,
                    });
                }
                RouteAttribute::Gateway(g) => route.gateway = ip_of(g),
                RouteAttribute::Oif(i) => route.oif = Some(*i),
                RouteAttribute::Table(t) => route.table = *t,
                _ => {}
            }
        }
        out.push(route);
    }
    Ok(out)
}
