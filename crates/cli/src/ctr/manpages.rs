//! `codex-ctr manpages DIR` (hidden; `make install` runs it): man pages generated from
//! the same clap definitions as `--help`, so the two never disagree.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::args::Cli;

/// Writes `codex-ctr.1` and `codex-ctr-<command>.1` for every visible command.
pub(super) fn write_all(dir: &Path) -> Result<i32> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let top = Cli::command().name("codex-ctr");
    write_page(dir, "codex-ctr", top.clone())?;
    for sub in top.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let name = format!("codex-ctr-{}", sub.get_name());
        write_page(dir, &name, sub.clone().name(name.clone()))?;
    }
    Ok(0)
}

fn write_page(dir: &Path, name: &str, cmd: clap::Command) -> Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut page)
        .with_context(|| format!("rendering the man page {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))
}
