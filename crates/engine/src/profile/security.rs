//! [`Security`] applied to a spec the isolation profile made: capabilities,
//! `--privileged`, `--read-only`, `no-new-privileges`, seccomp, rlimits, /dev/shm's
//! size and host devices.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use serde_json::{json, Value};

use super::DEFAULT_CAPS;
#[cfg(test)]
use crate::config::security::Security;
use crate::config::security::{effective_caps, host_caps, Seccomp};
use crate::config::{ContainerConfig, Isolation};
use crate::error::{Error, Result};

/// Device nodes every container has already (the runtime makes them).
const DEFAULT_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

pub(super) fn apply(config: &ContainerConfig, spec: &mut Value) -> Result<()> {
    let sec = &config.security;
    if sec.is_default() {
        return Ok(());
    }
    let isolated = config.isolation != Isolation::Minimal;
    let caps_given = !sec.cap_add.is_empty() || !sec.cap_drop.is_empty();
    if !isolated
        && (caps_given || sec.privileged || !sec.devices.is_empty() || sec.seccomp.is_some())
    {
        return Err(Error::invalid(
            "isolation",
            "minimal runs a host program as it is: capabilities, --privileged, --device and seccomp need standard or strict",
        ));
    }
    if config.isolation == Isolation::Strict && (sec.privileged || !sec.devices.is_empty()) {
        return Err(Error::invalid(
            if sec.privileged {
                "privileged"
            } else {
                "devices"
            },
            "strict isolation has a user namespace: host devices and --privileged need standard",
        ));
    }
    if sec.privileged && caps_given {
        // Docker ignores them; saying so is kinder than a silent no-op.
        return Err(Error::invalid(
            "privileged",
            "--privileged has every capability: --cap-add/--cap-drop would change nothing",
        ));
    }
    if isolated {
        let base: Vec<&str> = if config.isolation == Isolation::Strict {
            Vec::new()
        } else {
            DEFAULT_CAPS.to_vec()
        };
        let caps = if sec.privileged {
            host_caps()
        } else {
            effective_caps(&base, &sec.cap_add, &sec.cap_drop)
        };
        spec["process"]["capabilities"] =
            json!({"bounding": caps, "effective": caps, "permitted": caps});
        let caps_ref: Vec<&str> = caps.iter().map(String::as_str).collect();
        spec["linux"]["seccomp"] = codex_runtime::seccomp_default::default_profile_json(&caps_ref);
    }
    match &sec.seccomp {
        Some(Seccomp::Unconfined) => remove(&mut spec["linux"], "seccomp"),
        Some(Seccomp::Profile(p)) => spec["linux"]["seccomp"] = p.clone(),
        None => {}
    }
    if sec.privileged {
        remove(&mut spec["linux"], "seccomp");
        spec["linux"]["maskedPaths"] = json!([]);
        spec["linux"]["readonlyPaths"] = json!([]);
        spec["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
        if let Some(mounts) = spec["mounts"].as_array_mut() {
            for m in mounts
                .iter_mut()
                .filter(|m| matches!(m["destination"].as_str(), Some("/sys" | "/sys/fs/cgroup")))
            {
                if let Some(o) = m["options"].as_array_mut() {
                    o.retain(|x| x != "ro");
                }
            }
        }
        for dev in host_devices() {
            // The allow-all rule above covers them: nodes only, no rules.
            add_node(spec, &dev, &dev, "privileged")?;
        }
    }
    for (i, d) in sec.devices.iter().enumerate() {
        add_device(
            spec,
            &d.host,
            &d.container,
            &d.access,
            &format!("devices[{i}]"),
        )?;
    }
    if sec.read_only {
        spec["root"]["readonly"] = true.into();
    }
    if sec.no_new_privileges {
        spec["process"]["noNewPrivileges"] = true.into();
    }
    if !sec.ulimits.is_empty() {
        let mut limits: Vec<Value> = spec["process"]["rlimits"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for u in &sec.ulimits {
            limits.retain(|l| l["type"] != u.kind.as_str());
            limits.push(json!({"type": u.kind, "soft": u.soft, "hard": u.hard}));
        }
        spec["process"]["rlimits"] = Value::Array(limits);
    }
    if let Some(size) = sec.shm_size {
        let shm = spec["mounts"]
            .as_array_mut()
            .and_then(|m| m.iter_mut().find(|m| m["destination"] == "/dev/shm"));
        match shm {
            Some(m) => {
                if let Some(o) = m["options"].as_array_mut() {
                    o.retain(|x| !x.as_str().is_some_and(|x| x.starts_with("size=")));
                    o.push(format!("size={size}").into());
                }
            }
            None => {
                return Err(Error::invalid(
                    "shm_size",
                    "this isolation has no /dev/shm of its own (it shares the host's)",
                ))
            }
        }
    }
    Ok(())
}

fn remove(v: &mut Value, key: &str) {
    if let Some(o) = v.as_object_mut() {
        o.remove(key);
    }
}

/// The host's device nodes directly under /dev, but those every container has and
/// the terminal ones (a container gets its own pty devices).
fn host_devices() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/dev") else {
        return Vec::new();
    };
    let mut devs: Vec<String> = entries
        .flatten()
        .filter(|e| {
            e.file_type()
                .is_ok_and(|t| t.is_char_device() || t.is_block_device())
        })
        .map(|e| e.path().to_string_lossy().into_owned())
        .filter(|p| {
            !DEFAULT_DEVICES.contains(&p.as_str())
                && !matches!(p.as_str(), "/dev/console" | "/dev/ptmx")
                && !p.starts_with("/dev/tty")
        })
        .collect();
    devs.sort();
    devs
}

