//! Isolation profiles: a [`ContainerConfig`] becomes an OCI runtime spec. Profiles are
//! data (JSON built here, printable with `codex-ctr inspect --spec`): what each level
//! adds is visible in one place.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use serde_json::{json, Value};

use crate::config::{ContainerConfig, Isolation, VolumeSource};
use crate::error::{Error, Result};
use crate::network::{self, NetworkMode};

mod init;
mod security;

/// The spec annotation that names the container's network mode.
pub const NETWORK_ANNOTATION: &str = "io.github.codex-ctr.network";

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set (the `standard` profile).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Defaults of `strict` when the config sets no limit.
pub const STRICT_PIDS: i64 = 512;
pub const STRICT_MEMORY: u64 = 512 << 20;
/// Host ids that container ids 0..65536 map to under `strict`.
pub const STRICT_ID_BASE: u32 = 100_000;

fn standard_mounts() -> Vec<Value> {
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ]
}

/// The OCI spec for `config`, with its rootfs at `rootfs` (the host's `/` for minimal
/// isolation without one). `image_env` and `image_cwd` come from the image, if any;
/// `volume_dir` resolves a named volume to its host directory.
pub fn spec_value(
    config: &ContainerConfig,
    id: &str,
    rootfs: &Path,
    image_env: &[String],
    image_cwd: Option<&str>,
    volume_dir: &dyn Fn(&str) -> Result<std::path::PathBuf>,
) -> Result<Value> {
    config.validate()?;
    let argv = config.argv();
    if argv.is_empty() {
        return Err(Error::invalid(
            "command",
            "nothing to run: the image has no command and none was given",
        ));
    }
    let mut env = vec![DEFAULT_PATH.to_string()];
    if config.tty {
        // What a terminal program needs to know what it draws on (Docker's value).
        env.push("TERM=xterm".to_string());
    }
    for e in image_env.iter().chain(&config.env) {
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    let (uid, gid) = match &config.user {
        Some(u) => {
            let mut p = u.split(':').map(|x| x.parse::<u32>().unwrap_or(0));
            let uid = p.next().unwrap_or(0);
            (uid, p.next().unwrap_or(uid))
        }
        None => (0, 0),
    };
    let mut process = json!({
        "terminal": config.tty,
        "user": {"uid": uid, "gid": gid},
        "args": argv,
        "env": env,
        "cwd": config.working_dir.as_deref().or(image_cwd).unwrap_or("/"),
        "noNewPrivileges": false,
    });
    if let Some(n) = config.limits.open_files {
        process["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": n, "soft": n}]);
    }
    let mut spec = json!({
        "ociVersion": codex_runtime::spec::OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": false},
        "hostname": config.hostname.clone().unwrap_or_else(|| id.chars().take(12).collect()),
        "annotations": {"io.github.codex-ctr.isolation": format!("{:?}", config.isolation).to_lowercase()},
        "linux": {"resources": resources(config)?},
    });

    if config.isolation == Isolation::Standard {
        // The host mounts the overlay rootfs nosuid,nodev (supervisor::mount_rootfs); the
        // container's own view keeps set-id programs and image device nodes working.
        spec["annotations"][codex_runtime::rootfs::ROOTFS_SUID_DEV_ANNOTATION] = "true".into();
    }
    match config.isolation {
        Isolation::Minimal => {
            // The host's filesystem, network and processes; its own cgroup, mount
            // namespace (the runtime needs one) and rlimits.
            spec["linux"]["namespaces"] = json!([{"type": "mount"}]);
            spec["mounts"] = json!([]);
            spec.as_object_mut().map(|o| o.remove("hostname"));
        }
        Isolation::Standard | Isolation::Strict => {
            spec["mounts"] = Value::Array(standard_mounts());
            spec["linux"]["namespaces"] = json!([
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ]);
            spec["linux"]["maskedPaths"] = json!(MASKED);
            spec["linux"]["readonlyPaths"] = json!(READONLY);
            spec["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}]);
            let caps: Vec<&str> = if config.isolation == Isolation::Strict {
                Vec::new()
            } else {
                DEFAULT_CAPS.to_vec()
            };
            spec["process"]["capabilities"] =
                json!({"bounding": caps, "effective": caps, "permitted": caps});
            spec["linux"]["seccomp"] = codex_runtime::seccomp_default::default_profile_json(&caps);
        }
    }
    network_namespace(config, &mut spec)?;
    if config.isolation == Isolation::Strict {
        spec["root"]["readonly"] = true.into();
        spec["process"]["noNewPrivileges"] = true.into();
        if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
            ns.push(json!({"type": "user"}));
        }
        spec["linux"]["uidMappings"] =
            json!([{"containerID": 0, "hostID": STRICT_ID_BASE, "size": 65536}]);
        spec["linux"]["gidMappings"] =
            json!([{"containerID": 0, "hostID": STRICT_ID_BASE, "size": 65536}]);
        if let Some(m) = spec["mounts"].as_array_mut() {
            m.push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]}));
        }
        let res = &mut spec["linux"]["resources"];
        if res["pids"].is_null() {
            res["pids"] = json!({"limit": STRICT_PIDS});
        }
        if res["memory"].is_null() {
            res["memory"] = json!({"limit": STRICT_MEMORY});
        }
    }
    for (i, v) in config.volumes.iter().enumerate() {
        let mut opts: Vec<&str> = vec!["rbind", "nosuid", "nodev"];
        if v.readonly {
            opts.push("ro");
        }
        let m = match &v.source {
            VolumeSource::Bind { path } => {
                if !path.exists() {
                    return Err(Error::invalid(
                        format!("volumes[{i}]"),
                        format!("{} does not exist", path.display()),
                    ));
                }
                json!({"destination": v.destination, "type": "bind", "source": path, "options": opts})
            }
            VolumeSource::Named { name } => {
                json!({"destination": v.destination, "type": "bind", "source": volume_dir(name)?, "options": opts})
            }
            VolumeSource::Tmpfs => {
                json!({"destination": v.destination, "type": "tmpfs", "source": "tmpfs",
                                          "options": ["nosuid", "nodev", "mode=1777"]})
            }
        };
        match spec["mounts"].as_array_mut() {
            Some(mounts) => mounts.push(m),
            None => spec["mounts"] = json!([m]),
        }
    }
    security::apply(config, &mut spec)?;
    if config.init {
        init::apply(config, &mut spec)?;
    }
    // Type-check against the runtime's own parser: a profile bug is caught here.
    let text = serde_json::to_vec(&spec).map_err(|e| Error::invalid("spec", e.to_string()))?;
    codex_runtime::spec::parse_spec(&text)?;
    Ok(spec)
}

