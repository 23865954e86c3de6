//! A container in Docker's JSON shapes: `GET /containers/{id}/json` (inspect) and one
//! entry of `GET /containers/json` (list). Pure functions of the engine's record and
//! what the engine knows around it ([`Around`]): unit-tested without root.

use std::collections::BTreeMap;
use std::path::Path;

use codex_engine::config::{ContainerConfig, VolumeSource};
use codex_engine::network::peers::Attachment;
use codex_engine::network::ports::{Binding, Exposed, Publish};
use codex_engine::registry::{ContainerRecord, ContainerStatus};
use codex_engine::restart::RestartPolicy;
use serde_json::{json, Map, Value};

/// What the engine knows about a container besides its record.
#[derive(Debug, Default, Clone)]
pub struct Around {
    /// The process's environment, as its spec has it (the image's merged in).
    pub env: Vec<String>,
    pub networks: BTreeMap<String, Attachment>,
    pub ports: Vec<Binding>,
    /// `NAME:TAG` of the image the container was made from (its id if it has none).
    pub image_ref: String,
    /// The engine root (where named volumes live).
    pub root: std::path::PathBuf,
}

/// Docker's state words: the engine's `stopped` and `failed` are Docker's `exited`.
pub fn status_word(s: ContainerStatus) -> &'static str {
    match s {
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Paused => "paused",
        ContainerStatus::Restarting => "restarting",
        ContainerStatus::Removing => "removing",
        ContainerStatus::Exited | ContainerStatus::Stopped | ContainerStatus::Failed => "exited",
    }
}

/// The exit code Docker reports: the recorded one; for a run that could not start,
/// Docker's 127 (not found), 126 (cannot execute) or 125 (anything else) from its error.
pub fn exit_code(rec: &ContainerRecord) -> i32 {
    if let Some(c) = rec.exit_code {
        return c;
    }
    match (&rec.status, rec.error.as_deref()) {
        (ContainerStatus::Failed, Some(e)) if e.contains("No such file or directory") => 127,
        (ContainerStatus::Failed, Some(e)) if e.contains("permission denied") => 126,
        (ContainerStatus::Failed, _) => 125,
        _ => 0,
    }
}

