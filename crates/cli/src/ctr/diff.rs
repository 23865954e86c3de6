//! `codex-ctr diff CONTAINER`: the paths a container added (A), changed (C) or deleted
//! (D) in its image's files, as `docker diff` prints them (its clap type is here, kept
//! out of args.rs).

use anyhow::Result;
use clap::Args;
use codex_engine::diff_api::Change;
use codex_engine::engine::Engine;

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Output format: lines (`C /etc`, `A /etc/new`, `D /etc/old`) or json.
    #[arg(long, default_value = "lines", value_parser = ["lines", "json"])]
    pub format: String,
    /// The container (name or id).
    pub container: String,
}

fn lines(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|c| format!("{} {}\n", c.kind.letter(), c.path))
        .collect()
}

pub(super) fn diff(eng: &Engine, a: &DiffArgs) -> Result<i32> {
    let changes = eng.diff(&a.container)?;
    if a.format == "json" {
        println!("{}", serde_json::to_string(&changes)?);
    } else {
        print!("{}", lines(&changes));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use codex_engine::diff_api::ChangeKind;

    #[test]
    fn lines_are_dockers() {
        let c = [
            Change {
                path: "/etc".into(),
                kind: ChangeKind::Modified,
            },
            Change {
                path: "/etc/new".into(),
                kind: ChangeKind::Added,
            },
            Change {
                path: "/etc/old".into(),
                kind: ChangeKind::Deleted,
            },
        ];
        assert_eq!(lines(&c), "C /etc\nA /etc/new\nD /etc/old\n");
        assert_eq!(
            serde_json::to_string(&c[1]).unwrap(),
            r#"{"path":"/etc/new","kind":"added"}"#
        );
    }
}