/// The network namespace of the config's network mode: `host` shares the host's (no
/// `network` namespace), `none` gets its own. The mode is in an annotation, so the
/// spec says which one a container has.
fn network_namespace(config: &ContainerConfig, spec: &mut Value) -> Result<()> {
    let mode = network::mode::effective(config);
    if let Some(e) = network::mode::not_wired(&mode) {
        return Err(e);
    }
    if mode == NetworkMode::Host {
        if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
            ns.retain(|n| n["type"] != "network");
        }
    }
    spec["annotations"][NETWORK_ANNOTATION] = mode.to_string().into();
    Ok(())
}

/// Limits as OCI `linux.resources`.
fn resources(config: &ContainerConfig) -> Result<Value> {
    let l = &config.limits;
    let mut r = json!({});
    if let Some(m) = l.memory {
        r["memory"] = json!({"limit": m});
    }
    // -1 (unlimited swap) is what a new cgroup has: nothing to write.
    if let Some(s) = l.memory_swap.filter(|s| *s >= 0) {
        r["memory"]["swap"] = json!(s);
    }
    if let Some(c) = l.cpus {
        let period = 100_000u64;
        r["cpu"] = json!({"quota": (c * period as f64).round() as i64, "period": period});
    }
    if let Some(s) = l.cpu_shares {
        r["cpu"]["shares"] = json!(s);
    }
    if let Some(c) = &l.cpuset_cpus {
        r["cpu"]["cpus"] = json!(c);
    }
    if let Some(m) = &l.cpuset_mems {
        r["cpu"]["mems"] = json!(m);
    }
    if let Some(p) = l.pids {
        r["pids"] = json!({"limit": p});
    }
    let mut throttle =
        |map: &std::collections::BTreeMap<String, u64>, key: &str, field: &str| -> Result<()> {
            let mut list = Vec::new();
            for (dev, rate) in map {
                let (major, minor) =
                    block_device(dev).map_err(|e| Error::invalid(format!("{field}[{dev}]"), e))?;
                list.push(json!({"major": major, "minor": minor, "rate": rate}));
            }
            if !list.is_empty() {
                r["blockIO"][key] = Value::Array(list);
            }
            Ok(())
        };
    throttle(
        &l.io_read_bps,
        "throttleReadBpsDevice",
        "limits.io_read_bps",
    )?;
    throttle(
        &l.io_write_bps,
        "throttleWriteBpsDevice",
        "limits.io_write_bps",
    )?;
    Ok(r)
}