/// A host device node at `container` in the container, and a cgroup rule that lets
/// it be used with `access` and no more. The node is a bind mount of the host's, not
/// a `linux.devices` entry: the runtime allows every `linux.devices` node `rwm` (as
/// runc does), which would undo an `r`.
fn add_device(
    spec: &mut Value,
    host: &str,
    container: &str,
    access: &str,
    field: &str,
) -> Result<()> {
    let (kind, major, minor) = device_number(host, field)?;
    let mount = json!({"destination": container, "type": "bind", "source": host,
                       "options": ["bind", "nosuid"]});
    match spec["mounts"].as_array_mut() {
        Some(m) => m.push(mount),
        None => spec["mounts"] = json!([mount]),
    }
    let rule =
        json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": access});
    match spec["linux"]["resources"]["devices"].as_array_mut() {
        Some(rules) => rules.push(rule),
        None => spec["linux"]["resources"]["devices"] = json!([rule]),
    }
    Ok(())
}

/// The type, major and minor of the device node `host` (the node itself: a symlink
/// at the path is not followed; its type must be what the user named).
fn device_number(host: &str, field: &str) -> Result<(&'static str, u64, u64)> {
    let m = std::fs::symlink_metadata(host)
        .map_err(|e| Error::invalid(field, format!("{host}: {e}")))?;
    let kind = if m.file_type().is_char_device() {
        "c"
    } else if m.file_type().is_block_device() {
        "b"
    } else {
        return Err(Error::invalid(
            field,
            format!("{host} is not a device node"),
        ));
    };
    Ok((
        kind,
        libc::major(m.rdev()) as u64,
        libc::minor(m.rdev()) as u64,
    ))
}

