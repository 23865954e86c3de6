//! The flags Docker users type daily to loosen or tighten a container: capabilities,
//! `--privileged`, `--read-only`, `--security-opt`, `--ulimit`, `--shm-size`,
//! `--device`. Parsed here from their string forms (errors name the flag and the
//! item), applied to the spec by `profile::security`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The rlimits `--ulimit` knows (Docker's names).
const ULIMITS: &[(&str, &str)] = &[
    ("core", "RLIMIT_CORE"),
    ("cpu", "RLIMIT_CPU"),
    ("data", "RLIMIT_DATA"),
    ("fsize", "RLIMIT_FSIZE"),
    ("locks", "RLIMIT_LOCKS"),
    ("memlock", "RLIMIT_MEMLOCK"),
    ("msgqueue", "RLIMIT_MSGQUEUE"),
    ("nice", "RLIMIT_NICE"),
    ("nofile", "RLIMIT_NOFILE"),
    ("nproc", "RLIMIT_NPROC"),
    ("rss", "RLIMIT_RSS"),
    ("rtprio", "RLIMIT_RTPRIO"),
    ("rttime", "RLIMIT_RTTIME"),
    ("sigpending", "RLIMIT_SIGPENDING"),
    ("stack", "RLIMIT_STACK"),
];

/// How a container's defaults are loosened or tightened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// Capabilities added to the isolation's set (`CAP_` names; `ALL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Capabilities taken away (applied after `cap_add`, as Docker does; `ALL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// Every capability, every device, no seccomp filter, no masked paths, /sys
    /// writable: the host's root, in effect.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// The root filesystem read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// `no-new-privileges`: set-id bits and file capabilities give nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_new_privileges: bool,
    /// The seccomp filter: `None` the isolation's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<Seccomp>,
    /// Resource limits per process (`--ulimit`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// Bytes of /dev/shm (default 64 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    /// Host devices made available in the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seccomp {
    /// No filter.
    Unconfined,
    /// An OCI `linux.seccomp` object, as read from the file given (kept in the
    /// record, so the container does not depend on the file later).
    Profile(serde_json::Value),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// `RLIMIT_...`.
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The host's device node.
    pub host: String,
    /// Its path in the container.
    pub container: String,
    /// `r`, `w`, `m` (read, write, mknod).
    pub access: String,
}

impl Security {
    pub fn is_default(&self) -> bool {
        *self == Security::default()
    }
}

/// `NET_ADMIN`, `cap_net_admin` and `CAP_NET_ADMIN` are one capability; `ALL` is all.
pub fn cap_name(field: &str, name: &str) -> Result<String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    // The runtime's own table of names (the `caps` crate), not a copy of it.
    if full.parse::<caps::Capability>().is_ok() {
        Ok(full)
    } else {
        Err(Error::invalid(
            field,
            format!("{name:?} is not a capability (see capabilities(7))"),
        ))
    }
}

/// Every capability this process may hand on (its bounding set): what `ALL` and
/// `--privileged` mean. A machine whose own root lacks some (a container host in a
/// container, say) cannot give them, and asking the kernel for them fails the start.
pub fn host_caps() -> Vec<String> {
    let mut set: Vec<caps::Capability> = caps::read(None, caps::CapSet::Bounding)
        .map(|s| s.into_iter().collect())
        .unwrap_or_else(|_| caps::all().into_iter().collect());
    set.sort_by_key(|c| c.index());
    set.iter().map(|c| c.to_string()).collect()
}

/// The capabilities of a container: `base` (the isolation's), then `add`, then `drop`.
pub fn effective_caps(base: &[&str], add: &[String], drop: &[String]) -> Vec<String> {
    let mut caps: Vec<String> = base.iter().map(|c| c.to_string()).collect();
    for a in add {
        if a == "ALL" {
            caps = host_caps();
        } else if !caps.contains(a) {
            caps.push(a.clone());
        }
    }
    for d in drop {
        if d == "ALL" {
            caps.clear();
        } else {
            caps.retain(|c| c != d);
        }
    }
    caps
}

