//! What one container's hosts file and `inspect` say about its networks, worked out
//! from the records: its own address on each network, and the other containers on them
//! with their names and aliases. Pure: the caller reads the records.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use super::hostfiles::{Hosts, HostsEntry};
use super::mode::{AddHost, HOST_GATEWAY};
use super::NetworkRecord;
use crate::error::{Error, Result};

/// A container's place on one network, as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    pub aliases: Vec<String>,
    /// Its published ports while it runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<super::ports::Binding>,
}

/// Container `id`'s attachments, by network name.
pub fn attachments(networks: &[NetworkRecord], id: &str) -> BTreeMap<String, Attachment> {
    networks
        .iter()
        .filter_map(|n| {
            let ep = n.endpoints.get(id)?;
            Some((
                n.name.clone(),
                Attachment {
                    network: n.name.clone(),
                    ip: ep.ip,
                    prefix_len: n.subnet.prefix_len(),
                    gateway: n.gateway,
                    mac: ep.mac.clone(),
                    aliases: ep.aliases.clone(),
                    ports: ep.ports.clone(),
                },
            ))
        })
        .collect()
}

/// The hosts file of container `id` (named `name`, hostname `hostname`): its address on
/// each network it is on, every other container on those networks under its name
/// (`names` maps ids to names; an id without a name is a container being removed, and is
/// left out) and aliases, and `extra` with `host-gateway` resolved to the gateway of its
/// first network (by name).
pub fn hosts_for(
    networks: &[NetworkRecord],
    names: &BTreeMap<String, String>,
    id: &str,
    name: &str,
    hostname: &str,
    extra: &[AddHost],
) -> Result<Hosts> {
    let mine: Vec<&NetworkRecord> = networks
        .iter()
        .filter(|n| n.endpoints.contains_key(id))
        .collect();
    let own = mine
        .iter()
        .filter_map(|n| n.endpoints.get(id).map(|e| IpAddr::V4(e.ip)))
        .collect();
    let mut peers = Vec::new();
    for n in &mine {
        for (peer, ep) in n.endpoints.iter().filter(|(p, _)| p.as_str() != id) {
            let Some(peer_name) = names.get(peer) else {
                continue;
            };
            let mut all = vec![peer_name.clone()];
            all.extend(ep.aliases.iter().cloned());
            peers.push(HostsEntry {
                ip: IpAddr::V4(ep.ip),
                names: all,
            });
        }
    }
    let mut extra_entries = Vec::new();
    for (i, h) in extra.iter().enumerate() {
        let ip = if h.ip == HOST_GATEWAY {
            let gw = mine.first().map(|n| n.gateway).ok_or_else(|| {
                Error::invalid(
                    format!("add_hosts[{i}]"),
                    format!("{HOST_GATEWAY}: the container is on no network"),
                )
            })?;
            IpAddr::V4(gw)
        } else {
            h.ip.parse().map_err(|_| {
                Error::invalid(
                    format!("add_hosts[{i}]"),
                    format!("{:?} is not an IP address", h.ip),
                )
            })?
        };
        extra_entries.push(HostsEntry {
            ip,
            names: vec![h.host.clone()],
        });
    }
    Ok(Hosts {
        hostname: hostname.to_string(),
        name: name.to_string(),
        own,
        peers,
        extra: extra_entries,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{ipam, Endpoint};
    use super::*;

    fn id(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn network(name: &str, subnet: &str, members: &[(char, u8, &[&str])]) -> NetworkRecord {
        let subnet: ipnet::Ipv4Net = subnet.parse().unwrap();
        let base = subnet.network().octets();
        NetworkRecord {
            name: name.into(),
            id: "0".repeat(64),
            driver: "bridge".into(),
            subnet,
            gateway: Ipv4Addr::new(base[0], base[1], base[2], 1),
            bridge: "cx-0000000000".into(),
            internal: false,
            labels: BTreeMap::new(),
            created: "2026-01-01T00:00:00Z".into(),
            endpoints: members
                .iter()
                .map(|(c, last, aliases)| {
                    let ip = Ipv4Addr::new(base[0], base[1], base[2], *last);
                    (
                        id(*c),
                        Endpoint {
                            ip,
                            mac: ipam::mac_for(ip),
                            aliases: aliases.iter().map(|a| a.to_string()).collect(),
                            ports: Vec::new(),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn peers_are_the_containers_on_the_same_networks_by_name_and_alias() {
        let nets = vec![
            network(
                "back",
                "10.88.1.0/24",
                &[('a', 2, &["api"]), ('b', 3, &["pg", "db"])],
            ),
            network("front", "10.88.2.0/24", &[('a', 5, &[]), ('c', 6, &[])]),
            network("other", "10.88.3.0/24", &[('d', 2, &["secret"])]),
        ];
        let names: BTreeMap<String, String> =
            [('a', "api-1"), ('b', "db-1"), ('c', "web-1"), ('d', "x")]
                .into_iter()
                .map(|(c, n)| (id(c), n.to_string()))
                .collect();
        let extra = [
            AddHost::parse("a", "host.internal:host-gateway").unwrap(),
            AddHost::parse("a", "ext:192.0.2.1").unwrap(),
        ];
        let h = hosts_for(&nets, &names, &id('a'), "api-1", "api", &extra).unwrap();
        assert_eq!(
            h.own,
            [
                "10.88.1.2".parse::<IpAddr>().unwrap(),
                "10.88.2.5".parse().unwrap()
            ]
        );
        let peers: Vec<(String, Vec<String>)> = h
            .peers
            .iter()
            .map(|p| (p.ip.to_string(), p.names.clone()))
            .collect();
        assert_eq!(
            peers,
            [
                (
                    "10.88.1.3".to_string(),
                    vec!["db-1".to_string(), "pg".into(), "db".into()]
                ),
                ("10.88.2.6".to_string(), vec!["web-1".to_string()]),
            ]
        );
        // The first network by name gives host-gateway.
        assert_eq!(h.extra[0].ip.to_string(), "10.88.1.1");
        let text = super::super::hostfiles::hosts_file(&h);
        assert!(
            !text.contains("secret"),
            "another network's container: {text}"
        );
        assert!(text.contains("10.88.1.3\tdb-1 pg db\n"), "{text}");

        let at = attachments(&nets, &id('b'));
        assert_eq!(at.len(), 1);
        assert_eq!(at["back"].gateway.to_string(), "10.88.1.1");
        assert_eq!(
            (at["back"].prefix_len, at["back"].mac.as_str()),
            (24, "02:42:0a:58:01:03")
        );
    }

    #[test]
    fn a_container_on_no_network_has_no_gateway_to_give() {
        let extra = [AddHost::parse("a", "gw:host-gateway").unwrap()];
        let e = hosts_for(&[], &BTreeMap::new(), &id('a'), "a", "a", &extra)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("add_hosts[0]:"), "{e}");
        let h = hosts_for(&[], &BTreeMap::new(), &id('a'), "a", "box", &[]).unwrap();
        assert!(h.own.is_empty() && h.peers.is_empty());
    }
}
