//! The decisions of `network connect` / `network disconnect`, pure and unit-tested: what
//! may be connected to what, which address a connect takes, and where a container's
//! default route goes when its networks change. The engine side (records under the
//! lock, the veth in the running container, the hosts files, the rules) is `live.rs`.

use std::net::Ipv4Addr;

use super::mode::{valid_hostname, NetworkMode};
use super::{ipam, Endpoint, NetworkRecord};
use crate::error::{Error, Result};

/// What `network connect` asks for besides the network and the container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// `--alias` (repeatable): names it is also known by on this network.
    pub aliases: Vec<String>,
    /// `--ip`: this address instead of the lowest free one.
    pub ip: Option<Ipv4Addr>,
}

impl ConnectOptions {
    /// From the CLI's strings (or an API's); errors name the field.
    pub fn parse(aliases: &[String], ip: Option<&str>) -> Result<ConnectOptions> {
        let o = ConnectOptions {
            aliases: aliases.to_vec(),
            ip: ip.map(|s| ipam::parse_addr("ip", s)).transpose()?,
        };
        check_aliases(&o.aliases)?;
        Ok(o)
    }
}

/// The NETWORK argument: a network, not a mode (`none`, `host`, `container:NAME` are
/// how a container's namespace is made, fixed at create).
pub fn check_network_ref(reference: &str) -> Result<()> {
    if reference == "none" || reference == "host" || reference.starts_with("container:") {
        return Err(Error::invalid(
            "network",
            format!(
                "{reference} is a network mode fixed when the container is created, not a \
                 network one can connect to or disconnect from"
            ),
        ));
    }
    Ok(())
}

/// A container whose namespace is not its own to plug into (`host`, `container:NAME`)
/// or that was made without one (`none`) cannot join networks, as in Docker.
pub fn check_mode(container: &str, mode: &NetworkMode) -> Result<()> {
    let why = match mode {
        NetworkMode::Bridge | NetworkMode::Named(_) => return Ok(()),
        NetworkMode::None => "was created with --network none (no networks, by request)",
        NetworkMode::Host => "shares the host's network namespace",
        NetworkMode::Container(_) => "shares another container's network namespace",
    };
    Err(Error::invalid(
        "container",
        format!("{container} {why}: it cannot be connected to or disconnected from networks"),
    ))
}

/// Aliases are host names.
pub fn check_aliases(aliases: &[String]) -> Result<()> {
    for (i, a) in aliases.iter().enumerate() {
        if !valid_hostname(a) {
            return Err(Error::invalid(
                format!("aliases[{i}]"),
                format!("{a:?} is not a host name"),
            ));
        }
    }
    Ok(())
}

/// The endpoint container `id` gets on `rec`: `ip` if given (inside the subnet, not its
/// network, broadcast or gateway address, not another container's; `holder` names the
/// container that has it), else the lowest free address. Refused when `id` is already
/// on the network.
pub fn endpoint_for(
    rec: &NetworkRecord,
    id: &str,
    container: &str,
    opts: &ConnectOptions,
    holder: impl Fn(&str) -> String,
) -> Result<Endpoint> {
    if rec.endpoints.contains_key(id) {
        return Err(Error::invalid(
            "network",
            format!("{container} is already connected to network {}", rec.name),
        ));
    }
    let ip = match opts.ip {
        Some(ip) => {
            let s = rec.subnet;
            if !s.contains(&ip) {
                return Err(Error::invalid(
                    "ip",
                    format!("{ip} is outside network {}'s subnet {s}", rec.name),
                ));
            }
            if ip == s.network() || ip == s.broadcast() {
                return Err(Error::invalid(
                    "ip",
                    format!("{ip} is the network or broadcast address of {s}"),
                ));
            }
            if ip == rec.gateway {
                return Err(Error::invalid(
                    "ip",
                    format!("{ip} is network {}'s gateway", rec.name),
                ));
            }
            if let Some((other, _)) = rec.endpoints.iter().find(|(_, e)| e.ip == ip) {
                return Err(Error::InUse {
                    kind: "address",
                    name: format!("{ip} on network {}", rec.name),
                    by: format!("container {}", holder(other)),
                });
            }
            ip
        }
        None => ipam::lowest_free(
            rec.subnet,
            rec.gateway,
            rec.endpoints.values().map(|e| e.ip),
        )
        .map_err(|e| match e {
            Error::Invalid { reason, .. } => {
                Error::invalid("network", format!("{}: {reason}", rec.name))
            }
            other => other,
        })?,
    };
    Ok(Endpoint {
        ip,
        mac: ipam::mac_for(ip),
        aliases: opts.aliases.clone(),
        ports: Vec::new(),
    })
}

