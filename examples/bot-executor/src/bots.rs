//! The bots file: a JSON object `{"bots": [...]}`, each bot a name, what it runs (an
//! image and a command, or a host script), its isolation, limits, health check, restart
//! policy and memory ceiling, in the units a person writes (`64m`, `0.5`, `500ms`).
//! Everything is checked before anything is created; errors name the bot and the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use codex_engine::config::{
    parse_cpus, parse_memory, ContainerConfig, Isolation, Limits, Volume, VolumeSource,
};
use codex_engine::health::{parse_period, HealthCheck, HealthProbe};
use codex_engine::network::NetworkMode;
use codex_engine::restart::RestartPolicy;

/// Where a host script is mounted in a container made from an image.
pub const SCRIPT_IN_CONTAINER: &str = "/bot/script";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BotsFile {
    /// Read one by one, so an error names the bot it is in.
    bots: Vec<serde_json::Value>,
}

/// One bot as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotSpec {
    pub name: String,
    /// An image in the engine root's store (`image load`/`import`/`pull`).
    #[serde(default)]
    pub image: Option<String>,
    /// The command (with an image: its default command if absent).
    #[serde(default)]
    pub command: Vec<String>,
    /// A host script run with `/bin/sh`: as a host program (`minimal` isolation) without
    /// an image, or mounted read-only at [`SCRIPT_IN_CONTAINER`] in the image's rootfs.
    #[serde(default)]
    pub script: Option<PathBuf>,
    /// `minimal`, `standard` or `strict` (default: `minimal` for a script without an
    /// image, `standard` otherwise).
    #[serde(default)]
    pub isolation: Option<Isolation>,
    /// `none`, `host`, `bridge` or a network's name (default: the isolation's).
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub limits: LimitsSpec,
    #[serde(default)]
    pub health: Option<HealthSpec>,
    /// `no`, `on-failure[:MAX]`, `always`, `unless-stopped`.
    #[serde(default)]
    pub restart: Option<String>,
    /// Kill it when its health check turns unhealthy; the restart policy runs it again.
    #[serde(default)]
    pub restart_on_unhealthy: bool,
    /// `64m`: above this, its supervisor kills it (the engine's `--stop-on-memory`);
    /// its restart policy decides whether it runs again.
    #[serde(default)]
    pub memory_ceiling: Option<String>,
    /// Between the stop signal and SIGKILL (`2s`; default 5s).
    #[serde(default)]
    pub stop_timeout: Option<String>,
    /// A small init as PID 1, so a shell gets the stop signal.
    #[serde(default)]
    pub init: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// `128m`, `1g`.
    #[serde(default)]
    pub memory: Option<String>,
    /// `0.5` or `50%`.
    #[serde(default)]
    pub cpus: Option<String>,
    #[serde(default)]
    pub pids: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// A shell command run inside the container (exit 0: healthy).
    #[serde(default)]
    pub cmd: Option<String>,
    /// `PORT/PATH`: an HTTP GET on the container's loopback.
    #[serde(default)]
    pub http: Option<String>,
    /// A TCP connect to this port on the container's loopback.
    #[serde(default)]
    pub tcp: Option<String>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub start_period: Option<String>,
}

/// A bot ready to run: its container config, and what the status lines show.
#[derive(Debug, Clone)]
pub struct Bot {
    pub name: String,
    pub config: ContainerConfig,
    /// Bytes (also in `config.monitor.stop_on_memory`).
    pub memory_ceiling: Option<u64>,
    pub stop_timeout: std::time::Duration,
}

/// The label every container the executor makes carries (its value: the prefix), so a
/// container it left behind (a `kill -9`) is known as its own on the next run.
pub const LABEL: &str = "codex.bot-executor";
/// The label with the bot's name.
pub const BOT_LABEL: &str = "codex.bot";

/// Reads and checks a bots file; containers are named `PREFIX-NAME`.
pub fn load(path: &Path, prefix: &str) -> Result<Vec<Bot>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text, prefix).with_context(|| format!("in {}", path.display()))
}

