//! `create` and `run`'s flags as a `ContainerConfig`: string forms parsed by the
//! engine's own parsers, so an error names the flag.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use codex_engine::config::{
    parse_cpus, parse_device_rates, parse_duration_secs, parse_duration_secs_or_zero,
    parse_env_file, parse_memory, ContainerConfig, Limits, Volume, VolumeSource,
};
use codex_engine::health::{self, HealthCheck, HealthProbe};
use codex_engine::network::{AddHost, NetworkMode};
use codex_engine::restart::RestartPolicy;

use super::args::CreateArgs;

pub(super) fn config_from(a: &CreateArgs) -> Result<ContainerConfig> {
    let isolation = a.isolation.parse()?;
    let mut rest = a.rest.clone();
    let (image, rootfs) = match (&a.rootfs, isolation) {
        (Some(r), _) => (
            None,
            Some(std::fs::canonicalize(r).with_context(|| format!("--rootfs {}", r.display()))?),
        ),
        (None, codex_engine::config::Isolation::Minimal) => (None, None),
        (None, _) => {
            if rest.is_empty() {
                bail!("give an IMAGE (or --rootfs DIR)");
            }
            (Some(rest.remove(0)), None)
        }
    };
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(parse_env_file(f, |k| std::env::var(k).ok())?);
    }
    env.extend(a.env.iter().cloned());
    let mut labels = BTreeMap::new();
    // Files first: a -l of the same key wins, as -e wins over --env-file.
    for f in &a.label_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("label-file {}", f.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            if k.trim().is_empty() {
                bail!(
                    "label-file {}: line {}: {line:?} is not KEY=VALUE",
                    f.display(),
                    n + 1
                );
            }
            labels.insert(k.trim().to_string(), v.to_string());
        }
    }
    for (i, l) in a.label.iter().enumerate() {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            bail!("label[{i}]: {l:?} is not KEY=VALUE");
        }
        labels.insert(k.to_string(), v.to_string());
    }
    let mut volumes = Vec::new();
    for (i, v) in a.volume.iter().enumerate() {
        volumes.push(Volume::parse(&format!("volumes[{i}]"), v)?);
    }
    for t in &a.tmpfs {
        volumes.push(Volume {
            source: VolumeSource::Tmpfs,
            destination: t.clone(),
            readonly: false,
            anonymous: false,
        });
    }
    let mut limits = Limits {
        memory: a
            .memory
            .as_deref()
            .map(|m| parse_memory("memory", m))
            .transpose()?,
        cpus: a
            .cpus
            .as_deref()
            .map(|c| parse_cpus("cpus", c))
            .transpose()?,
        pids: a.pids_limit,
        open_files: a.open_files,
        io_read_bps: parse_device_rates("device-read-bps", &a.device_read_bps)?,
        io_write_bps: parse_device_rates("device-write-bps", &a.device_write_bps)?,
        ..Default::default()
    };
    a.sched.apply(&mut limits)?;
    let network = a
        .network
        .as_deref()
        .map(|n| NetworkMode::parse("--network", n))
        .transpose()?;
    let mut dns = Vec::new();
    for (i, d) in a.dns.iter().enumerate() {
        dns.push(
            d.parse()
                .map_err(|_| anyhow::anyhow!("dns[{i}]: {d:?} is not an IP address"))?,
        );
    }
    let mut add_hosts = Vec::new();
    for (i, h) in a.add_host.iter().enumerate() {
        add_hosts.push(AddHost::parse(&format!("add-host[{i}]"), h)?);
    }
    Ok(ContainerConfig {
        name: a.name.clone(),
        image,
        rootfs,
        entrypoint: a.entrypoint.iter().cloned().collect(),
        command: rest,
        env,
        working_dir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        network,
        aliases: a.network_alias.clone(),
        dns,
        add_hosts,
        publish: a.net.publish()?,
        network_rate: a.net.network_rate()?,
        volumes,
        labels,
        limits,
        isolation,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        auto_remove: a.rm,
        timeout: a
            .timeout
            .as_deref()
            .map(|t| parse_duration_secs("timeout", t))
            .transpose()?,
        timeout_grace: a
            .timeout_grace
            .as_deref()
            .map(|t| parse_duration_secs_or_zero("timeout-grace", t))
            .transpose()?,
        log_max_size: a
            .log_max_size
            .as_deref()
            .map(|m| parse_memory("log-max-size", m))
            .transpose()?,
        log_max_files: a.log_max_files,
        restart: a
            .restart
            .as_deref()
            .map(|r| RestartPolicy::parse("restart", r))
            .transpose()?
            .unwrap_or_default(),
        health: health_from(a)?,
        restart_on_unhealthy: a.restart_on_unhealthy,
        monitor: a.mon.monitor()?,
        tty: a.tty,
        interactive: a.interactive,
        security: a.sec.security()?,
        init: a.init,
    })
}

/// `--health-*` and `--no-healthcheck` as a `HealthCheck` (`None`: none given).
fn health_from(a: &CreateArgs) -> Result<Option<HealthCheck>> {
    let mut probes = Vec::new();
    if let Some(c) = &a.health_cmd {
        probes.push(HealthProbe::Cmd { command: c.clone() });
    }
    if let Some(h) = &a.health_http {
        probes.push(health::parse_http(h)?);
    }
    if let Some(t) = &a.health_tcp {
        probes.push(health::parse_tcp(t)?);
    }
    let timing = a.health_interval.is_some()
        || a.health_timeout.is_some()
        || a.health_retries.is_some()
        || a.health_start_period.is_some();
    if probes.len() > 1 {
        bail!(
            "health-cmd, health-http, health-tcp: give one probe, not {}",
            probes.len()
        );
    }
    if a.no_healthcheck {
        if !probes.is_empty() || timing {
            bail!("no-healthcheck: conflicts with the --health-* flags");
        }
        return Ok(Some(HealthCheck::new(HealthProbe::None)));
    }
    let Some(probe) = probes.pop() else {
        if timing {
            bail!("health-interval, health-timeout, health-retries, health-start-period: need a probe (--health-cmd, --health-http or --health-tcp)");
        }
        return Ok(None);
    };
    let mut h = HealthCheck::new(probe);
    if let Some(v) = &a.health_interval {
        h.interval_ms = health::parse_period("health-interval", v)?;
    }
    if let Some(v) = &a.health_timeout {
        h.timeout_ms = health::parse_period("health-timeout", v)?;
    }
    if let Some(v) = &a.health_start_period {
        h.start_period_ms = health::parse_period("health-start-period", v)?;
    }
    if let Some(r) = a.health_retries {
        h.retries = r;
    }
    h.validate()?;
    Ok(Some(h))
}

/// `--pull`: the container's image pulled first, as the policy says (from a registry on
/// the loopback; see `codex_engine::image::ensure`).
pub(super) fn pull_for(
    eng: &codex_engine::engine::Engine,
    a: &CreateArgs,
    cfg: &ContainerConfig,
) -> Result<()> {
    let policy = codex_engine::image::ensure::PullPolicy::parse("pull", &a.pull)?;
    if let Some(image) = &cfg.image {
        if eng.ensure_image(image, policy)? {
            eprintln!("codex-ctr: pulled {image}");
        }
    }
    Ok(())
}