/// `--ulimit NAME=SOFT[:HARD]` (`-1`: unlimited).
pub fn parse_ulimit(field: &str, s: &str) -> Result<Ulimit> {
    let bad = |why: &str| {
        Error::invalid(
            field,
            format!("{s:?}: {why} (NAME=SOFT[:HARD], e.g. nofile=1024:2048)"),
        )
    };
    let (name, values) = s.split_once('=').ok_or_else(|| bad("no '='"))?;
    let kind = ULIMITS
        .iter()
        .find(|(n, _)| *n == name.trim())
        .map(|(_, k)| k.to_string())
        .ok_or_else(|| {
            let names: Vec<&str> = ULIMITS.iter().map(|(n, _)| *n).collect();
            bad(&format!("unknown limit; one of {}", names.join(", ")))
        })?;
    let value = |v: &str| -> Result<u64> {
        match v.trim() {
            "-1" | "unlimited" => Ok(u64::MAX),
            v => v
                .parse()
                .map_err(|_| bad(&format!("{v:?} is not a number"))),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (value(s)?, value(h)?),
        None => {
            let v = value(values)?;
            (v, v)
        }
    };
    if soft > hard {
        return Err(bad("the soft limit is above the hard one"));
    }
    Ok(Ulimit { kind, soft, hard })
}

/// `--device HOST[:CONTAINER[:PERMS]]`.
pub fn parse_device(field: &str, s: &str) -> Result<Device> {
    let bad = |why: String| Error::invalid(field, format!("{s:?}: {why} (HOST[:CONTAINER[:rwm]])"));
    let parts: Vec<&str> = s.split(':').collect();
    let (host, container, access) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if !p.starts_with('/') => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => return Err(bad("too many ':'".into())),
    };
    for (what, p) in [("host path", host), ("container path", container)] {
        if !p.starts_with('/') {
            return Err(bad(format!("the {what} must be absolute")));
        }
    }
    if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
        return Err(bad(format!("{access:?}: permissions are letters of rwm")));
    }
    Ok(Device {
        host: host.into(),
        container: container.into(),
        access: access.into(),
    })
}

