//! The command line: `codex-bot-executor --root DIR [--supervisor PATH] [--interval D]
//! [--prefix P] BOTS.json`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

pub const USAGE: &str = "usage: codex-bot-executor --root DIR [--supervisor PATH] \
[--interval 1s] [--prefix bot] BOTS.json";

#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// The engine root (made if missing; images must already be in it).
    pub root: PathBuf,
    /// The binary that supervises containers (`codex-ctr`); default: `codex-ctr` next to
    /// this executable, else on PATH.
    pub supervisor: Option<PathBuf>,
    /// Between two status blocks.
    pub interval: Duration,
    /// Containers are named `PREFIX-BOT` and labelled with the prefix.
    pub prefix: String,
    pub bots: PathBuf,
}

/// Parses the arguments after the program name.
pub fn parse(argv: impl IntoIterator<Item = OsString>) -> Result<Args> {
    let mut it = argv.into_iter();
    let (mut root, mut supervisor, mut bots) = (None, None, None);
    let mut interval = Duration::from_secs(1);
    let mut prefix = "bot".to_string();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match a.to_str() {
            Some("--root") => root = Some(PathBuf::from(value("--root")?)),
            Some("--supervisor") => supervisor = Some(PathBuf::from(value("--supervisor")?)),
            Some("--interval") => {
                let v = value("--interval")?;
                let s = v.to_string_lossy();
                interval = humantime::parse_duration(&s)
                    .with_context(|| format!("--interval: {s:?} is not a duration like 1s"))?;
                if interval < Duration::from_millis(200) {
                    bail!("--interval: {s} is shorter than 200ms");
                }
            }
            Some("--prefix") => prefix = value("--prefix")?.to_string_lossy().into_owned(),
            Some(flag) if flag.starts_with('-') => bail!("unknown flag {flag}\n{USAGE}"),
            _ if bots.is_none() => bots = Some(PathBuf::from(a)),
            _ => bail!("one bots file only\n{USAGE}"),
        }
    }
    let root = root.with_context(|| format!("--root is required\n{USAGE}"))?;
    let bots = bots.with_context(|| format!("no bots file given\n{USAGE}"))?;
    if !codex_engine::config::valid_name(&prefix) {
        bail!("--prefix: {prefix:?}: use letters, digits, _ . - (first a letter or digit)");
    }
    Ok(Args {
        root,
        supervisor,
        interval,
        prefix,
        bots,
    })
}

/// The supervisor binary: the one given, else `codex-ctr` beside this program, else on
/// PATH.
pub fn supervisor(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        if !p.is_file() {
            bail!("--supervisor: {} is not a file", p.display());
        }
        return Ok(p);
    }
    let beside = std::env::current_exe()
        .ok()
        .map(|e| e.with_file_name("codex-ctr"));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("codex-ctr"));
    beside
        .into_iter()
        .chain(on_path)
        .find(|p| p.is_file())
        .context("codex-ctr not found beside this program or on PATH: give --supervisor PATH")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args> {
        parse(s.split_whitespace().map(OsString::from))
    }

    #[test]
    fn flags_and_the_bots_file_parse() {
        let a = args("--root /r --interval 500ms --prefix t1 bots.json").unwrap();
        assert_eq!(a.root, PathBuf::from("/r"));
        assert_eq!(a.interval, Duration::from_millis(500));
        assert_eq!(a.prefix, "t1");
        assert_eq!(a.bots, PathBuf::from("bots.json"));
        assert_eq!(a.supervisor, None);
        let d = args("bots.json --root /r").unwrap();
        assert_eq!(
            (d.interval, d.prefix.as_str()),
            (Duration::from_secs(1), "bot")
        );
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        for (line, needle) in [
            ("bots.json", "--root is required"),
            ("--root /r", "no bots file"),
            ("--root", "--root needs a value"),
            ("--root /r --interval fast b", "--interval"),
            ("--root /r --interval 10ms b", "shorter than"),
            ("--root /r --prefix -x b", "--prefix"),
            ("--root /r --verbose b", "unknown flag --verbose"),
            ("--root /r a b", "one bots file"),
        ] {
            let e = format!("{:#}", args(line).unwrap_err());
            assert!(e.contains(needle), "{line}: {e}");
        }
        let e = supervisor(Some("/nonexistent/codex-ctr".into())).unwrap_err();
        assert!(e.to_string().contains("--supervisor"));
    }
}
