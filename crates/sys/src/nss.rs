//! Group and host name lookups that never run glibc's NSS in this process.
//!
//! The release binaries are static (docs/benchmarks.md, "Static runtime binaries"), and a
//! static glibc's `getgrnam` or `getaddrinfo` loads the host's NSS modules (libnss_systemd
//! and the like), which are made for the shared glibc and crash a static process. So a
//! lookup runs `getent`, the host's own NSS client: it answers as every other program on
//! the host would (files, DNS, LDAP, as nsswitch.conf says). Where `getent` is missing the
//! files are read (`/etc/group`, `/etc/hosts`). The lookups are rare (a registry's host
//! per pull or push, the API socket's group once per `serve`), so the process is cheap.

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

/// What `getent DATABASE KEY` said.
enum Getent {
    Found(String),
    NotFound,
    /// No `getent` on this host.
    Missing,
}

fn getent(database: &str, key: &str) -> io::Result<Getent> {
    let out = match Command::new("getent")
        .args([database, "--", key])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Getent::Missing),
        Err(e) => return Err(e),
    };
    match out.status.code() {
        Some(0) => Ok(Getent::Found(
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )),
        // 2: the key is not in the database.
        Some(2) => Ok(Getent::NotFound),
        _ => Err(io::Error::other(format!(
            "getent {database} {key}: {}",
            out.status
        ))),
    }
}

/// The id of group `name`, if the host has such a group.
pub fn group_id(name: &str) -> io::Result<Option<u32>> {
    match getent("group", name)? {
        Getent::Found(line) => Ok(gid_in(&line, name)),
        Getent::NotFound => Ok(None),
        Getent::Missing => match std::fs::read_to_string("/etc/group") {
            Ok(text) => Ok(text.lines().find_map(|l| gid_in(l, name))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        },
    }
}

/// The gid of a `group(5)` line (`name:password:gid:members`) if it is `name`'s.
fn gid_in(line: &str, name: &str) -> Option<u32> {
    let mut fields = line.trim_end().split(':');
    if fields.next()? != name {
        return None;
    }
    fields.nth(1)?.parse().ok()
}

/// The addresses of host `host` (an address itself, bracketed or not, is its own),
/// in the order the host's resolver gives them; an error when there are none.
pub fn host_addrs(host: &str) -> io::Result<Vec<IpAddr>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let addrs = match getent("ahosts", bare)? {
        Getent::Found(out) => addrs_in_ahosts(&out),
        Getent::NotFound => Vec::new(),
        Getent::Missing => addrs_in_hosts_file(Path::new("/etc/hosts"), bare)?,
    };
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{bare}: no address found for this host name"),
        ));
    }
    Ok(addrs)
}

/// The distinct addresses of `getent ahosts` output (`ADDRESS SOCKTYPE [NAME]` lines).
fn addrs_in_ahosts(out: &str) -> Vec<IpAddr> {
    let mut addrs = Vec::new();
    for ip in out
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse::<IpAddr>().ok())
    {
        if !addrs.contains(&ip) {
            addrs.push(ip);
        }
    }
    addrs
}

/// The addresses `/etc/hosts` (at `path`) gives `name`.
fn addrs_in_hosts_file(path: &Path, name: &str) -> io::Result<Vec<IpAddr>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut addrs = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(ip) = fields.next().and_then(|a| a.parse::<IpAddr>().ok()) else {
            continue;
        };
        if fields.any(|n| n.eq_ignore_ascii_case(name)) && !addrs.contains(&ip) {
            addrs.push(ip);
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_line_gives_its_gid_only_for_its_own_name() {
        assert_eq!(gid_in("codex:x:998:alice,bob\n", "codex"), Some(998));
        assert_eq!(gid_in("codex:x:998:", "codex"), Some(998));
        assert_eq!(gid_in("codexx:x:998:", "codex"), None);
        assert_eq!(gid_in("codex:x:notanumber:", "codex"), None);
        assert_eq!(gid_in("codex", "codex"), None);
    }

    #[test]
    fn getent_ahosts_output_gives_each_address_once_in_order() {
        let out = "::1             STREAM localhost\n::1             DGRAM  \n\
                   127.0.0.1       STREAM \n127.0.0.1       DGRAM  \n\n";
        assert_eq!(
            addrs_in_ahosts(out),
            vec![
                "::1".parse::<IpAddr>().unwrap(),
                "127.0.0.1".parse().unwrap()
            ]
        );
        assert!(addrs_in_ahosts("").is_empty());
    }

    #[test]
    fn the_hosts_file_gives_the_addresses_of_a_name_or_its_aliases() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hosts");
        std::fs::write(
            &p,
            "127.0.0.1 localhost\n# 10.0.0.9 reg\n10.0.0.1 registry.local reg # ours\n\
             fe80::1 reg\nbad line\n",
        )
        .unwrap();
        assert_eq!(
            addrs_in_hosts_file(&p, "REG").unwrap(),
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
        assert!(addrs_in_hosts_file(&p, "other").unwrap().is_empty());
        assert!(addrs_in_hosts_file(&d.path().join("none"), "reg")
            .unwrap()
            .is_empty());
    }

    /// The host's own NSS through `getent` (every Debian has it: libc-bin): localhost
    /// resolves, an address is its own, a name nobody has is an error naming it.
    #[test]
    fn host_names_resolve_through_the_hosts_getent() {
        let local = host_addrs("localhost").unwrap();
        assert!(local.iter().all(|ip| ip.is_loopback()), "{local:?}");
        assert_eq!(
            host_addrs("[::1]").unwrap(),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            host_addrs("10.1.2.3").unwrap(),
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        let err = host_addrs("no-such-host.invalid").unwrap_err();
        assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
        assert_eq!(group_id("root").unwrap(), Some(0));
        assert_eq!(group_id("no-such-group-codex-test").unwrap(), None);
    }
}