pub(crate) fn block_device(path: &str) -> std::result::Result<(u64, u64), String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?;
    if !m.file_type().is_block_device() {
        return Err(format!("{path} is not a block device"));
    }
    Ok((libc::major(m.rdev()) as u64, libc::minor(m.rdev()) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Limits, Volume};

    fn cfg(iso: Isolation) -> ContainerConfig {
        ContainerConfig {
            rootfs: Some("/srv/rootfs".into()),
            command: vec!["sh".into()],
            isolation: iso,
            ..Default::default()
        }
    }

    fn spec(c: &ContainerConfig) -> Value {
        spec_value(
            c,
            "0123456789abcdef",
            Path::new("/srv/rootfs"),
            &[],
            None,
            &|n| Ok(format!("/vol/{n}").into()),
        )
        .unwrap()
    }

    #[test]
    fn standard_has_namespaces_default_caps_masks_and_seccomp() {
        let s = spec(&cfg(Isolation::Standard));
        assert_eq!(s["linux"]["namespaces"].as_array().unwrap().len(), 6);
        assert_eq!(
            s["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            DEFAULT_CAPS.len()
        );
        assert_eq!(s["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(s["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .contains(&json!("/proc/kcore")));
        assert_eq!(s["root"]["readonly"], false);
        assert_eq!(s["hostname"], "0123456789ab");
    }

    #[test]
    fn strict_adds_readonly_root_no_caps_nnp_userns_and_caps() {
        let s = spec(&cfg(Isolation::Strict));
        assert_eq!(s["root"]["readonly"], true);
        assert_eq!(s["process"]["noNewPrivileges"], true);
        assert!(s["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .is_empty());
        assert!(s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "user"})));
        assert_eq!(s["linux"]["resources"]["pids"]["limit"], STRICT_PIDS);
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], STRICT_MEMORY);
        assert!(s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/tmp"));
    }

    #[test]
    fn minimal_is_a_host_program_with_only_a_mount_namespace() {
        let mut c = cfg(Isolation::Minimal);
        c.rootfs = None;
        c.limits = Limits {
            memory: Some(64 << 20),
            ..Default::default()
        };
        let s = spec_value(&c, "id", Path::new("/"), &[], None, &|_| unreachable!()).unwrap();
        assert_eq!(s["linux"]["namespaces"], json!([{"type": "mount"}]));
        assert_eq!(s["root"]["path"], "/");
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert!(
            s["process"]["capabilities"].is_null(),
            "minimal keeps the caller's capabilities"
        );
    }

    #[test]
    fn limits_volumes_env_and_user_map_to_the_spec() {
        let mut c = cfg(Isolation::Standard);
        c.limits = Limits {
            cpus: Some(0.5),
            pids: Some(20),
            open_files: Some(1024),
            ..Default::default()
        };
        c.volumes = vec![Volume::parse("v", "cache:/cache:ro").unwrap()];
        c.env = vec!["A=1".into(), "PATH=/bin".into()];
        c.user = Some("1000:100".into());
        let s = spec(&c);
        assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(s["linux"]["resources"]["pids"]["limit"], 20);
        assert_eq!(s["process"]["rlimits"][0]["hard"], 1024);
        let m = s["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(m["source"], "/vol/cache");
        assert!(m["options"].as_array().unwrap().contains(&json!("ro")));
        assert_eq!(s["process"]["env"], json!(["A=1", "PATH=/bin"]));
        assert_eq!(s["process"]["user"], json!({"uid": 1000, "gid": 100}));
    }

    #[test]
    fn shares_cpusets_and_swap_map_to_oci_resources() {
        let mut c = cfg(Isolation::Standard);
        c.limits = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            cpuset_mems: Some("0".into()),
            ..Default::default()
        };
        let r = spec(&c)["linux"]["resources"].clone();
        assert_eq!(r["memory"], json!({"limit": 64 << 20, "swap": 128 << 20}));
        assert_eq!(r["cpu"], json!({"shares": 512, "cpus": "0", "mems": "0"}));
        // -1 (unlimited swap) is a new cgroup's own value: nothing is written.
        c.limits.memory_swap = Some(-1);
        let r = spec(&c)["linux"]["resources"].clone();
        assert_eq!(r["memory"], json!({"limit": 64 << 20}));
    }

    fn namespaces(s: &Value) -> Vec<String> {
        s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn host_network_drops_the_network_namespace_and_none_keeps_its_own() {
        let mut c = cfg(Isolation::Standard);
        c.network = Some(NetworkMode::Host);
        let s = spec(&c);
        assert!(!namespaces(&s).contains(&"network".to_string()));
        assert_eq!(namespaces(&s).len(), 5);
        assert_eq!(s["annotations"][NETWORK_ANNOTATION], "host");
        c.network = Some(NetworkMode::None);
        let s = spec(&c);
        assert!(namespaces(&s).contains(&"network".to_string()));
        assert_eq!(s["annotations"][NETWORK_ANNOTATION], "none");
        // strict: its own, and says so.
        let s = spec(&cfg(Isolation::Strict));
        assert!(namespaces(&s).contains(&"network".to_string()));
        assert_eq!(s["annotations"][NETWORK_ANNOTATION], "none");
    }

    #[test]
    fn bridge_named_and_container_modes_get_a_network_namespace_entry() {
        for m in ["bridge", "backend"] {
            let mut c = cfg(Isolation::Standard);
            c.network = Some(NetworkMode::parse("network", m).unwrap());
            let s = spec(&c);
            assert!(namespaces(&s).contains(&"network".to_string()), "{m}");
            assert_eq!(s["annotations"][NETWORK_ANNOTATION], m);
        }
        let mut c = cfg(Isolation::Standard);
        c.network = Some(NetworkMode::parse("network", "container:db").unwrap());
        // A network namespace entry whose path the start fills in (join.rs).
        let s = spec(&c);
        assert!(namespaces(&s).contains(&"network".to_string()));
        assert_eq!(s["annotations"][NETWORK_ANNOTATION], "container:db");
        // The default of standard is the default bridge network, in its own namespace.
        let s = spec(&cfg(Isolation::Standard));
        assert_eq!(s["annotations"][NETWORK_ANNOTATION], "bridge");
        assert!(namespaces(&s).contains(&"network".to_string()));
    }

    #[test]
    fn a_missing_bind_source_is_named() {
        let mut c = cfg(Isolation::Standard);
        c.volumes = vec![Volume::parse("v", "/does/not/exist:/x").unwrap()];
        let e = spec_value(&c, "id", Path::new("/r"), &[], None, &|_| unreachable!())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("volumes[0]:"), "{e}");
    }
}
