//! Typed instructions: a [`Raw`] instruction with its variables substituted (where Docker
//! substitutes: not in RUN, CMD and ENTRYPOINT, whose shell does it) and its arguments
//! checked, each error naming the line and the instruction.

use std::time::Duration;

use super::parse::{Args, Raw};
use super::words::{expand_word, expand_words, raw_words, Lookup};
use crate::error::{Error, Result};

/// A command in exec form (argv) or shell form (run with the build's SHELL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

impl Command {
    /// The argv to run: exec form as is, shell form after `shell` (`/bin/sh -c`).
    pub fn argv(&self, shell: &[String]) -> Vec<String> {
        match self {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let mut v = shell.to_vec();
                v.push(s.clone());
                v
            }
        }
    }
}

/// COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    pub add: bool,
    /// `--from=STAGE|IMAGE`.
    pub from: Option<String>,
    /// `--chown=USER[:GROUP]` (names resolved in the image being built).
    pub chown: Option<String>,
    /// `--chmod=OCTAL`.
    pub chmod: Option<u32>,
    pub sources: Vec<String>,
    pub dest: String,
}

/// Docker's HEALTHCHECK (durations as given, 0 meaning the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `["NONE"]` or `["CMD", ...]` / `["CMD-SHELL", cmd]`.
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From {
        image: String,
        alias: Option<String>,
        platform: Option<String>,
    },
    Run {
        cmd: Command,
        /// `--network=none|host|default`.
        network: Option<String>,
    },
    Cmd(Command),
    Entrypoint(Command),
    Shell(Vec<String>),
    Env(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Label(Vec<(String, String)>),
    Expose(Vec<String>),
    Workdir(String),
    User(String),
    Volume(Vec<String>),
    StopSignal(String),
    Healthcheck(Health),
    Copy(CopySpec),
    Maintainer(String),
}

impl Instruction {
    /// True for the instructions that change the filesystem (one layer each).
    pub fn makes_layer(&self) -> bool {
        matches!(self, Instruction::Run { .. } | Instruction::Copy(_))
    }
}

fn err(raw: &Raw, msg: impl std::fmt::Display) -> Error {
    Error::invalid(
        "Dockerfile",
        format!("line {}: {}: {msg}", raw.line, raw.keyword),
    )
}

