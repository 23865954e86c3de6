//! `POST /containers/{id}/attach`: the HTTP upgrade to a raw stream ("hijack") that the
//! docker CLI's attached `run` opens before it starts the container. The container's
//! output (its log, from the moment of the attach) goes out in Docker's multiplexed
//! framing (raw with a terminal) until the container ends. With `stdin=1`, the client's
//! bytes go to the container: into its terminal (`-t`), or through a pipe that its
//! start is given (`-i`: `OpenStdin`; so only for an attach before the start).
//!
//! An auto-remove container (`run --rm`) that is attached before its start is removed by
//! this stream once it has sent all the output, not by the supervisor: removed at the
//! exit, its log could go before the stream has read it. If the client goes away first,
//! the removal is handed back to the supervisor (`remove_when_ended`).

use std::time::Duration;

use codex_engine::logread::LogQuery;
use codex_engine::registry::ContainerStatus;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use std::os::fd::OwnedFd;

use tokio::io::{AsyncWriteExt, ReadHalf};

use crate::body::{self, Resp};
use crate::containers::blocking;
use crate::error::{ApiError, ApiResult};
use crate::logs::line_out;
use crate::query::Call;
use crate::server::Ctx;

/// The 101 answer that hands the connection over to a raw stream.
pub fn upgraded_response() -> Resp {
    let mut r = body::empty(StatusCode::SWITCHING_PROTOCOLS);
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.docker.raw-stream"),
    );
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("tcp"));
    r
}

/// Takes over the auto-removal of a container that has not started yet; whether it did.
fn claim_removal(eng: &codex_engine::engine::Engine, id: &str) -> codex_engine::Result<bool> {
    let mut claimed = false;
    eng.registry().update_container(id, |r| {
        let auto = r.config.get("auto_remove").and_then(|v| v.as_bool()) == Some(true);
        if auto && r.status == ContainerStatus::Created && r.live_supervisor().is_none() {
            if let Some(cfg) = r.config.as_object_mut() {
                cfg.insert("auto_remove".into(), serde_json::Value::Bool(false));
            }
            claimed = true;
        }
        Ok(())
    })?;
    Ok(claimed)
}

/// The client's bytes to the container: through the pipe its start got (`run -i`), or
/// into its terminal once it runs (`-t`). Ends at the client's EOF (the pipe closes: the
/// container sees its stdin end) or when the output side stops it.
async fn pump_stdin(
    ctx: Ctx,
    id: String,
    mut rd: ReadHalf<TokioIo<hyper::upgrade::Upgraded>>,
    pipe: Option<OwnedFd>,
) {
    let sink = match pipe {
        Some(w) => w,
        None => {
            // A terminal: its master exists once the container runs.
            loop {
                let id2 = id.clone();
                match blocking(&ctx, move |e| e.get(&id2)).await {
                    Ok(r) if r.status == ContainerStatus::Created => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Ok(r) if r.status == ContainerStatus::Running => break,
                    _ => return,
                }
            }
            let id2 = id.clone();
            match blocking(&ctx, move |e| e.terminal(&id2)).await {
                Ok(m) => m,
                Err(_) => return,
            }
        }
    };
    let mut f = tokio::fs::File::from_std(std::fs::File::from(sink));
    let _ = tokio::io::copy(&mut rd, &mut f).await;
    let _ = f.flush().await;
}

pub async fn attach(ctx: &Ctx, c: &mut Call, id: &str) -> ApiResult<Resp> {
    let upgrade = c.upgrade.take().ok_or_else(|| {
        ApiError::bad_request(
            "attach needs an upgraded connection (Connection: Upgrade, Upgrade: tcp)",
        )
    })?;
    if !c.flag("stream", false) && !c.flag("logs", false) {
        return Err(ApiError::bad_request("attach: give stream=1 and/or logs=1"));
    }
    let (stdout, stderr) = (c.flag("stdout", false), c.flag("stderr", false));
    let id = id.to_string();
    let rec = blocking(ctx, move |e| e.get(&id)).await?;
    let cfg = crate::inspect::config_of(&rec);
    let tty = cfg.tty;
    // Stdin: a container with a terminal takes it through the terminal; one made with
    // OpenStdin through a pipe handed to its start (before it starts), or, running,
    // through the stdin pipe its supervisor keeps when it started without one.
    let mut want_stdin = c.flag("stdin", false) && (cfg.tty || cfg.interactive);
    let mut pipe = None;
    if want_stdin && !tty {
        if rec.status == ContainerStatus::Created {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| ApiError::internal(format!("making the stdin pipe: {e}")))?;
            if let Ok(mut p) = ctx.stdin_pipes.lock() {
                p.insert(rec.id.clone(), r);
            }
            pipe = Some(w);
        } else if rec.status == ContainerStatus::Running {
            // Started without a client's pipe: its supervisor keeps its stdin open.
            let id = rec.id.clone();
            match blocking(ctx, move |e| e.stdin_writer(&id)).await {
                Ok(w) => pipe = Some(w),
                Err(_) => want_stdin = false,
            }
        } else {
            want_stdin = false;
        }
    }
    let query = LogQuery {
        // logs=1: what it wrote before too; else only what comes from now on.
        tail: if c.flag("logs", false) { None } else { Some(0) },
        stdout,
        stderr,
        ..Default::default()
    };
    let mut follow = ctx.eng.follow_logs(&rec.id, query)?;
    let owns_removal = {
        let id = rec.id.clone();
        blocking(ctx, move |e| claim_removal(e, &id)).await?
    };
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let Ok(io) = upgrade.await else {
            if owns_removal {
                let id = rec.id.clone();
                let _ = blocking(&ctx, move |e| e.remove_when_ended(&id)).await;
            }
            return;
        };
        let (rd, mut wr) = tokio::io::split(TokioIo::new(io));
        let input =
            want_stdin.then(|| tokio::spawn(pump_stdin(ctx.clone(), rec.id.clone(), rd, pipe)));
        // Until it is started (or removed), there is nothing to follow: the follower
        // ends at once on a container that does not run.
        loop {
            let id = rec.id.clone();
            match blocking(&ctx, move |e| e.get(&id)).await {
                Ok(r) if r.status == ContainerStatus::Created => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                _ => break,
            }
        }
        let mut gone = false;
        'out: while let Ok(Some(lines)) = follow.next().await {
            for l in &lines {
                if wr.write_all(&line_out(l, false, tty)).await.is_err() {
                    gone = true;
                    break 'out;
                }
            }
        }
        let _ = wr.flush().await;
        if let Some(i) = input {
            i.abort();
        }
        if let Ok(mut p) = ctx.stdin_pipes.lock() {
            p.remove(&rec.id);
        }
        if owns_removal {
            let id = rec.id.clone();
            if gone {
                let _ = blocking(&ctx, move |e| e.remove_when_ended(&id)).await;
            } else {
                let _ = blocking(&ctx, move |e| e.remove(&id, true, true)).await;
            }
        }
        let _ = wr.shutdown().await;
    });
    Ok(upgraded_response())
}
