//! A container's side of networking in its config: which network (`--network`), its
//! aliases, DNS servers and extra hosts entries, parsed and validated with errors that
//! name the field. Pure: nothing here looks at the host or the registry.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::{valid_name, ContainerConfig, Isolation};
use crate::error::{Error, Result};

/// The name of the default network, made on first use.
pub const DEFAULT_NETWORK: &str = "bridge";

/// Whether containers are plugged into bridge networks: `--network bridge|NAME` gets a
/// veth on the network's bridge between create and start (supervisor/netplug.rs).
/// `container:NAME` joins the other's namespace at start (join.rs).
pub const BRIDGE_WIRED: bool = true;

/// Whether a `standard` container without `--network` goes on the default bridge (as
/// Docker's do): yes, now that networks are isolated from each other, NAT-ed out and can
/// publish ports (rules.rs). `strict` stays on `none` unless given a network.
pub const BRIDGE_DEFAULT: bool = true;

/// `--network`: where a container's network namespace comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum NetworkMode {
    /// Its own namespace with only loopback.
    None,
    /// The host's namespace.
    Host,
    /// The default network ([`DEFAULT_NETWORK`]).
    Bridge,
    /// A network made with `network create`.
    Named(String),
    /// Another container's namespace (`container:NAME`).
    Container(String),
}

impl NetworkMode {
    /// `none`, `host`, `bridge` (or `default`), `container:NAME`, or a network's name.
    pub fn parse(field: &str, s: &str) -> Result<NetworkMode> {
        Ok(match s {
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            "bridge" | "default" => NetworkMode::Bridge,
            _ => match s.strip_prefix("container:") {
                Some(c) if valid_name(c) => NetworkMode::Container(c.to_string()),
                Some(c) => {
                    return Err(Error::invalid(
                        field,
                        format!("container:{c}: {c:?} is not a container name or id"),
                    ))
                }
                None if valid_name(s) => NetworkMode::Named(s.to_string()),
                None => {
                    return Err(Error::invalid(
                        field,
                        format!(
                            "{s:?} is not none, host, bridge, container:NAME or a network name"
                        ),
                    ))
                }
            },
        })
    }

    /// The network a container on this mode gets an address on, if any.
    pub fn network_name(&self) -> Option<&str> {
        match self {
            NetworkMode::Bridge => Some(DEFAULT_NETWORK),
            NetworkMode::Named(n) => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::Bridge => f.write_str(DEFAULT_NETWORK),
            NetworkMode::Named(n) => f.write_str(n),
            NetworkMode::Container(c) => write!(f, "container:{c}"),
        }
    }
}

impl TryFrom<String> for NetworkMode {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        NetworkMode::parse("network", &s)
    }
}

impl From<NetworkMode> for String {
    fn from(m: NetworkMode) -> String {
        m.to_string()
    }
}

/// One `--add-host HOST:IP` entry. `ip` is an address or `host-gateway` (the gateway of
/// the container's network: the host as the container reaches it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddHost {
    pub host: String,
    pub ip: String,
}

/// The `--add-host` value that stands for the network's gateway.
pub const HOST_GATEWAY: &str = "host-gateway";

impl AddHost {
    /// `HOST:IP` or `HOST=IP` (the IP may be IPv6, so the first separator splits).
    pub fn parse(field: &str, s: &str) -> Result<AddHost> {
        let (host, ip) = s
            .split_once(['=', ':'])
            .ok_or_else(|| Error::invalid(field, format!("{s:?} is not HOST:IP")))?;
        let a = AddHost {
            host: host.to_string(),
            ip: ip.trim_start_matches('[').trim_end_matches(']').to_string(),
        };
        a.check(field)?;
        Ok(a)
    }

    fn check(&self, field: &str) -> Result<()> {
        if !valid_hostname(&self.host) {
            return Err(Error::invalid(
                field,
                format!("{:?} is not a host name", self.host),
            ));
        }
        if self.ip != HOST_GATEWAY && self.ip.parse::<IpAddr>().is_err() {
            return Err(Error::invalid(
                field,
                format!("{:?} is not an IP address or {HOST_GATEWAY}", self.ip),
            ));
        }
        Ok(())
    }
}