/// Whether a network joined by a running container gives it its default route: only
/// when it routes out and the container has none yet (the first network keeps it, as
/// in Docker; a container only on internal networks gains one).
pub fn takes_default_route(internal: bool, has_default: bool) -> bool {
    !internal && !has_default
}

/// One of a container's remaining networks after a disconnect, as its namespace shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remaining {
    pub network: String,
    pub internal: bool,
    pub gateway: Ipv4Addr,
    /// The interface inside the container (`eth<n>`), when found.
    pub ifname: Option<String>,
}

/// Where the default route goes after a disconnect took away the one that had it: the
/// first remaining network (in the order given: by name) that routes out and whose
/// interface is there. `None` when the container still has a default route, or has no
/// network with a way out.
pub fn next_default_route(
    has_default: bool,
    remaining: &[Remaining],
) -> Option<(String, Ipv4Addr)> {
    if has_default {
        return None;
    }
    remaining
        .iter()
        .filter(|r| !r.internal)
        .find_map(|r| r.ifname.clone().map(|i| (i, r.gateway)))
}

/// The lowest slot `n` free both for the host end `cv<11 hex of the id><n>` (among
/// `host_links`) and the container's `eth<n>` (among `inner_links`). Slots stop at 99:
/// the host name must fit 15 bytes.
pub fn free_slot(id: &str, host_links: &[String], inner_links: &[String]) -> Option<usize> {
    (0..100).find(|n| {
        let host = super::link::veth_name(id, *n);
        let inner = format!("eth{n}");
        !host_links.contains(&host) && !inner_links.contains(&inner)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn net(endpoints: &[(&str, [u8; 4])]) -> NetworkRecord {
        NetworkRecord {
            name: "back".into(),
            id: "0".repeat(64),
            driver: "bridge".into(),
            subnet: "10.89.0.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 89, 0, 1),
            bridge: "cx-0000000000".into(),
            internal: false,
            labels: BTreeMap::new(),
            created: "2026-01-01T00:00:00Z".into(),
            endpoints: endpoints
                .iter()
                .map(|(id, ip)| {
                    let ip = Ipv4Addr::from(*ip);
                    (
                        id.to_string(),
                        Endpoint {
                            ip,
                            mac: ipam::mac_for(ip),
                            aliases: vec![],
                            ports: vec![],
                        },
                    )
                })
                .collect(),
        }
    }

    fn field(e: Error) -> String {
        e.to_string().split(':').next().unwrap().to_string()
    }

    #[test]
    fn modes_and_network_references_that_cannot_connect_are_refused_by_name() {
        for m in ["bridge", "backend"] {
            check_mode("web", &NetworkMode::parse("n", m).unwrap()).unwrap();
            check_network_ref(m).unwrap();
        }
        for m in ["none", "host", "container:db"] {
            let e = check_mode("web", &NetworkMode::parse("n", m).unwrap()).unwrap_err();
            assert!(e.to_string().starts_with("container: web "), "{e}");
            let e = check_network_ref(m).unwrap_err();
            assert_eq!(field(e), "network");
        }
        let o =
            ConnectOptions::parse(&["db".into(), "pg.local".into()], Some("10.89.0.7")).unwrap();
        assert_eq!(o.ip, Some(Ipv4Addr::new(10, 89, 0, 7)));
        assert_eq!(
            field(ConnectOptions::parse(&[], Some("10.89.0")).unwrap_err()),
            "ip"
        );
        let e = ConnectOptions::parse(&["ok".into(), "no_way".into()], None).unwrap_err();
        assert_eq!(field(e), "aliases[1]");
    }

    #[test]
    fn addresses_are_the_lowest_free_or_the_one_asked_for_if_it_is_free() {
        let rec = net(&[("a", [10, 89, 0, 2]), ("b", [10, 89, 0, 4])]);
        let names = |id: &str| format!("name-of-{id}");
        let ep = endpoint_for(&rec, "c", "c", &ConnectOptions::default(), names).unwrap();
        assert_eq!(ep.ip, Ipv4Addr::new(10, 89, 0, 3));
        assert_eq!(ep.mac, "02:42:0a:59:00:03");
        let want = |ip: [u8; 4]| ConnectOptions {
            aliases: vec!["x".into()],
            ip: Some(Ipv4Addr::from(ip)),
        };
        let ep = endpoint_for(&rec, "c", "c", &want([10, 89, 0, 200]), names).unwrap();
        assert_eq!(
            (ep.ip, ep.aliases),
            (Ipv4Addr::new(10, 89, 0, 200), vec!["x".into()])
        );
        for (ip, why) in [
            ([10, 89, 1, 5], "outside"),
            ([10, 89, 0, 0], "network or broadcast"),
            ([10, 89, 0, 255], "network or broadcast"),
            ([10, 89, 0, 1], "gateway"),
        ] {
            let e = endpoint_for(&rec, "c", "c", &want(ip), names).unwrap_err();
            assert!(
                e.to_string().starts_with("ip: ") && e.to_string().contains(why),
                "{e}"
            );
        }
        let e = endpoint_for(&rec, "c", "c", &want([10, 89, 0, 4]), names)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("10.89.0.4 on network back") && e.contains("name-of-b"),
            "{e}"
        );
        let e = endpoint_for(&rec, "a", "web", &ConnectOptions::default(), names).unwrap_err();
        assert_eq!(
            e.to_string(),
            "network: web is already connected to network back"
        );
        // A full /30: two hosts, one the gateway, one taken.
        let mut small = net(&[("a", [10, 89, 0, 2])]);
        small.subnet = "10.89.0.0/30".parse().unwrap();
        let e = endpoint_for(&small, "c", "c", &ConnectOptions::default(), names).unwrap_err();
        assert!(
            e.to_string().starts_with("network: back: no address left"),
            "{e}"
        );
    }

    #[test]
    fn the_default_route_stays_with_the_first_network_and_moves_on_disconnect() {
        assert!(takes_default_route(false, false));
        assert!(!takes_default_route(false, true));
        assert!(!takes_default_route(true, false));
        let r = |n: &str, internal, last, ifname: Option<&str>| Remaining {
            network: n.into(),
            internal,
            gateway: Ipv4Addr::new(10, 89, last, 1),
            ifname: ifname.map(str::to_string),
        };
        let left = [
            r("a-internal", true, 1, Some("eth1")),
            r("b-gone", false, 2, None),
            r("c-out", false, 3, Some("eth2")),
            r("d-out", false, 4, Some("eth3")),
        ];
        assert_eq!(
            next_default_route(false, &left),
            Some(("eth2".to_string(), Ipv4Addr::new(10, 89, 3, 1)))
        );
        assert_eq!(next_default_route(true, &left), None);
        assert_eq!(next_default_route(false, &left[..2]), None);
    }

    #[test]
    fn slots_skip_names_taken_on_either_side() {
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(free_slot(&id, &[], &[]), Some(0));
        let host = vec![super::super::link::veth_name(&id, 0)];
        let inner = vec!["lo".to_string(), "eth1".to_string()];
        assert_eq!(free_slot(&id, &host, &inner), Some(2));
        let all: Vec<String> = (0..100).map(|n| format!("eth{n}")).collect();
        assert_eq!(free_slot(&id, &[], &all), None);
        assert!(super::super::link::veth_name(&id, 99).len() <= 15);
    }
}
