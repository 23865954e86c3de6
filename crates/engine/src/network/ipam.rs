//! IP address management, with no kernel in sight: which subnet a new network gets,
//! which gateway, which address a container gets, and its MAC. The caller passes what it
//! must avoid (the host's routes and addresses, the other networks' subnets) as data, so
//! every rule here is unit-tested without root; the kernel layer supplies the real lists.
//!
//! IPv4 only (the networks are IPv4 only for now).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::{Error, Result};

/// Where automatically chosen subnets come from, in order: each pool is split into
/// subnets of its prefix length, and the first subnet that overlaps nothing wins.
///
/// `/24`s rather than Docker's `/16`s: 253 containers per network is plenty for one
/// host, and a small subnet is far less likely to shadow a LAN or VPN route the host
/// gains later. 10.88/13 first (podman's neighbourhood, rarely a home LAN), then
/// 172.20/14 (inside Docker's 172.17-31 range but above the 172.17-19 that a Docker on
/// the same host takes first). 192.168/16 is left out: home and office LANs live there.
pub const POOLS: &[(Ipv4Addr, u8, u8)] = &[
    (Ipv4Addr::new(10, 88, 0, 0), 13, 24),
    (Ipv4Addr::new(172, 20, 0, 0), 14, 24),
];

/// Parses `A.B.C.D/N` for the field `field`. The address must be the network's own
/// (host bits zero): `10.1.2.3/24` is refused with the `10.1.2.0/24` it probably means,
/// as Docker does, rather than silently changed.
pub fn parse_subnet(field: &str, s: &str) -> Result<Ipv4Net> {
    let net: Ipv4Net = s.trim().parse().map_err(|_| {
        Error::invalid(
            field,
            format!("{s:?} is not an IPv4 CIDR like 10.89.0.0/24"),
        )
    })?;
    if net.addr() != net.network() {
        return Err(Error::invalid(
            field,
            format!("{s:?} has host bits set: did you mean {}?", net.trunc()),
        ));
    }
    if net.prefix_len() > 30 {
        return Err(Error::invalid(
            field,
            format!(
                "{s:?} is too small: a network needs at least a /30 (a gateway and one container)"
            ),
        ));
    }
    if net.prefix_len() < 8 {
        return Err(Error::invalid(
            field,
            format!("{s:?} is too large: use a /8 or smaller"),
        ));
    }
    Ok(net)
}

/// Parses an IPv4 address for the field `field`.
pub fn parse_addr(field: &str, s: &str) -> Result<Ipv4Addr> {
    s.trim()
        .parse()
        .map_err(|_| Error::invalid(field, format!("{s:?} is not an IPv4 address")))
}

/// The gateway of `subnet`: `given` if it is one of its host addresses, else its first
/// host address (Docker's and podman's choice).
pub fn gateway(subnet: Ipv4Net, given: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
    match given {
        None => subnet
            .hosts()
            .next()
            .ok_or_else(|| Error::invalid("subnet", format!("{subnet} has no host addresses"))),
        Some(gw) if !subnet.contains(&gw) => Err(Error::invalid(
            "gateway",
            format!("{gw} is outside the subnet {subnet}"),
        )),
        Some(gw) if gw == subnet.network() || gw == subnet.broadcast() => Err(Error::invalid(
            "gateway",
            format!("{gw} is the network or broadcast address of {subnet}"),
        )),
        Some(gw) => Ok(gw),
    }
}

/// True if the two subnets share an address.
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// What a new subnet must not overlap: the host's routes (a default route, `/0`, is
/// ignored: it overlaps everything and says nothing about local use), the host's
/// addresses with their prefixes, and the subnets of the existing networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taken {
    pub host_routes: Vec<Ipv4Net>,
    pub host_addresses: Vec<Ipv4Net>,
    pub networks: Vec<Ipv4Net>,
}

