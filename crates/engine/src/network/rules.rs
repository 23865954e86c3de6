//! The packet-filter rules that networks need, planned as data from the records and
//! written as one nft script (pure: nothing here touches the kernel; `sync.rs` applies
//! the script). The script replaces the engine's whole table in one transaction, so
//! applying it again is harmless and whatever a crash left in the table is gone after
//! the next apply: the rules are always a function of the registry.
//!
//! What the table does (docs/networking.md):
//! - isolation: a packet routed from one codex bridge to another (`cx-*`, any root's) is
//!   dropped, so containers on different networks cannot reach each other;
//! - `--internal`: nothing is routed into or out of the bridge at all;
//! - outbound NAT: what leaves a non-internal subnet through any other interface is
//!   masqueraded to that interface's address;
//! - published ports: a packet for a local address and a published port (from outside,
//!   or from this host itself) is DNAT-ed to the container; loopback sources and
//!   containers reaching their own network through a published port are masqueraded
//!   so that the reply comes back the way the request went.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::ports::{Binding, Proto};
use super::{NetworkRecord, BRIDGE_PREFIX};

/// One network as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRules {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub internal: bool,
    /// The published ports of its running containers, each to the container's address.
    pub dnat: Vec<(Binding, Ipv4Addr)>,
}

/// Everything in the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub networks: Vec<NetRules>,
}

impl Plan {
    /// The rules of `networks`, with the published ports of the containers in `active`
    /// only (a container that has stopped, or whose supervisor died, publishes nothing).
    /// A network whose bridge name is not one the engine makes is left out: the name is
    /// written into the script, and a record is not trusted to quote itself.
    pub fn from_records(networks: &[NetworkRecord], active: &BTreeSet<String>) -> Plan {
        let networks = networks
            .iter()
            .filter(|n| is_bridge_name(&n.bridge))
            .map(|n| NetRules {
                bridge: n.bridge.clone(),
                subnet: n.subnet,
                internal: n.internal,
                dnat: if n.internal {
                    Vec::new()
                } else {
                    n.endpoints
                        .iter()
                        .filter(|(id, _)| active.contains(*id))
                        .flat_map(|(_, ep)| ep.ports.iter().map(|b| (b.clone(), ep.ip)))
                        .collect()
                },
            })
            .collect();
        Plan { networks }
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether any network routes out (the engine then turns forwarding on).
    pub fn needs_forwarding(&self) -> bool {
        self.networks.iter().any(|n| !n.internal)
    }

    /// The bridges that carry published ports: loopback-sourced packets DNAT-ed to a
    /// container leave through them, which the kernel allows only with `route_localnet`.
    pub fn localnet_bridges(&self) -> Vec<&str> {
        self.networks
            .iter()
            .filter(|n| !n.dnat.is_empty())
            .map(|n| n.bridge.as_str())
            .collect()
    }

    /// The nft script: (re)creates table `ip <table>` with exactly this plan's rules, or
    /// only deletes it when the plan is empty. `table` must be a plain word.
    pub fn script(&self, table: &str) -> String {
        // Declaring the table first makes the delete valid when it does not exist yet.
        let mut s = format!("table ip {table} {{}}\ndelete table ip {table}\n");
        if self.is_empty() {
            return s;
        }
        let _ = writeln!(s, "table ip {table} {{");
        s.push_str(
            "  chain forward {\n    type filter hook forward priority filter; policy accept;\n",
        );
        for n in &self.networks {
            let b = &n.bridge;
            if n.internal {
                let _ = writeln!(s, "    iifname \"{b}\" oifname != \"{b}\" drop");
                let _ = writeln!(s, "    oifname \"{b}\" iifname != \"{b}\" drop");
            } else {
                let _ = writeln!(
                    s,
                    "    iifname \"{b}\" oifname \"{BRIDGE_PREFIX}*\" oifname != \"{b}\" drop"
                );
            }
        }
        s.push_str("  }\n");

        let dnat: Vec<String> = self
            .networks
            .iter()
            .flat_map(|n| n.dnat.iter())
            .map(|(b, ip)| dnat_rule(b, *ip))
            .collect();
        if !dnat.is_empty() {
            for (chain, hook) in [("prerouting", "prerouting"), ("output", "output")] {
                let _ = writeln!(
                    s,
                    "  chain {chain} {{\n    type nat hook {hook} priority -100; policy accept;\n    fib daddr type local jump published\n  }}"
                );
            }
            s.push_str("  chain published {\n");
            for r in &dnat {
                let _ = writeln!(s, "    {r}");
            }
            s.push_str("  }\n");
        }

        s.push_str(
            "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
        );
        for n in self.networks.iter().filter(|n| !n.internal) {
            let (b, net) = (&n.bridge, n.subnet);
            let _ = writeln!(s, "    ip saddr {net} oifname != \"{b}\" masquerade");
            if !n.dnat.is_empty() {
                let _ = writeln!(s, "    oifname \"{b}\" ip saddr 127.0.0.0/8 masquerade");
                let _ = writeln!(
                    s,
                    "    oifname \"{b}\" ip saddr {net} ct status dnat masquerade"
                );
            }
        }
        s.push_str("  }\n}\n");
        s
    }
}

fn dnat_rule(b: &Binding, to: Ipv4Addr) -> String {
    let proto = match b.proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    };
    let daddr = match b.host_ip {
        Some(ip) if !ip.is_unspecified() => format!("ip daddr {ip} "),
        _ => String::new(),
    };
    format!(
        "{daddr}{proto} dport {} dnat to {to}:{}",
        b.host_port, b.container_port
    )
}