/// A DNS name: dot-separated labels of letters, digits and inner `-`, up to 253 bytes.
pub fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// The mode a config runs with: the one it names, else its isolation's default —
/// `host` for minimal, `none` for strict, and for standard the default network
/// ([`BRIDGE_DEFAULT`]).
pub fn effective(config: &ContainerConfig) -> NetworkMode {
    if let Some(m) = &config.network {
        return m.clone();
    }
    match config.isolation {
        Isolation::Minimal => NetworkMode::Host,
        Isolation::Standard if BRIDGE_DEFAULT => NetworkMode::Bridge,
        Isolation::Standard | Isolation::Strict => NetworkMode::None,
    }
}

/// The error for a mode that needs the kernel layer, while it is not wired.
pub fn not_wired(mode: &NetworkMode) -> Option<Error> {
    let needs_wiring = match mode {
        NetworkMode::Bridge | NetworkMode::Named(_) => !BRIDGE_WIRED,
        NetworkMode::Container(_) | NetworkMode::None | NetworkMode::Host => false,
    };
    needs_wiring.then(|| {
        Error::invalid(
            "network",
            format!("{mode}: bridge networks are not wired in this build; use none or host"),
        )
    })
}

/// The network fields of `config`, against each other and its isolation.
pub fn validate(config: &ContainerConfig) -> Result<()> {
    let mode = effective(config);
    match (config.isolation, &mode) {
        (Isolation::Minimal, NetworkMode::Host) => {}
        (Isolation::Minimal, m) => {
            return Err(Error::invalid(
                "network",
                format!("{m}: minimal isolation runs in the host's network; only host fits"),
            ))
        }
        // sysfs can only be mounted by the user namespace that owns the network
        // namespace; a strict container's does not own the host's.
        (Isolation::Strict, NetworkMode::Host) => {
            return Err(Error::invalid(
                "network",
                "host: a strict container (user namespace) cannot share the host's network",
            ))
        }
        _ => {}
    }
    let on_network = mode.network_name().is_some();
    let shared = matches!(mode, NetworkMode::Container(_));
    for (i, a) in config.aliases.iter().enumerate() {
        if !valid_hostname(a) {
            return Err(Error::invalid(
                format!("aliases[{i}]"),
                format!("{a:?} is not a host name"),
            ));
        }
        if !on_network {
            return Err(Error::invalid(
                format!("aliases[{i}]"),
                format!("{a}: aliases need a bridge or named network, not {mode}"),
            ));
        }
    }
    if shared {
        let conflict = |field: &str| {
            Error::invalid(
                field,
                format!("{mode} shares that container's network, hosts and DNS; drop {field}"),
            )
        };
        if config.hostname.is_some() {
            return Err(conflict("hostname"));
        }
        if !config.dns.is_empty() {
            return Err(conflict("dns"));
        }
        if !config.add_hosts.is_empty() {
            return Err(conflict("add_hosts"));
        }
    }
    let specs = config.publish.specs()?;
    if !specs.is_empty() && !on_network {
        return Err(Error::invalid(
            "ports",
            format!("publishing ports needs a bridge or named network, not {mode}"),
        ));
    }
    if let Some(r) = config.network_rate {
        if !on_network {
            return Err(Error::invalid(
                "network_rate",
                format!("a rate limit needs a bridge or named network, not {mode}"),
            ));
        }
        if r < super::rate::MIN_BITS {
            return Err(Error::invalid(
                "network_rate",
                format!(
                    "{r} bit/s is below the lowest limit, {} bit/s",
                    super::rate::MIN_BITS
                ),
            ));
        }
    }
    for (i, h) in config.add_hosts.iter().enumerate() {
        let field = format!("add_hosts[{i}]");
        h.check(&field)?;
        if h.ip == HOST_GATEWAY && !on_network {
            return Err(Error::invalid(
                field,
                format!("{HOST_GATEWAY} needs a bridge or named network, not {mode}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(iso: Isolation) -> ContainerConfig {
        ContainerConfig {
            image: Some("busybox".into()),
            command: vec!["true".into()],
            isolation: iso,
            ..Default::default()
        }
    }

    #[test]
    fn modes_parse_and_print_back() {
        for s in ["none", "host", "bridge", "backend", "container:db"] {
            let m = NetworkMode::parse("network", s).unwrap();
            assert_eq!(m.to_string(), s);
            let json = serde_json::to_value(&m).unwrap();
            assert_eq!(json, serde_json::json!(s));
            assert_eq!(serde_json::from_value::<NetworkMode>(json).unwrap(), m);
        }
        assert_eq!(
            NetworkMode::parse("n", "default").unwrap(),
            NetworkMode::Bridge
        );
        for bad in ["", "container:", "../x", "container:a/b", "a b"] {
            let e = NetworkMode::parse("--network", bad)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("--network:"), "{bad}: {e}");
        }
        assert!(serde_json::from_value::<NetworkMode>(serde_json::json!("-x")).is_err());
    }

    #[test]
    fn add_hosts_parse_v4_v6_and_the_gateway() {
        let a = AddHost::parse("add-host", "db:10.0.0.5").unwrap();
        assert_eq!((a.host.as_str(), a.ip.as_str()), ("db", "10.0.0.5"));
        let a = AddHost::parse("add-host", "v6.local:[fd00::1]").unwrap();
        assert_eq!(a.ip, "fd00::1");
        let a = AddHost::parse("add-host", "gw=host-gateway").unwrap();
        assert_eq!(a.ip, HOST_GATEWAY);
        for bad in ["db", "db:nope", "-db:1.2.3.4", ":1.2.3.4", "a..b:1.2.3.4"] {
            let e = AddHost::parse("add-host[1]", bad).unwrap_err().to_string();
            assert!(e.starts_with("add-host[1]:"), "{bad}: {e}");
        }
    }

    #[test]
    fn defaults_follow_the_isolation_and_stay_honest_until_wired() {
        assert_eq!(effective(&cfg(Isolation::Minimal)), NetworkMode::Host);
        assert_eq!(effective(&cfg(Isolation::Strict)), NetworkMode::None);
        let standard = effective(&cfg(Isolation::Standard));
        if BRIDGE_DEFAULT {
            assert_eq!(standard, NetworkMode::Bridge);
        } else {
            assert_eq!(standard, NetworkMode::None);
        }
        for m in ["bridge", "backend"] {
            assert_eq!(
                not_wired(&NetworkMode::parse("n", m).unwrap()).is_some(),
                !BRIDGE_WIRED
            );
        }
        assert!(not_wired(&NetworkMode::parse("n", "container:db").unwrap()).is_none());
        assert!(not_wired(&NetworkMode::None).is_none());
        assert!(not_wired(&NetworkMode::Host).is_none());
    }

    #[test]
    fn validation_names_the_field() {
        let with = |iso, f: &dyn Fn(&mut ContainerConfig)| {
            let mut c = cfg(iso);
            f(&mut c);
            validate(&c).map_err(|e| e.to_string())
        };
        fn net(s: &str) -> Option<NetworkMode> {
            Some(NetworkMode::parse("n", s).unwrap())
        }
        with(Isolation::Standard, &|c| c.network = net("host")).unwrap();
        with(Isolation::Standard, &|c| {
            c.network = net("backend");
            c.aliases = vec!["db".into(), "db.internal".into()];
            c.add_hosts = vec![AddHost::parse("a", "gw:host-gateway").unwrap()];
            c.dns = vec!["1.1.1.1".parse().unwrap()];
        })
        .unwrap();
        type Edit = dyn Fn(&mut ContainerConfig);
        let cases: Vec<(Isolation, &Edit, &str)> = vec![
            (Isolation::Minimal, &|c| c.network = net("none"), "network"),
            (Isolation::Strict, &|c| c.network = net("host"), "network"),
            (
                Isolation::Standard,
                &|c| {
                    c.network = net("none");
                    c.aliases = vec!["db".into()];
                },
                "aliases[0]",
            ),
            (
                Isolation::Standard,
                &|c| {
                    c.network = net("backend");
                    c.aliases = vec!["ok".into(), "no_underscore".into()];
                },
                "aliases[1]",
            ),
            (
                Isolation::Standard,
                &|c| {
                    c.network = net("container:db");
                    c.hostname = Some("x".into());
                },
                "hostname",
            ),
            (
                Isolation::Standard,
                &|c| {
                    c.network = net("container:db");
                    c.dns = vec!["1.1.1.1".parse().unwrap()];
                },
                "dns",
            ),
            (
                Isolation::Standard,
                &|c| {
                    c.network = net("none");
                    c.add_hosts = vec![AddHost::parse("a", "gw:host-gateway").unwrap()];
                },
                "add_hosts[0]",
            ),
            (
                Isolation::Standard,
                &|c| {
                    c.add_hosts = vec![AddHost {
                        host: "x".into(),
                        ip: "nope".into(),
                    }]
                },
                "add_hosts[0]",
            ),
        ];
        for (iso, edit, field) in cases {
            let e = with(iso, edit).unwrap_err();
            assert!(e.starts_with(&format!("{field}:")), "{field}: {e}");
        }
    }
}