/// A host device node at `container` in the container (`linux.devices`): its type,
/// major and minor.
fn add_node(
    spec: &mut Value,
    host: &str,
    container: &str,
    field: &str,
) -> Result<(&'static str, u64, u64)> {
    let (kind, major, minor) = device_number(host, field)?;
    let mode = std::fs::symlink_metadata(host)
        .map(|m| m.mode() & 0o777)
        .map_err(|e| Error::invalid(field, format!("{host}: {e}")))?;
    let node = json!({
        "path": container, "type": kind, "major": major, "minor": minor,
        "fileMode": mode, "uid": 0, "gid": 0,
    });
    match spec["linux"]["devices"].as_array_mut() {
        Some(list) => {
            list.retain(|d| d["path"] != container);
            list.push(node);
        }
        None => spec["linux"]["devices"] = json!([node]),
    }
    Ok((kind, major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::security::{Device, Ulimit};

    fn spec_of(isolation: Isolation, security: Security) -> Result<Value> {
        let cfg = ContainerConfig {
            rootfs: Some("/srv/rootfs".into()),
            command: vec!["sh".into()],
            isolation,
            security,
            ..Default::default()
        };
        super::super::spec_value(
            &cfg,
            "0123456789abcdef",
            std::path::Path::new("/srv/rootfs"),
            &[],
            None,
            &|n| Ok(format!("/vol/{n}").into()),
        )
    }

    fn caps(s: &Value) -> Vec<String> {
        serde_json::from_value(s["process"]["capabilities"]["bounding"].clone()).unwrap()
    }

    #[test]
    fn cap_add_and_drop_change_the_set_and_the_seccomp_filter_follows() {
        let plain = spec_of(Isolation::Standard, Security::default()).unwrap();
        let s = spec_of(
            Isolation::Standard,
            Security {
                cap_add: vec!["CAP_SYS_TIME".into()],
                cap_drop: vec!["CAP_CHOWN".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let c = caps(&s);
        assert!(c.contains(&"CAP_SYS_TIME".to_string()) && !c.contains(&"CAP_CHOWN".to_string()));
        // The default filter lets settimeofday through only with CAP_SYS_TIME.
        let names = |s: &Value| s["linux"]["seccomp"].to_string();
        assert_ne!(names(&plain), names(&s));
        assert!(names(&s).contains("settimeofday"));
    }

    #[test]
    fn privileged_opens_everything_and_conflicts_are_named() {
        let s = spec_of(
            Isolation::Standard,
            Security {
                privileged: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(caps(&s), host_caps());
        assert!(s["linux"]["seccomp"].is_null());
        assert_eq!(s["linux"]["maskedPaths"], json!([]));
        assert_eq!(s["linux"]["resources"]["devices"][0]["allow"], true);
        let sys = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(!sys["options"].as_array().unwrap().contains(&json!("ro")));
        let e = spec_of(
            Isolation::Strict,
            Security {
                privileged: true,
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("privileged"), "{e}");
        let e = spec_of(
            Isolation::Minimal,
            Security {
                cap_add: vec!["CAP_NET_ADMIN".into()],
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("isolation"), "{e}");
    }

    #[test]
    fn read_only_nnp_ulimits_shm_and_devices_land_in_the_spec() {
        let s = spec_of(
            Isolation::Standard,
            Security {
                read_only: true,
                no_new_privileges: true,
                ulimits: vec![Ulimit {
                    kind: "RLIMIT_NOFILE".into(),
                    soft: 100,
                    hard: 200,
                }],
                shm_size: Some(1 << 20),
                devices: vec![Device {
                    host: "/dev/null".into(),
                    container: "/dev/mynull".into(),
                    access: "rw".into(),
                }],
                seccomp: Some(Seccomp::Unconfined),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s["root"]["readonly"], true);
        assert_eq!(s["process"]["noNewPrivileges"], true);
        assert_eq!(
            s["process"]["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}])
        );
        let shm = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/dev/shm")
            .unwrap();
        assert!(shm["options"]
            .as_array()
            .unwrap()
            .contains(&json!("size=1048576")));
        let dev = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/dev/mynull")
            .unwrap();
        assert_eq!(
            (dev["source"].as_str(), dev["type"].as_str()),
            (Some("/dev/null"), Some("bind"))
        );
        let rules = s["linux"]["resources"]["devices"].as_array().unwrap();
        assert!(rules.iter().any(|r| r["allow"] == true
            && r["major"] == 1
            && r["minor"] == 3
            && r["access"] == "rw"));
        assert!(s["linux"]["seccomp"].is_null());
        let e = spec_of(
            Isolation::Standard,
            Security {
                devices: vec![Device {
                    host: "/etc/passwd".into(),
                    container: "/dev/x".into(),
                    access: "r".into(),
                }],
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("devices[0]") && e.contains("not a device"),
            "{e}"
        );
    }
}