/// [`load`] of the file's text.
pub fn parse(text: &str, prefix: &str) -> Result<Vec<Bot>> {
    let file: BotsFile = serde_json::from_str(text).context("not a bots file")?;
    if file.bots.is_empty() {
        bail!("bots: the list is empty");
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut bots = Vec::new();
    for (i, value) in file.bots.into_iter().enumerate() {
        let spec: BotSpec = serde_json::from_value(value).with_context(|| format!("bots[{i}]"))?;
        let bot = build(&spec, prefix).with_context(|| format!("bots[{i}] ({:?})", spec.name))?;
        if !seen.insert(spec.name.clone()) {
            bail!("bots[{i}]: the name {:?} is used twice", spec.name);
        }
        bots.push(bot);
    }
    Ok(bots)
}

fn build(spec: &BotSpec, prefix: &str) -> Result<Bot> {
    if !codex_engine::config::valid_name(&spec.name) {
        bail!(
            "name: {:?}: use letters, digits, _ . - (first a letter or digit)",
            spec.name
        );
    }
    let name = format!("{prefix}-{}", spec.name);
    let isolation = spec.isolation.unwrap_or(match (&spec.image, &spec.script) {
        (None, Some(_)) => Isolation::Minimal,
        _ => Isolation::Standard,
    });
    let mut config = ContainerConfig {
        name: Some(name.clone()),
        image: spec.image.clone(),
        isolation,
        env: spec.env.clone(),
        restart_on_unhealthy: spec.restart_on_unhealthy,
        init: spec.init,
        ..Default::default()
    };
    match (&spec.image, &spec.script) {
        (_, Some(script)) => {
            if !spec.command.is_empty() {
                bail!("command: give a command or a script, not both");
            }
            if !script.is_absolute() {
                bail!("script: {} must be an absolute path", script.display());
            }
            if !script.is_file() {
                bail!("script: {} is not a file", script.display());
            }
            if spec.image.is_some() {
                config.volumes.push(Volume {
                    source: VolumeSource::Bind {
                        path: script.clone(),
                    },
                    destination: SCRIPT_IN_CONTAINER.into(),
                    readonly: true,
                    anonymous: false,
                });
                config.command = vec!["/bin/sh".into(), SCRIPT_IN_CONTAINER.into()];
            } else {
                config.command = vec!["/bin/sh".into(), script.display().to_string()];
            }
        }
        (Some(_), None) => config.command = spec.command.clone(),
        (None, None) => bail!("image: give an image or a script"),
    }
    if let Some(n) = &spec.network {
        config.network = Some(NetworkMode::parse("network", n)?);
    }
    config.limits = Limits {
        memory: spec
            .limits
            .memory
            .as_deref()
            .map(|m| parse_memory("limits.memory", m))
            .transpose()?,
        cpus: spec
            .limits
            .cpus
            .as_deref()
            .map(|c| parse_cpus("limits.cpus", c))
            .transpose()?,
        pids: spec.limits.pids,
        ..Default::default()
    };
    if let Some(r) = &spec.restart {
        config.restart = RestartPolicy::parse("restart", r)?;
    }
    if let Some(h) = &spec.health {
        config.health = Some(health(h)?);
    }
    let stop_timeout = match &spec.stop_timeout {
        Some(t) => humantime::parse_duration(t)
            .with_context(|| format!("stop_timeout: {t:?} is not a duration like 5s"))?,
        None => std::time::Duration::from_secs(5),
    };
    config.stop_timeout = Some(stop_timeout.as_secs());
    let memory_ceiling = spec
        .memory_ceiling
        .as_deref()
        .map(|m| parse_memory("memory_ceiling", m))
        .transpose()?;
    if let (Some(c), Some(l)) = (memory_ceiling, config.limits.memory) {
        if c >= l {
            bail!("memory_ceiling: {c} bytes is not below limits.memory ({l} bytes): the kernel's OOM killer would act first");
        }
    }
    config.monitor.stop_on_memory = memory_ceiling;
    config.labels = BTreeMap::from([
        (LABEL.to_string(), prefix.to_string()),
        (BOT_LABEL.to_string(), spec.name.clone()),
    ]);
    // The engine's own checks (names, env, limits, policy against health...), now:
    // nothing is created for any bot unless every bot is valid.
    config.validate()?;
    Ok(Bot {
        name: spec.name.clone(),
        config,
        memory_ceiling,
        stop_timeout,
    })
}

fn health(h: &HealthSpec) -> Result<HealthCheck> {
    let probe = match (&h.cmd, &h.http, &h.tcp) {
        (Some(c), None, None) => HealthProbe::Cmd { command: c.clone() },
        (None, Some(u), None) => codex_engine::health::parse_http(u)?,
        (None, None, Some(p)) => codex_engine::health::parse_tcp(p)?,
        _ => bail!("health: give exactly one of cmd, http, tcp"),
    };
    let mut check = HealthCheck::new(probe);
    if let Some(i) = &h.interval {
        check.interval_ms = parse_period("health.interval", i)?;
    }
    if let Some(t) = &h.timeout {
        check.timeout_ms = parse_period("health.timeout", t)?;
    }
    if let Some(r) = h.retries {
        check.retries = r;
    }
    if let Some(s) = &h.start_period {
        check.start_period_ms = parse_period("health.start_period", s)?;
    }
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        format!("{:#}", parse(text, "t").unwrap_err())
    }

    #[test]
    fn a_file_of_bots_becomes_container_configs() {
        let bots = parse(
            r#"{"bots": [
              {"name": "crasher", "image": "busybox", "command": ["sh", "-c", "exit 1"],
               "network": "none", "restart": "on-failure:3",
               "limits": {"memory": "64m", "cpus": "50%", "pids": 32}},
              {"name": "hanger", "image": "busybox", "command": ["sleep", "1000"],
               "restart": "always", "restart_on_unhealthy": true, "stop_timeout": "1s",
               "health": {"cmd": "sleep 100", "interval": "500ms", "timeout": "300ms",
                          "retries": 2}},
              {"name": "leaker", "image": "busybox", "command": ["true"],
               "limits": {"memory": "128m"}, "memory_ceiling": "24m"}
            ]}"#,
            "bot",
        )
        .unwrap();
        assert_eq!(bots.len(), 3);
        let c = &bots[0].config;
        assert_eq!(c.name.as_deref(), Some("bot-crasher"));
        assert_eq!(c.network, Some(NetworkMode::None));
        assert_eq!(c.restart, RestartPolicy::OnFailure { max: Some(3) });
        assert_eq!(c.limits.memory, Some(64 << 20));
        assert_eq!(c.limits.cpus, Some(0.5));
        assert_eq!(c.limits.pids, Some(32));
        assert_eq!(c.labels[LABEL], "bot");
        assert_eq!(c.labels[BOT_LABEL], "crasher");
        assert_eq!(c.stop_timeout, Some(5));
        let h = bots[1].config.health.as_ref().unwrap();
        assert_eq!(
            h.probe,
            HealthProbe::Cmd {
                command: "sleep 100".into()
            }
        );
        assert_eq!((h.interval_ms, h.timeout_ms, h.retries), (500, 300, 2));
        assert!(bots[1].config.restart_on_unhealthy);
        assert_eq!(bots[1].stop_timeout, std::time::Duration::from_secs(1));
        assert_eq!(bots[2].memory_ceiling, Some(24 << 20));
        assert_eq!(bots[0].memory_ceiling, None);
    }

    #[test]
    fn a_host_script_runs_as_a_host_program_or_mounted_into_an_image() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("bot.sh");
        std::fs::write(&script, "echo hi\n").unwrap();
        let s = script.display();
        let bots = parse(
            &format!(
                r#"{{"bots": [{{"name": "host", "script": "{s}"}},
                              {{"name": "inside", "script": "{s}", "image": "busybox"}}]}}"#
            ),
            "p",
        )
        .unwrap();
        assert_eq!(bots[0].config.isolation, Isolation::Minimal);
        assert_eq!(
            bots[0].config.command,
            ["/bin/sh".to_string(), s.to_string()]
        );
        assert_eq!(bots[1].config.isolation, Isolation::Standard);
        assert_eq!(bots[1].config.command, ["/bin/sh", SCRIPT_IN_CONTAINER]);
        let v = &bots[1].config.volumes[0];
        assert!(v.readonly && v.destination == SCRIPT_IN_CONTAINER);
    }

    #[test]
    fn bad_bots_are_refused_naming_the_bot_and_the_field() {
        let one = |bot: &str| err(&format!(r#"{{"bots": [{bot}]}}"#));
        let cases = [
            (r#"{"name": "a"}"#, "image: give an image or a script"),
            (
                r#"{"name": "a", "image": "b", "limits": {"memory": "lots"}}"#,
                "limits.memory",
            ),
            (
                r#"{"name": "a", "image": "b", "limits": {"cpus": "0"}}"#,
                "limits.cpus",
            ),
            (
                r#"{"name": "a", "image": "b", "restart": "often"}"#,
                "restart",
            ),
            (
                r#"{"name": "a", "image": "b", "health": {"cmd": "x", "tcp": "80"}}"#,
                "exactly one of",
            ),
            (
                r#"{"name": "a", "image": "b", "health": {"cmd": "x", "interval": "1ms"}}"#,
                "health-interval",
            ),
            (
                r#"{"name": "a", "image": "b", "restart_on_unhealthy": true}"#,
                "restart-on-unhealthy",
            ),
            (
                r#"{"name": "a", "image": "b", "limits": {"memory": "16m"}, "memory_ceiling": "32m"}"#,
                "memory_ceiling",
            ),
            (r#"{"name": "a", "script": "rel.sh"}"#, "absolute"),
            (
                r#"{"name": "a", "image": "b", "network": "a b"}"#,
                "network",
            ),
            (r#"{"name": "a", "image": "b", "colour": "red"}"#, "colour"),
            (r#"{"name": "-a", "image": "b"}"#, "name"),
            (
                r#"{"name": "a", "image": "b", "stop_timeout": "soon"}"#,
                "stop_timeout",
            ),
        ];
        for (bot, needle) in cases {
            let e = one(bot);
            assert!(e.contains("bots[0]"), "{bot}: {e}");
            assert!(e.contains(needle), "{bot}: {e}");
        }
        let twice = err(r#"{"bots": [{"name": "a", "image": "b"}, {"name": "a", "image": "b"}]}"#);
        assert!(
            twice.contains("bots[1]") && twice.contains("twice"),
            "{twice}"
        );
        assert!(err(r#"{"bots": []}"#).contains("empty"));
        assert!(err("[1]").contains("not a bots file"));
    }
}
