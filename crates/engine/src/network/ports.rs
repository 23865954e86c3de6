//! Published ports: `-p [IP:][HOSTPORT:]CPORT[/tcp|udp]`, `--expose PORT[/PROTO]` and
//! `-P`, parsed and validated with errors that name the flag (pure), and the bindings a
//! start chose ([`Binding`], recorded on the container's endpoint while it runs).

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One `-p`: what the user asked for (the host port may be left to the kernel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// Only this host address (absent: every local address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<Ipv4Addr>,
    /// Absent: a free port chosen at each start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub proto: Proto,
}

/// A published port as a start made it: the host port is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl Binding {
    /// The address the port answers on, `0.0.0.0` for all of them.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// Whether two bindings would claim the same host port (an "all addresses" binding
    /// overlaps every address).
    pub fn clashes_with(&self, other: &Binding) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && (self.host_ip.is_none() || other.host_ip.is_none() || self.host_ip == other.host_ip)
    }
}

impl fmt::Display for Binding {
    /// `0.0.0.0:8080->80/tcp`, as `ps` shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_addr(),
            self.host_port,
            self.container_port,
            self.proto
        )
    }
}

/// A container's port publishing, as its config records it (`-p`, `-P`, `--expose`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// `-p`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// `-P`: every exposed port on a free host port.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// `--expose` (and the image's exposed ports, once images record them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<Exposed>,
}

/// One exposed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exposed {
    pub port: u16,
    pub proto: Proto,
}

impl Publish {
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty() && !self.all && self.expose.is_empty()
    }

    /// From the CLI's strings; errors name the flag and its index.
    pub fn parse(ports: &[String], all: bool, expose: &[String]) -> Result<Publish> {
        let ports = ports
            .iter()
            .enumerate()
            .map(|(i, s)| PortSpec::parse(&format!("publish[{i}]"), s))
            .collect::<Result<Vec<_>>>()?;
        let expose = expose
            .iter()
            .enumerate()
            .map(|(i, s)| {
                parse_expose(&format!("expose[{i}]"), s)
                    .map(|(port, proto)| Exposed { port, proto })
            })
            .collect::<Result<Vec<_>>>()?;
        let p = Publish { ports, all, expose };
        p.specs()?;
        Ok(p)
    }

    /// What a start publishes (see [`effective`]).
    pub fn specs(&self) -> Result<Vec<PortSpec>> {
        let exposed: Vec<(u16, Proto)> = self.expose.iter().map(|e| (e.port, e.proto)).collect();
        effective(&self.ports, self.all, &exposed)
    }
}

fn parse_port(field: &str, what: &str, s: &str) -> Result<u16> {
    if s.contains('-') {
        return Err(Error::invalid(
            field,
            format!("{what} {s:?}: port ranges are not supported; give one port"),
        ));
    }
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(Error::invalid(
            field,
            format!("{what} {s:?} is not a port (1-65535)"),
        )),
    }
}

fn split_proto<'a>(field: &str, s: &'a str) -> Result<(&'a str, Proto)> {
    match s.rsplit_once('/') {
        None => Ok((s, Proto::Tcp)),
        Some((p, "tcp")) => Ok((p, Proto::Tcp)),
        Some((p, "udp")) => Ok((p, Proto::Udp)),
        Some((_, other)) => Err(Error::invalid(
            field,
            format!("{s:?}: protocol {other:?} is not tcp or udp"),
        )),
    }
}

impl PortSpec {
    /// `[IP:][HOSTPORT:]CPORT[/tcp|udp]`; an empty HOSTPORT (`IP::CPORT`) is a free port.
    pub fn parse(field: &str, s: &str) -> Result<PortSpec> {
        let (rest, proto) = split_proto(field, s)?;
        if rest.starts_with('[') {
            return Err(Error::invalid(
                field,
                format!("{s:?}: only IPv4 host addresses can be published"),
            ));
        }
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, cport) = match parts.as_slice() {
            [c] => (None, None, *c),
            [h, c] => (None, Some(*h), *c),
            [ip, h, c] => (Some(*ip), Some(*h), *c),
            _ => {
                return Err(Error::invalid(
                    field,
                    format!("{s:?} is not [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]"),
                ))
            }
        };
        let host_ip = match ip {
            None => None,
            Some(ip) => Some(ip.parse::<Ipv4Addr>().map_err(|_| {
                Error::invalid(
                    field,
                    format!("{s:?}: {ip:?} is not an IPv4 address of this host"),
                )
            })?),
        }
        .filter(|ip| !ip.is_unspecified());
        let host_port = match host {
            None | Some("") => None,
            Some(h) => Some(parse_port(field, "host port", h)?),
        };
        Ok(PortSpec {
            host_ip,
            host_port,
            container_port: parse_port(field, "container port", cport)?,
            proto,
        })
    }
}

/// `--expose PORT[/tcp|udp]`: a port `-P` publishes.
pub fn parse_expose(field: &str, s: &str) -> Result<(u16, Proto)> {
    let (p, proto) = split_proto(field, s)?;
    Ok((parse_port(field, "port", p)?, proto))
}