/// Resolves one instruction with the variables `env` has now.
pub fn resolve(raw: &Raw, env: Lookup<'_>, escape: char) -> Result<Instruction> {
    let word = |s: &str| expand_word(s, env, escape).map_err(|e| err(raw, e));
    let words = |s: &str| expand_words(s, env, escape).map_err(|e| err(raw, e));
    let allowed: &[&str] = match raw.keyword.as_str() {
        "FROM" => &["platform"],
        "RUN" => &["network"],
        "COPY" => &["from", "chown", "chmod", "link"],
        "ADD" => &["chown", "chmod", "link"],
        "HEALTHCHECK" => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    };
    for (name, _) in &raw.flags {
        if !allowed.contains(&name.as_str()) {
            return Err(err(raw, format!("the flag --{name} is not supported")));
        }
    }
    let flag = |name: &str| -> Result<Option<String>> {
        match raw.flags.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => word(v).map(Some),
            None => Ok(None),
        }
    };
    let text = match &raw.args {
        Args::Text(t) => t.as_str(),
        Args::Json(_) => "",
    };
    let list = |what: &str| -> Result<Vec<String>> {
        let v = match &raw.args {
            Args::Json(v) => v.iter().map(|s| word(s)).collect::<Result<Vec<String>>>()?,
            Args::Text(t) => words(t)?,
        };
        if v.is_empty() {
            return Err(err(raw, format!("needs {what}")));
        }
        Ok(v)
    };
    let command = || -> Result<Command> {
        match &raw.args {
            Args::Json(v) => Ok(Command::Exec(v.clone())),
            Args::Text(t) if t.is_empty() => Err(err(raw, "needs a command")),
            Args::Text(t) => Ok(Command::Shell(t.clone())),
        }
    };
    let one = |what: &str| -> Result<String> {
        let v = word(text.trim())?;
        if v.is_empty() || matches!(raw.args, Args::Json(_)) {
            return Err(err(raw, format!("needs {what}")));
        }
        Ok(v)
    };
    Ok(match raw.keyword.as_str() {
        "FROM" => {
            let v = list("an image")?;
            let (image, alias) = match v.as_slice() {
                [i] => (i.clone(), None),
                [i, as_, n] if as_.eq_ignore_ascii_case("as") => (i.clone(), Some(n.clone())),
                _ => return Err(err(raw, "expected FROM IMAGE [AS NAME]")),
            };
            if let Some(a) = &alias {
                let ok = a.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && a.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
                if !ok {
                    return Err(err(raw, format!("invalid stage name {a:?}")));
                }
            }
            Instruction::From {
                image,
                alias: alias.map(|a| a.to_ascii_lowercase()),
                platform: flag("platform")?,
            }
        }
        "RUN" => {
            let network = flag("network")?;
            if let Some(n) = &network {
                if !matches!(n.as_str(), "none" | "host" | "default") {
                    return Err(err(
                        raw,
                        format!("--network={n}: expected none, host or default"),
                    ));
                }
            }
            Instruction::Run {
                cmd: command()?,
                network,
            }
        }
        "CMD" => Instruction::Cmd(command()?),
        "ENTRYPOINT" => Instruction::Entrypoint(command()?),
        "SHELL" => match &raw.args {
            Args::Json(v) if !v.is_empty() => Instruction::Shell(v.clone()),
            _ => {
                return Err(err(
                    raw,
                    "needs the JSON form: SHELL [\"executable\", \"param\"]",
                ))
            }
        },
        "ENV" => Instruction::Env(pairs(raw, text, env, escape, true)?),
        "LABEL" => Instruction::Label(pairs(raw, text, env, escape, false)?),
        "ARG" => {
            let mut out = Vec::new();
            for w in raw_words(text, escape) {
                let (k, v) = match w.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(word(v)?)),
                    None => (w.clone(), None),
                };
                check_name(raw, &k)?;
                out.push((k, v));
            }
            if out.is_empty() {
                return Err(err(raw, "needs a name"));
            }
            Instruction::Arg(out)
        }
        "EXPOSE" => {
            let mut ports = Vec::new();
            for p in list("a port")? {
                ports.push(port(raw, &p)?);
            }
            Instruction::Expose(ports)
        }
        "WORKDIR" => Instruction::Workdir(one("a directory")?),
        "USER" => Instruction::User(one("a user")?),
        "VOLUME" => Instruction::Volume(list("a path")?),
        "STOPSIGNAL" => Instruction::StopSignal(one("a signal")?),
        "MAINTAINER" => Instruction::Maintainer(word(text)?),
        "HEALTHCHECK" => Instruction::Healthcheck(health(raw, &flag)?),
        "COPY" | "ADD" => {
            let add = raw.keyword == "ADD";
            let mut v = list("a source and a destination")?;
            if v.len() < 2 {
                return Err(err(raw, "needs a source and a destination"));
            }
            let dest = v.pop().unwrap_or_default();
            if add {
                if let Some(u) = v.iter().find(|s| s.contains("://")) {
                    return Err(err(
                        raw,
                        format!("{u}: URLs are not supported (no network in builds here): download it into the context"),
                    ));
                }
            }
            let chmod = match flag("chmod")? {
                Some(m) => Some(
                    u32::from_str_radix(&m, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| err(raw, format!("--chmod={m}: expected an octal mode")))?,
                ),
                None => None,
            };
            Instruction::Copy(CopySpec {
                add,
                from: flag("from")?,
                chown: flag("chown")?.filter(|s| !s.is_empty()),
                chmod,
                sources: v,
                dest,
            })
        }
        other => return Err(err(raw, format!("{other} is not supported"))),
    })
}

