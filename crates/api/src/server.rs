//! The listener: a unix socket (mode 0660, group `codex` when it exists), one hyper
//! HTTP/1 connection per client with upgrades (for hijacked attach and exec streams),
//! and an idle timer that ends the server when no client has been connected for
//! `--timeout`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codex_engine::aio::AsyncEngine;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use crate::body::{self, Resp};
use crate::exec::ExecInstance;
use crate::query::{parse_query, split_path, Call};

/// What `codex-ctr serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub socket: PathBuf,
    /// End once no client has been connected for this long (`None`: serve until killed).
    pub idle_timeout: Option<Duration>,
    /// The codex-ctr binary (exec runs `codex-ctr exec` as a child: the engine's exec
    /// forks, which a multi-threaded server must not do itself).
    pub exe: PathBuf,
    /// Also listen on TCP at this address, with mutual TLS (see `tls`).
    pub tcp: Option<(std::net::SocketAddr, crate::tls::TlsFiles)>,
}

/// What handlers share: the engine, and Docker's in-memory exec instances.
#[derive(Clone)]
pub struct Ctx {
    pub eng: AsyncEngine,
    pub exe: PathBuf,
    pub execs: Arc<Mutex<HashMap<String, ExecInstance>>>,
    /// Stdin pipes that attaches made for containers not started yet (container id ->
    /// the read end): the start hands it to the engine (`start_with_stdin`).
    pub stdin_pipes: Arc<Mutex<HashMap<String, std::os::fd::OwnedFd>>>,
}

/// Connected clients and when the last one left, for the idle timer.
struct Activity {
    open: AtomicUsize,
    last: Mutex<Instant>,
}

struct Connected(Arc<Activity>);

impl Drop for Connected {
    fn drop(&mut self) {
        if let Ok(mut l) = self.0.last.lock() {
            *l = Instant::now();
        }
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Binds the socket: a stale socket file is replaced; anything else at the path is an
/// error (never removed).
fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if !md.file_type().is_socket() {
            return Err(std::io::Error::other(format!(
                "{} exists and is not a socket: not replacing it",
                path.display()
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::other(format!(
                "{}: another server is listening there",
                path.display()
            )));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.is_dir() {
            return Err(std::io::Error::other(format!(
                "{}: no such directory",
                dir.display()
            )));
        }
    }
    // Created 0600 (umask), then opened to the group: never briefly open to all.
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(path);
    // SAFETY: as above, restoring it.
    unsafe { libc::umask(old) };
    let l = l?;
    // Looked up without NSS in this process (codex_sys::nss: the binary is static).
    if let Ok(Some(gid)) = codex_sys::nss::group_id("codex") {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .map_err(std::io::Error::from)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Serves the Docker Engine API until SIGINT/SIGTERM or the idle timeout; removes the
/// socket at the end. Containers keep running.
pub async fn serve(eng: AsyncEngine, opts: ServeOptions) -> std::io::Result<()> {
    // TLS first: a bad certificate must not leave a socket behind.
    let tcp = match &opts.tcp {
        Some((addr, files)) => {
            let acceptor = crate::tls::acceptor(files)?;
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("--tcp {addr}: {e}")))?;
            Some((l, acceptor))
        }
        None => None,
    };
    let listener = bind(&opts.socket)?;
    let ctx = Ctx {
        eng,
        exe: opts.exe.clone(),
        execs: Arc::new(Mutex::new(HashMap::new())),
        stdin_pipes: Arc::new(Mutex::new(HashMap::new())),
    };
    let activity = Arc::new(Activity {
        open: AtomicUsize::new(0),
        last: Mutex::new(Instant::now()),
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let result = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => break Err(e),
                };
                activity.open.fetch_add(1, Ordering::SeqCst);
                let guard = Connected(activity.clone());
                tokio::spawn(serve_connection(ctx.clone(), stream, guard));
            }
            accepted = accept_tcp(&tcp) => {
                let Ok((stream, acceptor)) = accepted else { continue };
                activity.open.fetch_add(1, Ordering::SeqCst);
                let guard = Connected(activity.clone());
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    // A client without a certificate the CA signed ends here.
                    if let Ok(tls) = acceptor.accept(stream).await {
                        serve_connection(ctx, tls, guard).await;
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = term.recv() => break Ok(()),
            _ = tick.tick() => {
                if let Some(t) = opts.idle_timeout {
                    let idle = activity.open.load(Ordering::SeqCst) == 0
                        && activity.last.lock().map(|l| l.elapsed() >= t).unwrap_or(false);
                    if idle {
                        break Ok(());
                    }
                }
            }
        }
    };
    let _ = std::fs::remove_file(&opts.socket);
    result
}

/// The next TCP client (never, without a TCP listener).
async fn accept_tcp(
    tcp: &Option<(tokio::net::TcpListener, tokio_rustls::TlsAcceptor)>,
) -> std::io::Result<(tokio::net::TcpStream, tokio_rustls::TlsAcceptor)> {
    match tcp {
        Some((l, a)) => l.accept().await.map(|(s, _)| (s, a.clone())),
        None => std::future::pending().await,
    }
}

/// Serves one connection (unix or TLS) until it closes.
async fn serve_connection<S>(ctx: Ctx, stream: S, guard: Connected)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _guard = guard;
    let svc = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(ctx, req).await) }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades()
        .await;
}

async fn handle(ctx: Ctx, mut req: Request<Incoming>) -> Resp {
    let (version, segs) = split_path(req.uri().path());
    if let Some(v) = &version {
        if version_less(v, crate::MIN_API_VERSION) {
            return body::error(&crate::error::ApiError::bad_request(format!(
                "client version {v} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
                crate::MIN_API_VERSION
            )));
        }
    }
    let upgrade = req
        .headers()
        .contains_key(hyper::header::UPGRADE)
        .then(|| hyper::upgrade::on(&mut req));
    let query = parse_query(req.uri().query());
    let names = crate::query::all_values(req.uri().query(), "names");
    let raw_query = req.uri().query().map(str::to_string);
    let (parts, body) = req.into_parts();
    let call = Call {
        method: parts.method,
        segs,
        query,
        names,
        raw_query,
        body: Some(body),
        upgrade,
    };
    let mut resp = match crate::router::route(&ctx, call).await {
        Ok(r) => r,
        Err(e) => body::error(&e),
    };
    let h = resp.headers_mut();
    h.insert(
        "Api-Version",
        hyper::header::HeaderValue::from_static(crate::API_VERSION),
    );
    h.insert("Ostype", hyper::header::HeaderValue::from_static("linux"));
    h.insert(
        hyper::header::SERVER,
        hyper::header::HeaderValue::from_static("codex-ctr (linux)"),
    );
    resp
}

/// `a < b` for `X.Y` versions.
pub fn version_less(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> (u32, u32) {
        let (x, y) = s.split_once('.').unwrap_or((s, "0"));
        (x.parse().unwrap_or(0), y.parse().unwrap_or(0))
    };
    parse(a) < parse(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_less("1.9", "1.24"));
        assert!(version_less("1.23", "1.24"));
        assert!(!version_less("1.47", "1.24"));
        assert!(!version_less("1.24", "1.24"));
    }
}
