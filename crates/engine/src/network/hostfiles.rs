//! The container's `/etc/hosts` and `/etc/resolv.conf`, as text made from data: the
//! engine writes them into the container's directory before start (and rewrites hosts
//! as peers come and go); nothing here reads the host.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// Lines every hosts file starts with (Docker's).
const LOCALHOST: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// Where a container's own names point when it has no address of its own (`none`):
/// Debian's convention, so `hostname -i` and programs that resolve their own name work.
const NO_ADDRESS: &str = "127.0.1.1";

/// One line: an address and the names that resolve to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsEntry {
    pub ip: IpAddr,
    pub names: Vec<String>,
}

/// What a container's hosts file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hosts {
    /// The container's hostname and its name (the same name once if they are equal).
    pub hostname: String,
    pub name: String,
    /// Its addresses, one per network it is on (none for `none`).
    pub own: Vec<IpAddr>,
    /// The other containers on its networks, each with its name and aliases.
    pub peers: Vec<HostsEntry>,
    /// `--add-host` entries, `host-gateway` already resolved.
    pub extra: Vec<HostsEntry>,
}

/// The hosts file. `--add-host` entries come first after localhost, then the container's
/// own names, then its peers: a resolver takes the first line that names a host, so a
/// user's entry wins over a peer's and a peer never shadows the container's own name. A
/// name already given is left off later lines.
pub fn hosts_file(h: &Hosts) -> String {
    let mut out = String::from(LOCALHOST);
    let mut seen: BTreeSet<String> = ["localhost".to_string()].into();
    for e in &h.extra {
        line(&mut out, &mut seen, &e.ip.to_string(), &e.names);
    }
    let own_names: Vec<String> = [&h.hostname, &h.name]
        .into_iter()
        .filter(|n| !n.is_empty())
        .cloned()
        .collect();
    if h.own.is_empty() {
        line(&mut out, &mut seen, NO_ADDRESS, &own_names);
    }
    // Each own address (one per network) names the container; a name given by an
    // `--add-host` line stays the user's.
    for ip in &h.own {
        let mut names: Vec<&str> = Vec::new();
        for n in &own_names {
            let by_user = h.extra.iter().any(|e| e.names.contains(n));
            if !by_user && !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
        if !names.is_empty() {
            out.push_str(&format!("{ip}\t{}\n", names.join(" ")));
        }
    }
    seen.extend(own_names);
    let mut peers = h.peers.clone();
    peers.sort_by_key(|p| p.ip);
    for p in &peers {
        line(&mut out, &mut seen, &p.ip.to_string(), &p.names);
    }
    out
}

/// Appends `ip` and those of `names` not given before (none: no line).
fn line(out: &mut String, seen: &mut BTreeSet<String>, ip: &str, names: &[String]) {
    let fresh: Vec<&str> = names
        .iter()
        .filter(|n| !n.is_empty() && seen.insert(n.to_string()))
        .map(String::as_str)
        .collect();
    if !fresh.is_empty() {
        out.push_str(&format!("{ip}\t{}\n", fresh.join(" ")));
    }
}

/// Docker's fallback when no usable nameserver is left: Google's public resolvers.
pub const FALLBACK_NAMESERVERS: &[&str] = &["8.8.8.8", "8.8.4.4"];

/// The container's resolv.conf from the host's (`host`: its text). With `dns` given, those
/// are the nameservers; otherwise the host's, less loopback ones (they answer only inside
/// the host's namespace) and IPv6 ones (the networks are IPv4 only); when none is left,
/// [`FALLBACK_NAMESERVERS`], as Docker does. `search` and `options` lines are kept.
pub fn resolv_conf(host: &str, dns: &[IpAddr]) -> String {
    let mut servers: Vec<String> = Vec::new();
    let mut rest: Vec<String> = Vec::new();
    for line in host.lines() {
        let t = line.trim();
        let mut words = t.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                    if usable_nameserver(ip) {
                        servers.push(ip.to_string());
                    }
                }
            }
            Some("search" | "domain" | "options") => rest.push(t.to_string()),
            _ => {}
        }
    }
    if !dns.is_empty() {
        servers = dns.iter().map(IpAddr::to_string).collect();
    } else if servers.is_empty() {
        servers = FALLBACK_NAMESERVERS.iter().map(|s| s.to_string()).collect();
    }
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    for r in rest {
        out.push_str(&r);
        out.push('\n');
    }
    out
}