/// `KEY=VALUE ...` (or, for ENV, the old `KEY VALUE WITH BLANKS`).
fn pairs(
    raw: &Raw,
    text: &str,
    env: Lookup<'_>,
    escape: char,
    legacy: bool,
) -> Result<Vec<(String, String)>> {
    let word = |s: &str| expand_word(s, env, escape).map_err(|e| err(raw, e));
    let ws = raw_words(text, escape);
    if ws.is_empty() {
        return Err(err(raw, "needs KEY=VALUE"));
    }
    if !ws[0].contains('=') {
        if !legacy || ws.len() < 2 {
            return Err(err(raw, format!("{:?}: expected KEY=VALUE", ws[0])));
        }
        let key = ws[0].clone();
        check_name(raw, &key)?;
        let rest = text.trim_start()[key.len()..].trim_start();
        return Ok(vec![(key, word(rest)?)]);
    }
    let mut out = Vec::new();
    for w in ws {
        let Some((k, v)) = w.split_once('=') else {
            return Err(err(raw, format!("{w:?}: expected KEY=VALUE")));
        };
        let key = word(k)?;
        if key.is_empty() {
            return Err(err(raw, format!("{w:?}: an empty key")));
        }
        if legacy {
            check_name(raw, &key)?;
        }
        out.push((key, word(v)?));
    }
    Ok(out)
}

fn check_name(raw: &Raw, name: &str) -> Result<()> {
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains('=') {
        return Err(err(raw, format!("invalid variable name {name:?}")));
    }
    Ok(())
}

/// `80`, `80/tcp`, `53/udp` -> `80/tcp`, `53/udp`.
fn port(raw: &Raw, p: &str) -> Result<String> {
    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    let ok_num = num.parse::<u16>().is_ok_and(|n| n > 0);
    if !ok_num || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(err(raw, format!("invalid port {p:?}")));
    }
    Ok(format!("{num}/{proto}"))
}

fn health(raw: &Raw, flag: &dyn Fn(&str) -> Result<Option<String>>) -> Result<Health> {
    let dur = |name: &str| -> Result<Duration> {
        match flag(name)? {
            None => Ok(Duration::ZERO),
            Some(v) => {
                humantime::parse_duration(&v).map_err(|e| err(raw, format!("--{name}={v}: {e}")))
            }
        }
    };
    let retries = match flag("retries")? {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| err(raw, format!("--retries={v}: expected a number")))?,
    };
    let test = match &raw.args {
        Args::Text(t) if t.trim().eq_ignore_ascii_case("none") => {
            if !raw.flags.is_empty() {
                return Err(err(raw, "NONE takes no options"));
            }
            vec!["NONE".to_string()]
        }
        Args::Text(t) => {
            let rest = t
                .strip_prefix("CMD")
                .or_else(|| t.strip_prefix("cmd"))
                .filter(|r| r.is_empty() || r.starts_with(char::is_whitespace))
                .ok_or_else(|| err(raw, "expected HEALTHCHECK [OPTIONS] CMD command, or NONE"))?
                .trim();
            match serde_json::from_str::<Vec<String>>(rest) {
                Ok(v) if rest.starts_with('[') && !v.is_empty() => {
                    let mut t = vec!["CMD".to_string()];
                    t.extend(v);
                    t
                }
                _ if rest.is_empty() => return Err(err(raw, "CMD needs a command")),
                _ => vec!["CMD-SHELL".to_string(), rest.to_string()],
            }
        }
        Args::Json(_) => return Err(err(raw, "expected HEALTHCHECK [OPTIONS] CMD command")),
    };
    Ok(Health {
        test,
        interval: dur("interval")?,
        timeout: dur("timeout")?,
        start_period: dur("start-period")?,
        start_interval: dur("start-interval")?,
        retries,
    })
}
