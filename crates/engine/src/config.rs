//! `ContainerConfig`: what a user (or an embedding program) asks for, validated on
//! creation with errors that name the field. The parsers for the CLI's string forms
//! (`512m`, `0.5`, `50%`, `SRC:DST:ro`) live here so the CLI adds nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::network::mode::{AddHost, NetworkMode};
use crate::restart::RestartPolicy;

mod limits;
pub mod monitor;
mod parse;
pub mod sched;
pub mod security;
pub use limits::Limits;
use parse::valid_env_key;
pub use parse::{
    parse_cpus, parse_device_rates, parse_duration_secs, parse_duration_secs_or_zero,
    parse_env_file, parse_memory,
};

/// How much of the host a container may see. See DESIGN.md, "Isolation profiles".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A host program in its own cgroup, process group and rlimits.
    Minimal,
    /// Namespaces, an image rootfs, Docker's default capabilities and seccomp profile.
    #[default]
    Standard,
    /// Standard plus read-only rootfs, no capabilities, no_new_privs, a user namespace,
    /// no network, default pids and memory caps.
    Strict,
}

impl std::str::FromStr for Isolation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "minimal" => Ok(Isolation::Minimal),
            "standard" => Ok(Isolation::Standard),
            "strict" => Ok(Isolation::Strict),
            _ => Err(Error::invalid(
                "isolation",
                format!("{s:?} is not minimal, standard or strict"),
            )),
        }
    }
}

/// Where a volume's content comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum VolumeSource {
    /// A host path, bind-mounted.
    Bind { path: PathBuf },
    /// A named volume managed by the engine.
    Named { name: String },
    /// A fresh tmpfs.
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub source: VolumeSource,
    pub destination: String,
    pub readonly: bool,
    /// A named volume made for this container only (`-v /data`): `rm -v` removes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

impl Volume {
    /// `SRC:DST[:ro|rw]`: SRC is an absolute host path or a volume name; or just `DST`:
    /// an anonymous volume (a fresh named volume with a random name).
    pub fn parse(field: &str, s: &str) -> Result<Volume> {
        let parts: Vec<&str> = s.split(':').collect();
        let anonymous;
        let (src, dst, mode) = match parts.as_slice() {
            [dst] => {
                anonymous = crate::registry::new_volume_name()?;
                (anonymous.as_str(), *dst, "rw")
            }
            [src, dst] => (*src, *dst, "rw"),
            [src, dst, mode] => (*src, *dst, *mode),
            _ => return Err(Error::invalid(field, format!("{s:?} is not SRC:DST[:ro]"))),
        };
        let readonly = match mode {
            "ro" => true,
            "rw" => false,
            other => {
                return Err(Error::invalid(
                    field,
                    format!("mode {other:?} is not ro or rw"),
                ))
            }
        };
        if !dst.starts_with('/') {
            return Err(Error::invalid(
                field,
                format!("destination {dst:?} must be an absolute path"),
            ));
        }
        if dst.split('/').any(|c| c == "..") {
            return Err(Error::invalid(
                field,
                format!("destination {dst:?} must not contain '..'"),
            ));
        }
        let source = if src.starts_with('/') {
            VolumeSource::Bind {
                path: PathBuf::from(src),
            }
        } else if valid_name(src) {
            VolumeSource::Named {
                name: src.to_string(),
            }
        } else {
            return Err(Error::invalid(
                field,
                format!("source {src:?} is neither an absolute path nor a volume name"),
            ));
        };
        Ok(Volume {
            source,
            destination: dst.to_string(),
            readonly,
            anonymous: parts.len() == 1,
        })
    }
}

/// Names of containers and volumes: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, up to 128 bytes.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Seconds a container that ran past `--timeout` has between the stop signal and
/// SIGKILL, unless `--timeout-grace` says otherwise.
pub const DEFAULT_TIMEOUT_GRACE: u64 = 1;