impl Taken {
    /// The first thing `candidate` overlaps, described for an error message.
    pub fn conflict(&self, candidate: Ipv4Net) -> Option<String> {
        let hit = |list: &[Ipv4Net]| list.iter().copied().find(|n| overlaps(*n, candidate));
        if let Some(n) = hit(&self.networks) {
            return Some(format!("network subnet {n}"));
        }
        let routes: Vec<Ipv4Net> = self
            .host_routes
            .iter()
            .copied()
            .filter(|r| r.prefix_len() > 0)
            .collect();
        if let Some(r) = hit(&routes) {
            return Some(format!("host route {r}"));
        }
        hit(&self.host_addresses).map(|a| format!("host address {a}"))
    }
}

/// The first subnet of [`POOLS`] that overlaps nothing in `taken`.
pub fn pick_subnet(taken: &Taken) -> Result<Ipv4Net> {
    pick_subnet_from(POOLS, taken)
}

/// [`pick_subnet`] over other pools (tests, and a future `--default-address-pool`).
pub fn pick_subnet_from(pools: &[(Ipv4Addr, u8, u8)], taken: &Taken) -> Result<Ipv4Net> {
    for &(base, len, sub) in pools {
        let pool = Ipv4Net::new(base, len)
            .map_err(|e| Error::invalid("subnet", format!("pool {base}/{len}: {e}")))?;
        let subnets = pool
            .subnets(sub)
            .map_err(|e| Error::invalid("subnet", format!("pool {pool} in /{sub}s: {e}")))?;
        if let Some(free) = subnets.into_iter().find(|s| taken.conflict(*s).is_none()) {
            return Ok(free);
        }
    }
    let pools: Vec<String> = pools.iter().map(|(b, l, _)| format!("{b}/{l}")).collect();
    Err(Error::invalid(
        "subnet",
        format!(
            "no free subnet left in {}: give one with --subnet",
            pools.join(", ")
        ),
    ))
}

/// The lowest address of `subnet` that is not the network, broadcast or gateway address
/// and not in `used`.
pub fn lowest_free(
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    used: impl IntoIterator<Item = Ipv4Addr>,
) -> Result<Ipv4Addr> {
    let used: std::collections::BTreeSet<Ipv4Addr> = used.into_iter().collect();
    subnet
        .hosts()
        .find(|a| *a != gateway && !used.contains(a))
        .ok_or_else(|| {
            Error::invalid(
                "network",
                format!("no address left in {subnet} ({} in use)", used.len()),
            )
        })
}

