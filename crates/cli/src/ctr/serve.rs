//! `codex-ctr serve`: the Docker Engine API (crates/api) on a unix socket.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use codex_engine::aio::AsyncEngine;
use codex_engine::config::parse_duration_secs;
use codex_engine::engine::Engine;

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// The unix socket to listen on (made mode 0660, group `codex` when that group exists).
    /// Access to it is root on this host: see docs/docker-api.md.
    #[arg(long, default_value = "/run/codex-ctr.sock")]
    pub socket: PathBuf,
    /// End after no client has been connected for this long (`90s`, `10m`); containers keep running.
    #[arg(long)]
    pub timeout: Option<String>,
    /// Listen on TCP with mutual TLS (not available in this build).
    #[arg(long)]
    pub tcp: Option<String>,
    /// The server's certificate for --tcp (not available in this build).
    #[arg(long, requires = "tcp")]
    pub tls_cert: Option<PathBuf>,
    /// The server's key for --tcp (not available in this build).
    #[arg(long, requires = "tcp")]
    pub tls_key: Option<PathBuf>,
    /// The CA that signs client certificates for --tcp (not available in this build).
    #[arg(long, requires = "tcp")]
    pub tls_ca: Option<PathBuf>,
}

pub(super) fn serve(eng: Engine, a: &ServeArgs) -> Result<i32> {
    if a.tcp.is_some() {
        bail!("--tcp: serving the API over TCP (with mutual TLS) is not available in this build; use --socket (see docs/docker-api.md)");
    }
    let idle_timeout = a
        .timeout
        .as_deref()
        .map(|t| parse_duration_secs("timeout", t).map(Duration::from_secs))
        .transpose()?;
    let exe = std::env::current_exe().context("locating the codex-ctr binary for exec")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let opts = codex_api::ServeOptions {
        socket: a.socket.clone(),
        idle_timeout,
        exe,
    };
    rt.block_on(codex_api::serve(AsyncEngine::new(eng), opts))
        .with_context(|| format!("serving on {}", a.socket.display()))?;
    Ok(0)
}
