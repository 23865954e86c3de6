//! `codex-ctr serve`: the Docker Engine API (crates/api) on a unix socket, and on TCP
//! with mutual TLS.

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
    /// Also listen on TCP (IP:PORT), with mutual TLS only: needs --tls-cert, --tls-key and --tls-ca.
    #[arg(long, requires_all = ["tls_cert", "tls_key", "tls_ca"])]
    pub tcp: Option<String>,
    /// The server's certificate chain (PEM) for --tcp.
    #[arg(long, requires = "tcp")]
    pub tls_cert: Option<PathBuf>,
    /// The server's private key (PEM) for --tcp.
    #[arg(long, requires = "tcp")]
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) that must have signed every client's certificate (--tcp).
    #[arg(long, requires = "tcp")]
    pub tls_ca: Option<PathBuf>,
}

pub(super) fn serve(eng: Engine, a: &ServeArgs) -> Result<i32> {
    let tcp = match (&a.tcp, &a.tls_cert, &a.tls_key, &a.tls_ca) {
        (None, ..) => None,
        (Some(addr), Some(cert), Some(key), Some(ca)) => {
            let addr: std::net::SocketAddr = addr
                .parse()
                .with_context(|| format!("--tcp {addr:?}: expected IP:PORT"))?;
            Some((
                addr,
                codex_api::tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    ca: ca.clone(),
                },
            ))
        }
        _ => bail!("--tcp needs --tls-cert, --tls-key and --tls-ca: the API is root on this host, so TCP is mutual TLS only"),
    };
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
        tcp,
    };
    rt.block_on(codex_api::serve(AsyncEngine::new(eng), opts))
        .with_context(|| format!("serving on {}", a.socket.display()))?;
    Ok(0)
}