/// What a container publishes: its `-p` list and, with `-P`, every exposed port not
/// already in it on a free host port. Two specs that would claim the same fixed host
/// port are an error naming the second.
pub fn effective(
    ports: &[PortSpec],
    publish_all: bool,
    exposed: &[(u16, Proto)],
) -> Result<Vec<PortSpec>> {
    let mut out: Vec<PortSpec> = ports.to_vec();
    for (i, p) in ports.iter().enumerate() {
        let Some(hp) = p.host_port else { continue };
        let me = Binding {
            host_ip: p.host_ip,
            host_port: hp,
            container_port: p.container_port,
            proto: p.proto,
        };
        if let Some(j) = ports[..i].iter().position(|q| {
            q.host_port.is_some_and(|qp| {
                me.clashes_with(&Binding {
                    host_ip: q.host_ip,
                    host_port: qp,
                    container_port: q.container_port,
                    proto: q.proto,
                })
            })
        }) {
            return Err(Error::invalid(
                format!("ports[{i}]"),
                format!(
                    "host port {hp}/{} is already published by ports[{j}]",
                    p.proto
                ),
            ));
        }
    }
    if publish_all {
        for &(port, proto) in exposed {
            if !out
                .iter()
                .any(|p| p.container_port == port && p.proto == proto)
            {
                out.push(PortSpec {
                    host_ip: None,
                    host_port: None,
                    container_port: port,
                    proto,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PortSpec {
        PortSpec::parse("publish", s).unwrap()
    }

    #[test]
    fn every_form_parses() {
        type Case<'a> = (&'a str, Option<&'a str>, Option<u16>, u16, Proto);
        let cases: [Case; 7] = [
            ("80", None, None, 80, Proto::Tcp),
            ("8080:80", None, Some(8080), 80, Proto::Tcp),
            ("53/udp", None, None, 53, Proto::Udp),
            (
                "127.0.0.1:8080:80/tcp",
                Some("127.0.0.1"),
                Some(8080),
                80,
                Proto::Tcp,
            ),
            ("127.0.0.1::80", Some("127.0.0.1"), None, 80, Proto::Tcp),
            ("0.0.0.0:5353:53/udp", None, Some(5353), 53, Proto::Udp),
            (":9000:90", None, Some(9000), 90, Proto::Tcp),
        ];
        for (s, ip, hp, cp, proto) in cases {
            let got = PortSpec::parse("publish", s);
            // ":9000:90" has an empty IP, which is not an address.
            if s.starts_with(':') {
                assert!(got.is_err(), "{s}");
                continue;
            }
            let got = got.unwrap();
            assert_eq!(got.host_ip, ip.map(|i| i.parse().unwrap()), "{s}");
            assert_eq!(
                (got.host_port, got.container_port, got.proto),
                (hp, cp, proto),
                "{s}"
            );
        }
    }

    #[test]
    fn bad_ports_name_the_flag_and_say_why() {
        for (bad, why) in [
            ("", "not a port"),
            ("0", "not a port"),
            ("65536", "not a port"),
            ("80/sctp", "not tcp or udp"),
            ("8000-8010:80", "ranges"),
            ("x:80", "not a port"),
            ("1.2.3:80:80", "not an IPv4"),
            ("[::1]:80:80", "IPv4"),
            ("1:2:3:4", "is not [IP:]"),
            ("8080:0", "not a port"),
        ] {
            let e = PortSpec::parse("publish[2]", bad).unwrap_err().to_string();
            assert!(
                e.starts_with("publish[2]:") && e.contains(why),
                "{bad}: {e}"
            );
        }
        for bad in ["", "0", "80/icmp", "a"] {
            let e = parse_expose("expose[0]", bad).unwrap_err().to_string();
            assert!(e.starts_with("expose[0]:"), "{bad}: {e}");
        }
        assert_eq!(parse_expose("e", "53/udp").unwrap(), (53, Proto::Udp));
    }

    #[test]
    fn clashes_count_all_addresses_and_protocols() {
        let b = |ip: Option<&str>, port, proto| Binding {
            host_ip: ip.map(|i| i.parse().unwrap()),
            host_port: port,
            container_port: 1,
            proto,
        };
        let all = b(None, 80, Proto::Tcp);
        assert!(all.clashes_with(&b(Some("127.0.0.1"), 80, Proto::Tcp)));
        assert!(b(Some("127.0.0.1"), 80, Proto::Tcp).clashes_with(&all));
        assert!(!all.clashes_with(&b(None, 80, Proto::Udp)));
        assert!(!all.clashes_with(&b(None, 81, Proto::Tcp)));
        assert!(!b(Some("127.0.0.1"), 80, Proto::Tcp).clashes_with(&b(
            Some("10.0.0.1"),
            80,
            Proto::Tcp
        )));
        assert_eq!(all.to_string(), "0.0.0.0:80->1/tcp");
    }

    #[test]
    fn publish_all_adds_exposed_ports_and_duplicates_are_refused() {
        let ports = vec![p("8080:80")];
        let got = effective(&ports, true, &[(80, Proto::Tcp), (53, Proto::Udp)]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], p("53/udp"));
        assert_eq!(
            effective(&ports, false, &[(53, Proto::Udp)]).unwrap(),
            ports
        );
        let e = effective(&[p("8080:80"), p("127.0.0.1:8080:81")], false, &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("ports[1]:") && e.contains("ports[0]"), "{e}");
        // Same host port, other protocol: fine.
        effective(&[p("8080:80"), p("8080:80/udp")], false, &[]).unwrap();
    }
}