/// `cx-` and lowercase hex digits: the only bridge names written into a script.
pub fn is_bridge_name(s: &str) -> bool {
    s.strip_prefix(BRIDGE_PREFIX).is_some_and(|h| {
        !h.is_empty()
            && h.len() <= super::BRIDGE_ID_DIGITS
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

/// The engine's table for the root at `root`: `codex_` and 8 hex digits of a hash of the
/// path, so that two roots sharing one network namespace keep out of each other's table.
pub fn table_name(root: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(root.as_os_str().as_encoded_bytes());
    let hex: String = h.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("codex_{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{Endpoint, NetworkRecord};
    use std::collections::BTreeMap;

    fn net(name: &str, bridge: &str, subnet: &str, internal: bool) -> NetworkRecord {
        let subnet: Ipv4Net = subnet.parse().unwrap();
        NetworkRecord {
            name: name.into(),
            id: "a".repeat(64),
            driver: "bridge".into(),
            gateway: subnet.hosts().next().unwrap(),
            subnet,
            bridge: bridge.into(),
            internal,
            labels: BTreeMap::new(),
            created: "now".into(),
            endpoints: BTreeMap::new(),
        }
    }

    fn ep(ip: &str, ports: Vec<Binding>) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap(),
            mac: "02:42:00:00:00:00".into(),
            aliases: vec![],
            ports,
        }
    }

    fn bind(ip: Option<&str>, host: u16, cport: u16, proto: Proto) -> Binding {
        Binding {
            host_ip: ip.map(|i| i.parse().unwrap()),
            host_port: host,
            container_port: cport,
            proto,
        }
    }

    #[test]
    fn an_empty_plan_only_deletes_the_table() {
        let p = Plan::from_records(&[], &BTreeSet::new());
        assert!(p.is_empty() && !p.needs_forwarding());
        assert_eq!(
            p.script("codex_1"),
            "table ip codex_1 {}\ndelete table ip codex_1\n"
        );
    }

    #[test]
    fn networks_are_isolated_internal_ones_closed_and_the_rest_masqueraded() {
        let recs = [
            net("a", "cx-aaaa", "10.88.0.0/24", false),
            net("i", "cx-bbbb", "10.88.1.0/24", true),
        ];
        let p = Plan::from_records(&recs, &BTreeSet::new());
        assert!(p.needs_forwarding());
        let s = p.script("codex_1");
        // The whole table is replaced in the same transaction.
        assert!(s.starts_with("table ip codex_1 {}\ndelete table ip codex_1\ntable ip codex_1 {\n"));
        for want in [
            "iifname \"cx-aaaa\" oifname \"cx-*\" oifname != \"cx-aaaa\" drop",
            "iifname \"cx-bbbb\" oifname != \"cx-bbbb\" drop",
            "oifname \"cx-bbbb\" iifname != \"cx-bbbb\" drop",
            "ip saddr 10.88.0.0/24 oifname != \"cx-aaaa\" masquerade",
        ] {
            assert!(s.contains(want), "{want}\n{s}");
        }
        // No NAT out of the internal network, and no port chains without ports.
        assert!(!s.contains("10.88.1.0/24"), "{s}");
        assert!(!s.contains("published"), "{s}");
        // Only internal networks: nothing routes out, forwarding is not needed.
        let only_internal = Plan::from_records(&recs[1..], &BTreeSet::new());
        assert!(!only_internal.needs_forwarding());
    }

    #[test]
    fn published_ports_of_active_containers_only_are_dnat_ed() {
        let mut a = net("a", "cx-aaaa", "10.88.0.0/24", false);
        let (up, down) = ("1".repeat(64), "2".repeat(64));
        a.endpoints.insert(
            up.clone(),
            ep(
                "10.88.0.2",
                vec![
                    bind(None, 8080, 80, Proto::Tcp),
                    bind(Some("127.0.0.1"), 5353, 53, Proto::Udp),
                ],
            ),
        );
        a.endpoints.insert(
            down.clone(),
            ep("10.88.0.3", vec![bind(None, 9090, 90, Proto::Tcp)]),
        );
        // A port on an internal network is never published.
        let mut i = net("i", "cx-bbbb", "10.88.1.0/24", true);
        i.endpoints.insert(
            up.clone(),
            ep("10.88.1.2", vec![bind(None, 7070, 70, Proto::Tcp)]),
        );
        let p = Plan::from_records(&[a, i], &BTreeSet::from([up]));
        assert_eq!(p.localnet_bridges(), ["cx-aaaa"]);
        let s = p.script("codex_1");
        for want in [
            "type nat hook prerouting priority -100; policy accept;\n    fib daddr type local jump published",
            "type nat hook output priority -100; policy accept;\n    fib daddr type local jump published",
            "    tcp dport 8080 dnat to 10.88.0.2:80\n",
            "    ip daddr 127.0.0.1 udp dport 5353 dnat to 10.88.0.2:53\n",
            "oifname \"cx-aaaa\" ip saddr 127.0.0.0/8 masquerade",
            "oifname \"cx-aaaa\" ip saddr 10.88.0.0/24 ct status dnat masquerade",
        ] {
            assert!(s.contains(want), "{want}\n{s}");
        }
        assert!(!s.contains("9090") && !s.contains("7070"), "{s}");
    }

    #[test]
    fn only_the_engines_bridge_names_reach_the_script() {
        assert!(is_bridge_name("cx-0123456789"));
        for bad in ["cx-", "eth0", "cx-ABC", "cx-0\" accept", "cx-01234567890"] {
            assert!(!is_bridge_name(bad), "{bad}");
        }
        let recs = [net("evil", "cx-1\" accept #", "10.88.0.0/24", false)];
        assert!(Plan::from_records(&recs, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn table_names_are_plain_words_and_differ_per_root() {
        let a = table_name(std::path::Path::new("/var/lib/codex"));
        let b = table_name(std::path::Path::new("/tmp/other"));
        assert_ne!(a, b);
        assert_eq!(a.len(), "codex_".len() + 8);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'));
    }
}