/// Everything a container is created from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An image reference; or `rootfs`; or (minimal isolation) neither: the host's /.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `UID[:GID]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `--network`; absent: the isolation's default (see `network::mode::effective`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkMode>,
    /// Names it is also known by on its network (`--network-alias`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Nameservers for its resolv.conf (`--dns`); absent: the host's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<std::net::IpAddr>,
    /// Extra lines of its hosts file (`--add-host`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_hosts: Vec<AddHost>,
    /// Published ports (`-p`, `-P`, `--expose`; see `network::ports`).
    #[serde(
        default,
        skip_serializing_if = "crate::network::ports::Publish::is_empty"
    )]
    pub publish: crate::network::ports::Publish,
    /// `--network-rate`: bits per second, each way, on its veth (see `network::rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_rate: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub isolation: Isolation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds between the stop signal and SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    #[serde(default)]
    pub auto_remove: bool,
    /// Seconds the container may run; then it is stopped, with exit code 124 and
    /// "timed out" in its record (for short-lived "tool" containers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Seconds between the stop signal the timeout sends and SIGKILL (default
    /// [`DEFAULT_TIMEOUT_GRACE`]): short, because a job past its time is not a service
    /// being shut down politely; `stop_timeout` is for `stop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_grace: Option<u64>,
    /// The log file is rotated when it would grow past this many bytes (default 10 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_max_size: Option<u64>,
    /// How many log files are kept, the live one included (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_max_files: Option<u32>,
    // Monitors (restart policy, health check): see docs/monitors.md.
    /// What happens when its process ends on its own (`--restart`).
    #[serde(default, skip_serializing_if = "RestartPolicy::is_no")]
    pub restart: RestartPolicy,
    /// Its health check (`--health-*`); `None`: the image's, when images carry one
    /// (a check with `HealthProbe::None` switches that off: `--no-healthcheck`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::HealthCheck>,
    /// When its health check turns `unhealthy`, it is killed and its restart policy
    /// runs it again (`--restart-on-unhealthy`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_on_unhealthy: bool,
    /// Memory and CPU thresholds and the usage sampling (`--warn-memory`,
    /// `--warn-cpu`, `--stop-on-memory`, `--monitor-interval`).
    #[serde(default, skip_serializing_if = "monitor::MonitorConfig::is_default")]
    pub monitor: monitor::MonitorConfig,
    /// A terminal for its process (`-t`): its output is the terminal's (one stream,
    /// in the log as stdout), and `attach` types into it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    /// Its stdin stays open for the attached `run` that created it (`-i`); without
    /// it, stdin is /dev/null.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interactive: bool,
    /// Capabilities, `--privileged`, `--read-only`, `--security-opt`, `--ulimit`,
    /// `--shm-size`, `--device` (see `config::security`).
    #[serde(default, skip_serializing_if = "security::Security::is_default")]
    pub security: security::Security,
    /// A small init as PID 1 (`--init`): it passes signals on to the command and reaps
    /// orphans, so a shell's `stop` is not a wait for SIGKILL (see `profile::init`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
}

