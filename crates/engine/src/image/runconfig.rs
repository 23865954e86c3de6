//! An image config's `config` section as the engine keeps it: the defaults a container
//! of the image gets (Env, Entrypoint, Cmd, WorkingDir, User, ExposedPorts, StopSignal,
//! Labels) and Docker's Healthcheck, which the OCI type does not carry.

use oci_spec::image::ImageConfiguration;
use serde::Deserialize;

use super::{Healthcheck, ImageConfig};

/// Docker's `config.Healthcheck` (durations in nanoseconds).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerHealth {
    #[serde(default)]
    test: Vec<String>,
    #[serde(default)]
    interval: i64,
    #[serde(default)]
    timeout: i64,
    #[serde(default)]
    start_period: i64,
    #[serde(default)]
    start_interval: i64,
    #[serde(default)]
    retries: i64,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    config: Option<RawConfig>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default, rename = "Healthcheck")]
    healthcheck: Option<DockerHealth>,
}

/// The run defaults of a parsed config; `raw` is the same config's bytes (for the
/// Healthcheck). Negative durations and counts are read as 0 (the default).
pub(crate) fn from_config(c: &ImageConfiguration, raw: &[u8]) -> ImageConfig {
    let mut out = ImageConfig::default();
    if let Some(cfg) = c.config() {
        out.entrypoint = cfg.entrypoint().clone().unwrap_or_default();
        out.cmd = cfg.cmd().clone().unwrap_or_default();
        out.env = cfg.env().clone().unwrap_or_default();
        out.working_dir = cfg.working_dir().clone().unwrap_or_default();
        out.user = cfg.user().clone().unwrap_or_default();
        out.labels = cfg
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut ports = cfg.exposed_ports().clone().unwrap_or_default();
        ports.sort();
        ports.dedup();
        out.exposed_ports = ports;
        out.stop_signal = cfg.stop_signal().clone().unwrap_or_default();
    }
    let health = serde_json::from_slice::<Raw>(raw)
        .ok()
        .and_then(|r| r.config)
        .and_then(|c| c.healthcheck);
    out.healthcheck = health.map(|h| {
        let ns = |v: i64| u64::try_from(v).unwrap_or(0);
        Healthcheck {
            test: h.test,
            interval: ns(h.interval),
            timeout: ns(h.timeout),
            start_period: ns(h.start_period),
            start_interval: ns(h.start_interval),
            retries: u32::try_from(h.retries).unwrap_or(0),
        }
    });
    out
}

/// `OS/ARCH[/VARIANT]` of a config.
pub(crate) fn platform_of(c: &ImageConfiguration) -> String {
    let mut s = format!("{}/{}", c.os(), c.architecture());
    if let Some(v) = c.variant() {
        s = format!("{s}/{v}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_read() {
        let raw = br#"{
          "architecture": "amd64", "os": "linux",
          "config": {
            "User": "1000:1000", "Env": ["A=1", "PATH=/bin"],
            "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"],
            "WorkingDir": "/srv", "StopSignal": "SIGINT",
            "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
            "Labels": {"k": "v"},
            "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 2000000000,
                            "Timeout": 1000000000, "Retries": 3, "StartPeriod": -5}
          },
          "rootfs": {"type": "layers", "diff_ids": []}
        }"#;
        let c: ImageConfiguration = serde_json::from_slice(raw).unwrap();
        let ic = from_config(&c, raw);
        assert_eq!(ic.user, "1000:1000");
        assert_eq!(ic.env, ["A=1", "PATH=/bin"]);
        assert_eq!(ic.entrypoint, ["/bin/sh", "-c"]);
        assert_eq!(ic.cmd, ["echo hi"]);
        assert_eq!(ic.working_dir, "/srv");
        assert_eq!(ic.stop_signal, "SIGINT");
        assert_eq!(ic.exposed_ports, ["53/udp", "8080/tcp"]);
        assert_eq!(ic.labels.get("k").map(String::as_str), Some("v"));
        let h = ic.healthcheck.unwrap();
        assert_eq!(h.test, ["CMD-SHELL", "true"]);
        assert_eq!(
            (h.interval, h.timeout, h.retries, h.start_period),
            (2_000_000_000, 1_000_000_000, 3, 0)
        );
        assert_eq!(platform_of(&c), "linux/amd64");
    }

    #[test]
    fn an_empty_config_gives_empty_defaults() {
        let raw = br#"{"architecture":"arm","os":"linux","variant":"v7","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let c: ImageConfiguration = serde_json::from_slice(raw).unwrap();
        assert_eq!(from_config(&c, raw), ImageConfig::default());
        assert_eq!(platform_of(&c), "linux/arm/v7");
    }
}
