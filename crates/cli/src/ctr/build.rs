//! `codex-ctr commit` and `codex-ctr build` / `image build`.

use anyhow::Result;
use clap::{ArgAction, Args};
use codex_engine::commit_api::CommitOptions;
use codex_engine::engine::Engine;

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// A Dockerfile instruction to apply to the new image's config: CMD, ENTRYPOINT, ENV,
    /// EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL, HEALTHCHECK, SHELL (repeatable).
    #[arg(short, long = "change")]
    pub change: Vec<String>,
    /// A comment for the new image's history entry.
    #[arg(short, long)]
    pub message: Option<String>,
    /// The author recorded in the new image.
    #[arg(short, long)]
    pub author: Option<String>,
    /// Freeze a running container while its changes are read (default true; --pause=false
    /// reads them live).
    #[arg(short, long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true")]
    pub pause: bool,
    /// The container (name or id).
    pub container: String,
    /// The new image's NAME[:TAG] (none: an untagged image).
    pub reference: Option<String>,
}

pub fn commit(eng: &Engine, a: CommitArgs) -> Result<i32> {
    let opts = CommitOptions {
        reference: a.reference,
        changes: a.change,
        message: a.message,
        author: a.author,
        pause: a.pause,
    };
    let image = eng.commit(&a.container, &opts)?;
    println!("sha256:{}", image.id);
    Ok(0)
}