impl ContainerConfig {
    /// The program and its arguments: entrypoint then command.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint
            .iter()
            .chain(&self.command)
            .cloned()
            .collect()
    }

    /// How this container's log is rotated.
    pub fn log_rotation(&self) -> crate::supervisor::logs::Rotation {
        let d = crate::supervisor::logs::Rotation::default();
        crate::supervisor::logs::Rotation {
            max_size: self.log_max_size.unwrap_or(d.max_size),
            max_files: self.log_max_files.unwrap_or(d.max_files),
        }
    }

    /// Checks everything that does not need the host; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if let Some(n) = &self.name {
            if !valid_name(n) {
                return Err(Error::invalid(
                    "name",
                    format!(
                        "{n:?}: use letters, digits, _ . - (first a letter or digit), up to 128"
                    ),
                ));
            }
        }
        match (&self.image, &self.rootfs, self.isolation) {
            (Some(_), Some(_), _) => {
                return Err(Error::invalid(
                    "image",
                    "give an image or a rootfs, not both",
                ))
            }
            (None, None, Isolation::Standard | Isolation::Strict) => {
                return Err(Error::invalid(
                    "image",
                    "standard and strict isolation need an image or a rootfs",
                ))
            }
            (_, Some(r), _) if !r.is_absolute() => {
                return Err(Error::invalid(
                    "rootfs",
                    format!("{} must be an absolute path", r.display()),
                ))
            }
            _ => {}
        }
        if self.auto_remove && !self.restart.is_no() {
            return Err(Error::invalid(
                "restart",
                format!(
                    "--rm and --restart {} conflict: a removed container cannot restart",
                    self.restart
                ),
            ));
        }
        if let Some(h) = &self.health {
            h.validate()?;
        }
        if self.restart_on_unhealthy {
            if !self.health.as_ref().is_some_and(|h| h.enabled()) {
                return Err(Error::invalid(
                    "restart-on-unhealthy",
                    "needs a health check (--health-cmd, --health-http or --health-tcp)",
                ));
            }
            if self.restart.is_no() {
                return Err(Error::invalid(
                    "restart-on-unhealthy",
                    "needs a restart policy (--restart on-failure, always or unless-stopped)",
                ));
            }
        }
        if self.argv().is_empty() && self.image.is_none() {
            return Err(Error::invalid("command", "nothing to run: give a command"));
        }
        for (i, e) in self.env.iter().enumerate() {
            match e.split_once('=') {
                Some((k, _)) if valid_env_key(k) => {}
                _ => {
                    return Err(Error::invalid(
                        format!("env[{i}]"),
                        format!("{e:?} is not KEY=VALUE"),
                    ))
                }
            }
        }
        if let Some(w) = &self.working_dir {
            if !w.starts_with('/') {
                return Err(Error::invalid(
                    "working_dir",
                    format!("{w:?} must be an absolute path"),
                ));
            }
        }
        if let Some(u) = &self.user {
            // Numbers, or names that create resolves from the container's /etc/passwd.
            let part_ok = |p: &str| {
                p.parse::<u32>().is_ok()
                    || (!p.is_empty()
                        && p.len() <= 32
                        && !p.starts_with('-')
                        && p.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)))
            };
            let ok = u.split(':').count() <= 2 && u.split(':').all(part_ok);
            if !ok {
                return Err(Error::invalid(
                    "user",
                    format!("{u:?} is not USER[:GROUP] (names or numbers)"),
                ));
            }
        }
        if let Some(h) = &self.hostname {
            let ok = !h.is_empty()
                && h.len() <= 64
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
                return Err(Error::invalid(
                    "hostname",
                    format!("{h:?} is not a hostname"),
                ));
            }
        }
        crate::network::mode::validate(self)?;
        let mut dests = std::collections::HashSet::new();
        for (i, v) in self.volumes.iter().enumerate() {
            if !dests.insert(v.destination.trim_end_matches('/')) {
                return Err(Error::invalid(
                    format!("volumes[{i}]"),
                    format!("{} is mounted twice", v.destination),
                ));
            }
        }
        if let Some(s) = &self.stop_signal {
            codex_runtime::parse_signal(s)
                .map_err(|_| Error::invalid("stop_signal", format!("{s:?} is not a signal")))?;
        }
        self.limits.validate()?;
        if self.log_max_size.is_some_and(|s| s < 4096) {
            return Err(Error::invalid("log_max_size", "must be at least 4 KiB"));
        }
        if self.log_max_files == Some(0) {
            return Err(Error::invalid("log_max_files", "must be at least 1"));
        }
        if self.timeout == Some(0) {
            return Err(Error::invalid("timeout", "must be positive"));
        }
        self.monitor.validate(self.limits.memory)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_overflow_is_an_error() {
        assert_eq!(parse_duration_secs("timeout", "10").unwrap(), 10);
        assert_eq!(parse_duration_secs("timeout", "2m").unwrap(), 120);
        assert_eq!(parse_duration_secs("timeout", "1h").unwrap(), 3600);
        for bad in ["0", "", "1d", "-1", "1.5m"] {
            assert!(parse_duration_secs("timeout", bad).is_err(), "{bad}");
        }
        // Panicked (multiply with overflow) before; reproduced with fuzz/cli_parsers.
        let err = parse_duration_secs("timeout", "18446744073709551615m").unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[test]
    fn a_grace_may_be_zero_but_not_negative_or_unitless_garbage() {
        assert_eq!(
            parse_duration_secs_or_zero("timeout-grace", "0").unwrap(),
            0
        );
        assert_eq!(
            parse_duration_secs_or_zero("timeout-grace", "0s").unwrap(),
            0
        );
        assert_eq!(
            parse_duration_secs_or_zero("timeout-grace", "3s").unwrap(),
            3
        );
        for bad in ["", "-1", "1d", "x"] {
            let err = parse_duration_secs_or_zero("timeout-grace", bad).unwrap_err();
            assert!(err.to_string().starts_with("timeout-grace:"), "{err}");
        }
    }

    #[test]
    fn memory_strings() {
        assert_eq!(parse_memory("m", "512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("m", "1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("m", "1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_memory("m", "4096").unwrap(), 4096);
        for bad in ["", "abc", "12x", "-1m", "0"] {
            let e = parse_memory("memory", bad).unwrap_err().to_string();
            assert!(e.starts_with("memory:"), "{bad}: {e}");
        }
    }

    #[test]
    fn cpu_strings() {
        assert_eq!(parse_cpus("c", "0.5").unwrap(), 0.5);
        assert_eq!(parse_cpus("c", "50%").unwrap(), 0.5);
        assert!(parse_cpus("c", "0").is_err());
        assert!(parse_cpus("c", "1000").is_err());
        assert!(parse_cpus("c", "half").is_err());
    }

    #[test]
    fn volume_specs() {
        let v = Volume::parse("volumes[0]", "/srv/data:/data:ro").unwrap();
        assert_eq!(
            v.source,
            VolumeSource::Bind {
                path: "/srv/data".into()
            }
        );
        assert!(v.readonly);
        let v = Volume::parse("volumes[0]", "cache:/var/cache").unwrap();
        assert_eq!(
            v.source,
            VolumeSource::Named {
                name: "cache".into()
            }
        );
        assert!(!v.readonly);
        let v = Volume::parse("volumes[0]", "/data").unwrap();
        assert!(v.anonymous && !v.readonly && v.destination == "/data");
        assert!(matches!(v.source, VolumeSource::Named { ref name } if name.len() == 64));
        for bad in [
            "a",
            "/a:b",
            "/a:/b:rx",
            "../x:/b",
            "/a:/b/../../etc",
            "a:b:c:d",
        ] {
            let e = Volume::parse("volumes[2]", bad).unwrap_err().to_string();
            assert!(e.starts_with("volumes[2]:"), "{bad}: {e}");
        }
    }

    #[test]
    fn env_files_follow_docker() {
        let dir = std::env::temp_dir().join(format!("codex-envfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("env");
        std::fs::write(&f, "# comment\nA=1\n\nB=two words\nFROM_HOST\nMISSING\n").unwrap();
        let env = parse_env_file(&f, |k| (k == "FROM_HOST").then(|| "h".to_string())).unwrap();
        assert_eq!(env, ["A=1", "B=two words", "FROM_HOST=h"]);
        std::fs::write(&f, "1BAD=x\n").unwrap();
        assert!(parse_env_file(&f, |_| None)
            .unwrap_err()
            .to_string()
            .contains("line 1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let ok = ContainerConfig {
            image: Some("busybox".into()),
            command: vec!["true".into()],
            ..Default::default()
        };
        ok.validate().unwrap();
        let cases: Vec<(ContainerConfig, &str)> = vec![
            (
                ContainerConfig {
                    name: Some("-x".into()),
                    ..ok.clone()
                },
                "name",
            ),
            (
                ContainerConfig {
                    image: None,
                    ..ok.clone()
                },
                "image",
            ),
            (
                ContainerConfig {
                    env: vec!["NOEQUALS".into()],
                    ..ok.clone()
                },
                "env[0]",
            ),
            (
                ContainerConfig {
                    working_dir: Some("rel".into()),
                    ..ok.clone()
                },
                "working_dir",
            ),
            (
                ContainerConfig {
                    user: Some("a:b:c".into()),
                    ..ok.clone()
                },
                "user",
            ),
            (
                ContainerConfig {
                    stop_signal: Some("NOPE".into()),
                    ..ok.clone()
                },
                "stop_signal",
            ),
            (
                ContainerConfig {
                    limits: Limits {
                        pids: Some(0),
                        ..Default::default()
                    },
                    ..ok.clone()
                },
                "limits.pids",
            ),
            (
                ContainerConfig {
                    limits: Limits {
                        memory: Some(1024),
                        ..Default::default()
                    },
                    ..ok.clone()
                },
                "limits.memory",
            ),
        ];
        for (cfg, field) in cases {
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.starts_with(&format!("{field}:")), "{field}: {e}");
        }
        let host = ContainerConfig {
            isolation: Isolation::Minimal,
            command: vec!["/bin/true".into()],
            ..Default::default()
        };
        host.validate().unwrap();
    }
}