pub fn config_of(rec: &ContainerRecord) -> ContainerConfig {
    serde_json::from_value(rec.config.clone()).unwrap_or_default()
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn unix_secs(rfc3339: &str) -> i64 {
    humantime::parse_rfc3339(rfc3339)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
}

fn restart_json(r: &RestartPolicy) -> Value {
    match r {
        RestartPolicy::No => json!({"Name": "no", "MaximumRetryCount": 0}),
        RestartPolicy::Always => json!({"Name": "always", "MaximumRetryCount": 0}),
        RestartPolicy::UnlessStopped => json!({"Name": "unless-stopped", "MaximumRetryCount": 0}),
        RestartPolicy::OnFailure { max } => {
            json!({"Name": "on-failure", "MaximumRetryCount": max.unwrap_or(0)})
        }
    }
}

fn port_key(port: u16, proto: impl std::fmt::Display) -> String {
    format!("{port}/{proto}")
}

/// `NetworkSettings.Ports`: every exposed or published port, with its host bindings
/// while the container runs (null when unbound, as Docker shows).
fn ports_json(publish: &Publish, bound: &[Binding]) -> Value {
    let mut m = Map::new();
    let mut exposed: Vec<Exposed> = publish.expose.clone();
    exposed.extend(publish.ports.iter().map(|p| Exposed {
        port: p.container_port,
        proto: p.proto,
    }));
    for e in exposed {
        m.insert(port_key(e.port, e.proto), Value::Null);
    }
    for b in bound {
        let entry = m
            .entry(port_key(b.container_port, b.proto))
            .or_insert(Value::Null);
        if entry.is_null() {
            *entry = json!([]);
        }
        if let Some(a) = entry.as_array_mut() {
            a.push(
                json!({"HostIp": b.host_addr().to_string(), "HostPort": b.host_port.to_string()}),
            );
        }
    }
    Value::Object(m)
}

fn mounts_json(cfg: &ContainerConfig, root: &Path) -> Value {
    Value::Array(
        cfg.volumes
            .iter()
            .map(|v| match &v.source {
                VolumeSource::Bind { path } => json!({
                    "Type": "bind", "Source": path, "Destination": v.destination,
                    "Mode": "", "RW": !v.readonly, "Propagation": "rprivate"}),
                VolumeSource::Named { name } => json!({
                    "Type": "volume", "Name": name,
                    "Source": codex_engine::volume::data_dir(root, name),
                    "Destination": v.destination, "Driver": "local", "Mode": "z",
                    "RW": !v.readonly, "Propagation": ""}),
                VolumeSource::Tmpfs => json!({
                    "Type": "tmpfs", "Source": "", "Destination": v.destination,
                    "Mode": "", "RW": !v.readonly, "Propagation": ""}),
            })
            .collect(),
    )
}

fn networks_json(a: &Around, short_id: &str) -> Value {
    let mut m = Map::new();
    for (name, at) in &a.networks {
        let mut aliases = at.aliases.clone();
        aliases.push(short_id.to_string());
        m.insert(
            name.clone(),
            json!({
                "IPAMConfig": null, "Links": null, "Aliases": aliases,
                "MacAddress": at.mac, "NetworkID": "", "EndpointID": "",
                "Gateway": at.gateway.to_string(), "IPAddress": at.ip.to_string(),
                "IPPrefixLen": at.prefix_len, "IPv6Gateway": "", "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0, "DriverOpts": null, "DNSNames": null,
            }),
        );
    }
    Value::Object(m)
}

fn health_json(rec: &ContainerRecord) -> Option<Value> {
    let h = rec.health.as_ref()?;
    Some(json!({
        "Status": h.status.as_str(),
        "FailingStreak": h.failing_streak,
        "Log": h.log.iter().map(|r| json!({
            "Start": r.start, "End": r.end, "ExitCode": r.exit_code, "Output": r.output,
        })).collect::<Vec<_>>(),
    }))
}

fn network_mode(cfg: &ContainerConfig) -> String {
    cfg.network
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_else(|| "default".into())
}

/// `GET /containers/{id}/json`.
pub fn inspect(rec: &ContainerRecord, a: &Around) -> Value {
    let cfg = config_of(rec);
    let argv = cfg.argv();
    let st = rec.status;
    let running = matches!(st, ContainerStatus::Running | ContainerStatus::Paused);
    let mut state = json!({
        "Status": status_word(st),
        "Running": running,
        "Paused": st == ContainerStatus::Paused,
        "Restarting": st == ContainerStatus::Restarting,
        "OOMKilled": rec.oom_killed,
        "Dead": false,
        "Pid": rec.pid.unwrap_or(0),
        "ExitCode": exit_code(rec),
        "Error": rec.error.clone().unwrap_or_default(),
        "StartedAt": rec.started_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
        "FinishedAt": rec.finished_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
    });
    if let Some(h) = health_json(rec) {
        state["Health"] = h;
    }
    let exposed: Map<String, Value> = cfg
        .publish
        .expose
        .iter()
        .map(|e| (port_key(e.port, e.proto), json!({})))
        .chain(
            cfg.publish
                .ports
                .iter()
                .map(|p| (port_key(p.container_port, p.proto), json!({}))),
        )
        .collect();
    let port_bindings: Map<String, Value> = cfg
        .publish
        .ports
        .iter()
        .map(|p| {
            (
                port_key(p.container_port, p.proto),
                json!([{"HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                        "HostPort": p.host_port.map(|h| h.to_string()).unwrap_or_default()}]),
            )
        })
        .collect();
    let healthcheck = cfg.health.as_ref().map(|h| match &h.probe {
        codex_engine::health::HealthProbe::None => json!({"Test": ["NONE"]}),
        codex_engine::health::HealthProbe::Cmd { command } => json!({
            "Test": ["CMD-SHELL", command],
            "Interval": h.interval_ms * 1_000_000, "Timeout": h.timeout_ms * 1_000_000,
            "StartPeriod": h.start_period_ms * 1_000_000, "Retries": h.retries}),
        other => json!({"Test": [format!("{other:?}")]}),
    });
    let nets = networks_json(a, rec.short_id());
    let first = a.networks.values().next();
    let mut v = json!({
        "Id": rec.id,
        "Created": rec.created,
        "Path": argv.first().cloned().unwrap_or_default(),
        "Args": argv.iter().skip(1).collect::<Vec<_>>(),
        "State": state,
        "Image": format!("sha256:{}", cfg.image.clone().unwrap_or_default()),
        "ResolvConfPath": "", "HostnamePath": "", "HostsPath": "", "LogPath": "",
        "Name": format!("/{}", rec.name),
        "RestartCount": rec.restart_count,
        "Driver": "overlay", "Platform": "linux",
        "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": {
            "Binds": null,
            "NetworkMode": network_mode(&cfg),
            "PortBindings": port_bindings,
            "RestartPolicy": restart_json(&cfg.restart),
            "AutoRemove": cfg.auto_remove,
            "PublishAllPorts": cfg.publish.all,
            "Dns": cfg.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "ExtraHosts": cfg.add_hosts.iter().map(|h| format!("{}:{}", h.host, h.ip)).collect::<Vec<_>>(),
            "LogConfig": {"Type": "json-file", "Config": {}},
            "Privileged": false, "ReadonlyRootfs": false,
        },
        "GraphDriver": {"Name": "overlay", "Data": null},
        "Mounts": mounts_json(&cfg, &a.root),
        "Config": {
            "Hostname": cfg.hostname.clone().unwrap_or_else(|| rec.short_id().to_string()),
            "Domainname": "",
            "User": cfg.user.clone().unwrap_or_default(),
            "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
            "ExposedPorts": exposed,
            "Tty": cfg.tty, "OpenStdin": cfg.interactive, "StdinOnce": cfg.interactive,
            "Env": a.env,
            "Cmd": cfg.command,
            "Healthcheck": healthcheck,
            "Image": a.image_ref,
            "Volumes": null,
            "WorkingDir": cfg.working_dir.clone().unwrap_or_default(),
            "Entrypoint": if cfg.entrypoint.is_empty() { Value::Null } else { json!(cfg.entrypoint) },
            "OnBuild": null,
            "Labels": rec.labels,
            "StopSignal": cfg.stop_signal,
            "StopTimeout": cfg.stop_timeout,
        },
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "SandboxKey": "",
            "HairpinMode": false, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": ports_json(&cfg.publish, &a.ports),
            "EndpointID": "",
            "Gateway": first.map(|n| n.gateway.to_string()).unwrap_or_default(),
            "IPAddress": first.map(|n| n.ip.to_string()).unwrap_or_default(),
            "IPPrefixLen": first.map(|n| n.prefix_len).unwrap_or(0),
            "MacAddress": first.map(|n| n.mac.clone()).unwrap_or_default(),
            "Networks": nets,
        },
    });
    // Memory, MemorySwap, NanoCpus, CpuShares, CpusetCpus, ... (resources.rs).
    if let (Some(hc), Value::Object(res)) = (
        v["HostConfig"].as_object_mut(),
        crate::resources::inspect_json(&cfg.limits),
    ) {
        hc.extend(res);
    }
    v
}

/// "Up 3 minutes", "Exited (0) 5 seconds ago", "Created": `docker ps`'s STATUS.
fn status_text(rec: &ContainerRecord, now: std::time::SystemTime) -> String {
    let ago = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| now.duration_since(t).ok())
            .map(human)
            .unwrap_or_else(|| "a moment".into())
    };
    match rec.status {
        ContainerStatus::Created => "Created".into(),
        ContainerStatus::Running => format!("Up {}", ago(&rec.started_at)),
        ContainerStatus::Paused => format!("Up {} (Paused)", ago(&rec.started_at)),
        ContainerStatus::Restarting => format!(
            "Restarting ({}) {} ago",
            rec.exit_code.unwrap_or(0),
            ago(&rec.finished_at)
        ),
        ContainerStatus::Removing => "Removal In Progress".into(),
        _ => format!("Exited ({}) {} ago", exit_code(rec), ago(&rec.finished_at)),
    }
}

fn human(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1..=59 => format!("{s} seconds"),
        60..=3599 => format!("{} minutes", s / 60),
        3600..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

/// One entry of `GET /containers/json`.
pub fn summary(rec: &ContainerRecord, a: &Around) -> Value {
    let cfg = config_of(rec);
    let ports: Vec<Value> = a
        .ports
        .iter()
        .map(|b| {
            json!({"IP": b.host_addr().to_string(), "PrivatePort": b.container_port,
                        "PublicPort": b.host_port, "Type": b.proto.to_string()})
        })
        .collect();
    json!({
        "Id": rec.id,
        "Names": [format!("/{}", rec.name)],
        "Image": a.image_ref,
        "ImageID": format!("sha256:{}", cfg.image.clone().unwrap_or_default()),
        "Command": cfg.argv().join(" "),
        "Created": unix_secs(&rec.created),
        "Ports": ports,
        "Labels": rec.labels,
        "State": status_word(rec.status),
        "Status": status_text(rec, std::time::SystemTime::now()),
        "HostConfig": {"NetworkMode": network_mode(&cfg)},
        "NetworkSettings": {"Networks": networks_json(a, rec.short_id())},
        "Mounts": mounts_json(&cfg, &a.root),
        "SizeRw": 0, "SizeRootFs": 0,
    })
}

#[cfg(test)]
#[path = "inspect_tests.rs"]
mod tests;
