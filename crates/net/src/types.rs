//! The plain values the API takes and returns.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::{Error, Result};

/// An address with its prefix length (`10.88.0.2/16`): the interface's address and,
/// through the prefix, the subnet it is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<IpNet> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(Error::invalid(
                format!("{addr}/{prefix}"),
                format!("prefix length must be at most {max}"),
            ));
        }
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpNet {
    type Err = Error;
    fn from_str(s: &str) -> Result<IpNet> {
        let bad = |r: &str| Error::invalid(s, r);
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX"))?;
        let addr = a.parse().map_err(|_| bad("not an IP address"))?;
        let prefix = p.parse().map_err(|_| bad("not a prefix length"))?;
        IpNet::new(addr, prefix)
    }
}

/// A link as listed by [`crate::Handle::links`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// The IFLA_INFO_KIND (`bridge`, `veth`...); `None` for devices without one (`lo`).
    pub kind: Option<String>,
    /// The index of the bridge it is attached to.
    pub master: Option<u32>,
    pub up: bool,
}

/// An address on an interface (`ip addr`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    /// The interface's name (the address label for IPv4, else looked up).
    pub ifname: String,
    pub net: IpNet,
}

/// A route (`ip route`, any table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// `None` for the default route.
    pub destination: Option<IpNet>,
    pub gateway: Option<IpAddr>,
    /// The output interface's index, when the route has one.
    pub oif: Option<u32>,
    /// The routing table (254 is `main`, the one `ip route` shows).
    pub table: u32,
    pub is_ipv4: bool,
    /// Unicast routes are the ones that use address space (`local`, `broadcast`... are not).
    pub unicast: bool,
}

/// Counters of one interface (`ip -s link`), 64-bit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// Interface names: at most 15 bytes, and not something the kernel or `ip` reads as
/// anything else.
pub fn check_ifname(field: &str, name: &str) -> Result<()> {
    let bad = |r: &str| Error::invalid(format!("{field} {name:?}"), r);
    if name.is_empty() || name.len() > 15 {
        return Err(bad("an interface name has 1 to 15 bytes"));
    }
    if name == "." || name == ".." {
        return Err(bad("is not an interface name"));
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(bad(
            "an interface name has no '/', ':', spaces or control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipnet_parses_and_prints() {
        let n: IpNet = "10.88.0.1/16".parse().unwrap();
        assert_eq!(n.prefix, 16);
        assert_eq!(n.to_string(), "10.88.0.1/16");
        assert!("10.88.0.1/33".parse::<IpNet>().is_err());
        assert!("fd00::1/129".parse::<IpNet>().is_err());
        assert!("fd00::1/64".parse::<IpNet>().is_ok());
        assert!("10.88.0.1".parse::<IpNet>().is_err());
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(check_ifname("bridge", "codex0").is_ok());
        assert!(check_ifname("bridge", "a-very-long-name").is_err());
        for bad in ["", ".", "..", "a/b", "a b", "a:1"] {
            let e = check_ifname("bridge", bad).unwrap_err().to_string();
            assert!(e.starts_with("bridge "), "{e}");
        }
    }
}