/// `02:42:` then the four bytes of the address, as Docker does: unique on the network as
/// long as the address is, locally administered (bit 1 of the first byte), unicast.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// Routes (`destination/prefix`) from the text of `/proc/net/route`: the kernel's IPv4
/// table as the calling process's network namespace sees it, readable without root. A
/// stand-in until the netlink layer lists routes and addresses itself; the connected
/// route of each address with a prefix is there, so addresses are covered too (except
/// `/32`s added with `noprefixroute`).
pub fn parse_proc_net_route(text: &str) -> Vec<Ipv4Net> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        let (Some(dst), Some(mask)) = (cols.get(1), cols.get(7)) else {
            continue;
        };
        let (Ok(dst), Ok(mask)) = (u32::from_str_radix(dst, 16), u32::from_str_radix(mask, 16))
        else {
            continue;
        };
        // The kernel prints the network-order word as a host-order integer (a
        // little-endian host shows 10.88.0.0 as 0000580A): its native bytes are the
        // address's.
        let dst = Ipv4Addr::from(dst.to_ne_bytes());
        let mask = Ipv4Addr::from(mask.to_ne_bytes());
        if let Ok(net) = Ipv4Net::with_netmask(dst, mask) {
            out.push(net.trunc());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_parse_strictly_and_errors_name_the_field() {
        assert_eq!(
            parse_subnet("subnet", "10.89.0.0/24").unwrap(),
            net("10.89.0.0/24")
        );
        let e = parse_subnet("subnet", "10.89.0.7/24")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("subnet:") && e.contains("10.89.0.0/24"),
            "{e}"
        );
        for bad in [
            "10.89.0.0",
            "10.89.0.0/33",
            "banana",
            "10.0.0.0/31",
            "10.0.0.0/4",
            "fd00::/64",
        ] {
            let e = parse_subnet("--subnet", bad).unwrap_err().to_string();
            assert!(e.starts_with("--subnet:"), "{bad}: {e}");
        }
        assert!(parse_addr("gateway", "10.0.0.300").is_err());
    }

    #[test]
    fn the_gateway_is_the_first_host_or_a_given_one_inside_the_subnet() {
        let s = net("10.89.3.0/24");
        assert_eq!(gateway(s, None).unwrap(), Ipv4Addr::new(10, 89, 3, 1));
        let gw = Ipv4Addr::new(10, 89, 3, 254);
        assert_eq!(gateway(s, Some(gw)).unwrap(), gw);
        for bad in ["10.89.4.1", "10.89.3.0", "10.89.3.255"] {
            let e = gateway(s, Some(bad.parse().unwrap()))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("gateway:"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_picked_subnet_avoids_host_routes_addresses_and_other_networks() {
        assert_eq!(pick_subnet(&Taken::default()).unwrap(), net("10.88.0.0/24"));
        let taken = Taken {
            // The default route is no conflict; a VPN's 10.88.0.0/23 is.
            host_routes: vec![net("0.0.0.0/0"), net("10.88.0.0/23")],
            host_addresses: vec![net("10.88.2.5/32")],
            networks: vec![net("10.88.3.0/24")],
        };
        assert_eq!(pick_subnet(&taken).unwrap(), net("10.88.4.0/24"));
        assert_eq!(
            taken.conflict(net("10.88.3.0/25")).unwrap(),
            "network subnet 10.88.3.0/24"
        );
        // A route covering a whole pool moves the choice to the next pool.
        let taken = Taken {
            host_routes: vec![net("10.0.0.0/8")],
            ..Taken::default()
        };
        assert_eq!(pick_subnet(&taken).unwrap(), net("172.20.0.0/24"));
    }

    #[test]
    fn an_exhausted_pool_is_an_error_that_says_what_to_do() {
        let pools = [(Ipv4Addr::new(10, 1, 0, 0), 23, 24)];
        let taken = Taken {
            networks: vec![net("10.1.0.0/24"), net("10.1.1.0/24")],
            ..Taken::default()
        };
        let e = pick_subnet_from(&pools, &taken).unwrap_err().to_string();
        assert!(e.starts_with("subnet:") && e.contains("--subnet"), "{e}");
    }

    #[test]
    fn addresses_are_the_lowest_free_skipping_gateway_network_and_broadcast() {
        let s = net("10.89.0.0/29"); // hosts .1 - .6
        let gw = Ipv4Addr::new(10, 89, 0, 1);
        let a = |d| Ipv4Addr::new(10, 89, 0, d);
        assert_eq!(lowest_free(s, gw, []).unwrap(), a(2));
        assert_eq!(lowest_free(s, gw, [a(2), a(4)]).unwrap(), a(3));
        // A released address is handed out again before higher ones.
        assert_eq!(lowest_free(s, gw, [a(3), a(4)]).unwrap(), a(2));
        // A gateway in the middle is skipped, the first host is used.
        assert_eq!(lowest_free(s, a(3), [a(2)]).unwrap(), a(1));
        let e = lowest_free(s, gw, [a(2), a(3), a(4), a(5), a(6)])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("network:") && e.contains("no address left"));
    }

    #[test]
    fn macs_follow_dockers_rule() {
        assert_eq!(mac_for(Ipv4Addr::new(172, 17, 0, 2)), "02:42:ac:11:00:02");
        assert_eq!(mac_for(Ipv4Addr::new(10, 88, 0, 255)), "02:42:0a:58:00:ff");
    }

    #[test]
    fn proc_net_route_is_read_as_the_kernel_writes_it() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    wg0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FEFF\t0\t0\t0\n\
                    junk line\n";
        assert_eq!(
            parse_proc_net_route(text),
            vec![net("0.0.0.0/0"), net("192.0.2.0/24"), net("10.88.0.0/15")]
        );
    }
}
