//! `POST /containers/create`: Docker's `Config` + `HostConfig` + `NetworkingConfig` as
//! the engine's `ContainerConfig`. Unknown fields are ignored (as Docker does); a field
//! of the wrong type is a 400 that names it (see `query::parse_json`); a value codex-ctr
//! cannot honour is a 400 that says so, never silently dropped. Pure: unit-tested.

use std::collections::BTreeMap;

use codex_engine::config::{ContainerConfig, Volume, VolumeSource};
use codex_engine::health::{HealthCheck, HealthProbe};
use codex_engine::network::ports::{parse_expose, PortSpec, Publish};
use codex_engine::network::{AddHost, NetworkMode};
use codex_engine::restart::RestartPolicy;
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::query::from_object;

/// Docker's `strslice`: a list, or a single string (one element, as Docker reads it).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StrOrList {
    One(String),
    List(Vec<String>),
}

impl StrOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StrOrList::One(s) if s.is_empty() => Vec::new(),
            StrOrList::One(s) => vec![s],
            StrOrList::List(l) => l,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Healthcheck {
    pub test: Option<Vec<String>>,
    /// Nanoseconds, as all of Docker's durations.
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    pub retries: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub tty: Option<bool>,
    pub open_stdin: Option<bool>,
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    pub env: Option<Vec<String>>,
    pub cmd: Option<StrOrList>,
    pub healthcheck: Option<Healthcheck>,
    pub image: Option<String>,
    pub working_dir: Option<String>,
    pub entrypoint: Option<StrOrList>,
    pub labels: Option<BTreeMap<String, String>>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub host_config: Option<HostConfig>,
    pub networking_config: Option<NetworkingConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    pub host_ip: Option<String>,
    pub host_port: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicyBody {
    pub name: Option<String>,
    pub maximum_retry_count: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Mount {
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub read_only: Option<bool>,
}

/// `HostConfig`: its own fields, the security ones and the resources, each read from
/// the same object (see `query::from_object`: a type error names its field).
#[derive(Debug, Default, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub struct HostConfig {
    pub base: HostConfigBase,
    /// Privileged, ReadonlyRootfs, CapAdd/CapDrop, SecurityOpt, Ulimits, ShmSize, Devices.
    pub security: crate::security::SecurityBody,
    /// Memory, MemorySwap, NanoCpus, CpuShares, CpusetCpus, ... (resources.rs).
    pub resources: crate::resources::ResourcesBody,
}

impl TryFrom<serde_json::Value> for HostConfig {
    type Error = serde_json::Error;
    fn try_from(v: serde_json::Value) -> Result<Self, Self::Error> {
        if v.is_null() {
            return Ok(HostConfig::default());
        }
        Ok(HostConfig {
            base: from_object(&v)?,
            security: from_object(&v)?,
            resources: from_object(&v)?,
        })
    }
}

impl std::ops::Deref for HostConfig {
    type Target = HostConfigBase;
    fn deref(&self) -> &HostConfigBase {
        &self.base
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfigBase {
    pub binds: Option<Vec<String>>,
    pub network_mode: Option<String>,
    pub port_bindings: Option<BTreeMap<String, Option<Vec<PortBinding>>>>,
    pub restart_policy: Option<RestartPolicyBody>,
    pub auto_remove: Option<bool>,
    pub mounts: Option<Vec<Mount>>,
    pub publish_all_ports: Option<bool>,
    pub dns: Option<Vec<String>>,
    pub extra_hosts: Option<Vec<String>>,
    pub init: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointConfig {
    pub aliases: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkingConfig {
    pub endpoints_config: Option<BTreeMap<String, Option<EndpointConfig>>>,
}

fn bad(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("{field}: {why}"))
}

fn ns_to_ms(field: &str, ns: Option<i64>) -> ApiResult<Option<u64>> {
    match ns {
        None | Some(0) => Ok(None),
        Some(n) if n < 0 => Err(bad(field, "must not be negative")),
        Some(n) => Ok(Some(u64::try_from(n / 1_000_000).unwrap_or(0).max(1))),
    }
}

/// Docker's `Healthcheck` as the engine's: `["CMD-SHELL", cmd]`, `["CMD", args...]`
/// (run through the shell, quoted), `["NONE"]`; an empty test inherits the image's.
fn health(h: &Healthcheck) -> ApiResult<Option<HealthCheck>> {
    let test = h.test.clone().unwrap_or_default();
    let probe = match test.first().map(String::as_str) {
        None => return Ok(None),
        Some("NONE") => return Ok(Some(HealthCheck::new(HealthProbe::None))),
        Some("CMD-SHELL") if test.len() == 2 => HealthProbe::Cmd {
            command: test[1].clone(),
        },
        Some("CMD") if test.len() > 1 => HealthProbe::Cmd {
            command: test[1..]
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        },
        _ => {
            return Err(bad(
                "Healthcheck.Test",
                format!("{test:?} is not [\"NONE\"], [\"CMD\", ...] or [\"CMD-SHELL\", command]"),
            ))
        }
    };
    let mut c = HealthCheck::new(probe);
    if let Some(v) = ns_to_ms("Healthcheck.Interval", h.interval)? {
        c.interval_ms = v;
    }
    if let Some(v) = ns_to_ms("Healthcheck.Timeout", h.timeout)? {
        c.timeout_ms = v;
    }
    if let Some(v) = ns_to_ms("Healthcheck.StartPeriod", h.start_period)? {
        c.start_period_ms = v;
    }
    match h.retries {
        None | Some(0) => {}
        Some(r) => {
            c.retries = u32::try_from(r).map_err(|_| bad("Healthcheck.Retries", "out of range"))?
        }
    }
    c.validate()?;
    Ok(Some(c))
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn publish(body: &CreateBody, hc: &HostConfig) -> ApiResult<Publish> {
    let mut p = Publish {
        all: hc.publish_all_ports.unwrap_or(false),
        ..Default::default()
    };
    for key in body.exposed_ports.iter().flat_map(|m| m.keys()) {
        let field = format!("ExposedPorts[{key:?}]");
        let (port, proto) = parse_expose(&field, key)?;
        p.expose
            .push(codex_engine::network::ports::Exposed { port, proto });
    }
    for (key, bindings) in hc.port_bindings.iter().flatten() {
        let field = format!("HostConfig.PortBindings[{key:?}]");
        let (container_port, proto) = parse_expose(&field, key)?;
        for b in bindings.iter().flatten() {
            let host_ip =
                match b.host_ip.as_deref() {
                    None | Some("") | Some("0.0.0.0") => None,
                    Some(ip) => Some(ip.parse().map_err(|_| {
                        bad(&field, format!("HostIp {ip:?} is not an IPv4 address"))
                    })?),
                };
            let host_port = match b.host_port.as_deref() {
                None | Some("") | Some("0") => None,
                Some(hp) => Some(
                    hp.parse()
                        .map_err(|_| bad(&field, format!("HostPort {hp:?} is not a port")))?,
                ),
            };
            p.ports.push(PortSpec {
                host_ip,
                host_port,
                container_port,
                proto,
            });
        }
    }
    p.specs()?;
    Ok(p)
}

fn volumes(hc: &HostConfig) -> ApiResult<Vec<Volume>> {
    let mut out = Vec::new();
    for (i, b) in hc.binds.iter().flatten().enumerate() {
        out.push(Volume::parse(&format!("HostConfig.Binds[{i}]"), b)?);
    }
    for (i, m) in hc.mounts.iter().flatten().enumerate() {
        let field = format!("HostConfig.Mounts[{i}]");
        let target = m
            .target
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad(&field, "Target is required"))?;
        let readonly = m.read_only.unwrap_or(false);
        let source = m.source.clone().unwrap_or_default();
        let v = match m.kind.as_deref().unwrap_or("volume") {
            "bind" => {
                let spec = format!("{source}:{target}:{}", if readonly { "ro" } else { "rw" });
                let v = Volume::parse(&field, &spec)?;
                if !matches!(v.source, VolumeSource::Bind { .. }) {
                    return Err(bad(
                        &field,
                        "a bind mount's Source must be an absolute path",
                    ));
                }
                v
            }
            "volume" if source.is_empty() => {
                let mut v = Volume::parse(&field, &target)?;
                v.readonly = readonly;
                v
            }
            "volume" => {
                let spec = format!("{source}:{target}:{}", if readonly { "ro" } else { "rw" });
                let v = Volume::parse(&field, &spec)?;
                if !matches!(v.source, VolumeSource::Named { .. }) {
                    return Err(bad(&field, "a volume mount's Source must be a volume name"));
                }
                v
            }
            "tmpfs" => Volume {
                source: VolumeSource::Tmpfs,
                destination: target,
                readonly,
                anonymous: false,
            },
            other => {
                return Err(bad(
                    &field,
                    format!("Type {other:?} is not bind, volume or tmpfs"),
                ))
            }
        };
        out.push(v);
    }
    Ok(out)
}

fn restart(r: &RestartPolicyBody) -> ApiResult<RestartPolicy> {
    Ok(match r.name.as_deref().unwrap_or("") {
        "" | "no" => RestartPolicy::No,
        "always" => RestartPolicy::Always,
        "unless-stopped" => RestartPolicy::UnlessStopped,
        "on-failure" => RestartPolicy::OnFailure {
            max: match r.maximum_retry_count.unwrap_or(0) {
                0 => None,
                n => Some(u32::try_from(n).map_err(|_| {
                    bad("HostConfig.RestartPolicy.MaximumRetryCount", "out of range")
                })?),
            },
        },
        other => {
            return Err(bad(
                "HostConfig.RestartPolicy.Name",
                format!("{other:?} is not no, always, unless-stopped or on-failure"),
            ))
        }
    })
}

/// The engine's config for a create request (`name` from the query string).
pub fn config_from(body: &CreateBody, name: Option<&str>) -> ApiResult<ContainerConfig> {
    let empty = HostConfig::default();
    let hc = body.host_config.as_ref().unwrap_or(&empty);
    let image = body
        .image
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| bad("Image", "an image is required"))?;
    let network = match hc.network_mode.as_deref() {
        None | Some("") => None,
        Some(m) => Some(NetworkMode::parse("HostConfig.NetworkMode", m)?),
    };
    let mut aliases = Vec::new();
    for (net, ep) in body
        .networking_config
        .iter()
        .flat_map(|n| n.endpoints_config.iter().flatten())
    {
        let _ = net;
        if let Some(a) = ep.as_ref().and_then(|e| e.aliases.as_ref()) {
            aliases.extend(a.iter().cloned());
        }
    }
    let mut dns = Vec::new();
    for (i, d) in hc.dns.iter().flatten().enumerate() {
        dns.push(d.parse().map_err(|_| {
            bad(
                &format!("HostConfig.Dns[{i}]"),
                format!("{d:?} is not an IP address"),
            )
        })?);
    }
    let mut add_hosts = Vec::new();
    for (i, h) in hc.extra_hosts.iter().flatten().enumerate() {
        add_hosts.push(AddHost::parse(&format!("HostConfig.ExtraHosts[{i}]"), h)?);
    }
    let stop_timeout = match body.stop_timeout {
        None => None,
        Some(t) if t < 0 => None,
        Some(t) => Some(u64::try_from(t).unwrap_or(0)),
    };
    Ok(ContainerConfig {
        name: name
            .map(|n| n.trim_start_matches('/').to_string())
            .filter(|n| !n.is_empty()),
        image: Some(image),
        entrypoint: body
            .entrypoint
            .clone()
            .map(StrOrList::into_vec)
            .unwrap_or_default(),
        command: body
            .cmd
            .clone()
            .map(StrOrList::into_vec)
            .unwrap_or_default(),
        env: body.env.clone().unwrap_or_default(),
        working_dir: body.working_dir.clone().filter(|w| !w.is_empty()),
        user: body.user.clone().filter(|u| !u.is_empty()),
        hostname: body.hostname.clone().filter(|h| !h.is_empty()),
        network,
        aliases,
        dns,
        add_hosts,
        publish: publish(body, hc)?,
        volumes: volumes(hc)?,
        labels: body.labels.clone().unwrap_or_default(),
        limits: hc.resources.limits("HostConfig.")?,
        stop_signal: body.stop_signal.clone().filter(|s| !s.is_empty()),
        stop_timeout,
        auto_remove: hc.auto_remove.unwrap_or(false),
        tty: body.tty.unwrap_or(false),
        security: crate::security::security_from(&hc.security)?,
        init: hc.init.unwrap_or(false),
        interactive: body.open_stdin.unwrap_or(false),
        restart: hc
            .restart_policy
            .as_ref()
            .map(restart)
            .transpose()?
            .unwrap_or_default(),
        health: body.healthcheck.as_ref().map(health).transpose()?.flatten(),
        ..Default::default()
    })
}

#[cfg(test)]
#[path = "create_tests.rs"]
mod tests;