fn usable_nameserver(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
        IpAddr::V6(_) => false,
    }
}

/// Where the host's real nameservers are listed: systemd-resolved's stub (127.0.0.53) in
/// `/etc/resolv.conf` is loopback, and resolved lists its upstreams in
/// `/run/systemd/resolve/resolv.conf` (Docker reads that one in this case). `etc` is the
/// text of `/etc/resolv.conf`.
pub fn host_resolv_conf_path(etc: &str) -> &'static str {
    let stub = etc.lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some("nameserver") && w.next() == Some("127.0.0.53")
    });
    if stub {
        "/run/systemd/resolve/resolv.conf"
    } else {
        "/etc/resolv.conf"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hosts_name_the_container_its_peers_and_extra_hosts_in_order() {
        let h = Hosts {
            hostname: "web".into(),
            name: "web-1".into(),
            own: vec![ip("10.88.0.2")],
            peers: vec![
                HostsEntry {
                    ip: ip("10.88.0.4"),
                    names: vec!["cache".into()],
                },
                HostsEntry {
                    ip: ip("10.88.0.3"),
                    names: vec!["db-1".into(), "db".into(), "cache".into()],
                },
            ],
            extra: vec![HostsEntry {
                ip: ip("192.0.2.9"),
                names: vec!["api.example".into()],
            }],
        };
        let text = hosts_file(&h);
        assert!(text.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost"));
        let tail: Vec<&str> = text.lines().skip(6).collect();
        assert_eq!(
            tail,
            [
                "192.0.2.9\tapi.example",
                "10.88.0.2\tweb web-1",
                // Sorted by address; `cache` is the first peer's alias that wins.
                "10.88.0.3\tdb-1 db cache",
            ]
        );
    }

    #[test]
    fn a_users_entry_wins_and_names_are_never_repeated() {
        let h = Hosts {
            hostname: "abc123".into(),
            name: "abc123".into(),
            own: vec![ip("10.88.0.2"), ip("10.89.0.7")],
            peers: vec![HostsEntry {
                ip: ip("10.88.0.3"),
                names: vec!["db".into(), "abc123".into()],
            }],
            extra: vec![HostsEntry {
                ip: ip("10.1.1.1"),
                names: vec!["db".into()],
            }],
        };
        let tail: Vec<String> = hosts_file(&h).lines().skip(6).map(String::from).collect();
        assert_eq!(
            tail,
            ["10.1.1.1\tdb", "10.88.0.2\tabc123", "10.89.0.7\tabc123"]
        );
    }

    #[test]
    fn without_an_address_the_own_names_point_at_127_0_1_1() {
        let h = Hosts {
            hostname: "box".into(),
            name: "job".into(),
            ..Hosts::default()
        };
        assert!(hosts_file(&h).ends_with("127.0.1.1\tbox job\n"));
    }

    #[test]
    fn resolv_conf_drops_loopback_and_v6_servers_and_keeps_search() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 192.0.2.53\n\
                    nameserver fd00::53\nsearch corp.example\noptions edns0 trust-ad\n";
        assert_eq!(
            resolv_conf(host, &[]),
            "nameserver 192.0.2.53\nsearch corp.example\noptions edns0 trust-ad\n"
        );
        assert_eq!(
            resolv_conf(host, &[ip("1.1.1.1"), ip("9.9.9.9")]),
            "nameserver 1.1.1.1\nnameserver 9.9.9.9\nsearch corp.example\noptions edns0 trust-ad\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.1\n", &[]),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf("", &[]),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn systemd_resolveds_stub_sends_us_to_its_upstream_list() {
        assert_eq!(
            host_resolv_conf_path("nameserver 127.0.0.53\noptions edns0\n"),
            "/run/systemd/resolve/resolv.conf"
        );
        assert_eq!(
            host_resolv_conf_path("nameserver 10.255.255.53\n"),
            "/etc/resolv.conf"
        );
    }
}