/// `--security-opt` values into `sec`: `no-new-privileges[:true|false]`,
/// `seccomp=unconfined|FILE`. What this engine has no counterpart for (AppArmor,
/// SELinux labels) is refused by name rather than ignored.
pub fn apply_security_opt(sec: &mut Security, field: &str, opt: &str) -> Result<()> {
    let (key, value) = match opt.split_once(['=', ':']) {
        Some((k, v)) => (k, Some(v)),
        None => (opt, None),
    };
    match (key, value) {
        ("no-new-privileges", None | Some("true")) => sec.no_new_privileges = true,
        ("no-new-privileges", Some("false")) => sec.no_new_privileges = false,
        ("seccomp", Some("unconfined")) => sec.seccomp = Some(Seccomp::Unconfined),
        ("seccomp", Some(path)) => {
            let text = std::fs::read(path)
                .map_err(|e| Error::invalid(field, format!("seccomp profile {path}: {e}")))?;
            let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
                Error::invalid(field, format!("seccomp profile {path} is not JSON: {e}"))
            })?;
            if !v["defaultAction"].is_string() {
                return Err(Error::invalid(
                    field,
                    format!("seccomp profile {path} has no defaultAction"),
                ));
            }
            sec.seccomp = Some(Seccomp::Profile(v));
        }
        ("apparmor" | "label", _) => {
            return Err(Error::invalid(
                field,
                format!("{opt:?}: this engine has no AppArmor or SELinux support"),
            ))
        }
        _ => {
            return Err(Error::invalid(
                field,
                format!("{opt:?}: use no-new-privileges or seccomp=unconfined|FILE"),
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_are_docker_shaped_and_checked() {
        assert_eq!(cap_name("cap-add", "net_admin").unwrap(), "CAP_NET_ADMIN");
        assert_eq!(cap_name("cap-add", "CAP_SYS_TIME").unwrap(), "CAP_SYS_TIME");
        assert_eq!(cap_name("cap-add", "all").unwrap(), "ALL");
        let e = cap_name("cap-add[1]", "NET_WIZARD")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cap-add[1]") && e.contains("NET_WIZARD"), "{e}");
    }

    #[test]
    fn drops_apply_after_adds_and_all_means_all() {
        let base = ["CAP_CHOWN", "CAP_KILL"];
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            effective_caps(&base, &s(&["CAP_NET_ADMIN"]), &s(&["CAP_KILL"])),
            s(&["CAP_CHOWN", "CAP_NET_ADMIN"])
        );
        assert_eq!(
            effective_caps(&base, &s(&["CAP_NET_ADMIN"]), &s(&["ALL"])),
            Vec::<String>::new()
        );
        assert_eq!(effective_caps(&base, &s(&["ALL"]), &[]), host_caps());
        assert!(host_caps().contains(&"CAP_CHOWN".to_string()));
        // Docker's order: drop ALL then add one = only that one is impossible here by
        // design (drops come last); drop ALL with nothing added is empty.
        assert_eq!(
            effective_caps(&base, &[], &s(&["ALL"])),
            Vec::<String>::new()
        );
    }

    #[test]
    fn ulimits_parse_like_dockers() {
        let u = parse_ulimit("ulimit[0]", "nofile=1024:2048").unwrap();
        assert_eq!(
            (u.kind.as_str(), u.soft, u.hard),
            ("RLIMIT_NOFILE", 1024, 2048)
        );
        let u = parse_ulimit("ulimit[0]", "core=-1").unwrap();
        assert_eq!((u.soft, u.hard), (u64::MAX, u64::MAX));
        for bad in [
            "nofile",
            "nofiles=1",
            "nofile=x",
            "nofile=10:5",
            "nofile=1:2:3",
        ] {
            let e = parse_ulimit("ulimit[2]", bad).unwrap_err().to_string();
            assert!(e.contains("ulimit[2]"), "{bad}: {e}");
        }
    }

    #[test]
    fn devices_take_one_two_or_three_parts() {
        let d = parse_device("device[0]", "/dev/fuse").unwrap();
        assert_eq!(
            (d.host.as_str(), d.container.as_str(), d.access.as_str()),
            ("/dev/fuse", "/dev/fuse", "rwm")
        );
        let d = parse_device("device[0]", "/dev/null:/dev/mynull:r").unwrap();
        assert_eq!(
            (d.container.as_str(), d.access.as_str()),
            ("/dev/mynull", "r")
        );
        let d = parse_device("device[0]", "/dev/zero:rw").unwrap();
        assert_eq!(
            (d.container.as_str(), d.access.as_str()),
            ("/dev/zero", "rw")
        );
        for bad in [
            "dev/null",
            "/dev/null:rwx",
            "/dev/null:/a:r:x",
            "/dev/null:rel:r",
        ] {
            assert!(parse_device("device[3]", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn security_opts_refuse_what_has_no_counterpart_by_name() {
        let mut s = Security::default();
        apply_security_opt(&mut s, "security-opt[0]", "no-new-privileges").unwrap();
        assert!(s.no_new_privileges);
        apply_security_opt(&mut s, "security-opt[0]", "no-new-privileges:false").unwrap();
        assert!(!s.no_new_privileges);
        apply_security_opt(&mut s, "security-opt[0]", "seccomp=unconfined").unwrap();
        assert_eq!(s.seccomp, Some(Seccomp::Unconfined));
        for bad in [
            "apparmor=unconfined",
            "label=disable",
            "seccomp=/nonexistent.json",
            "bogus",
        ] {
            let e = apply_security_opt(&mut s, "security-opt[1]", bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("security-opt[1]"), "{bad}: {e}");
        }
    }
}
