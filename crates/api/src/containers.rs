//! Container endpoints: create, list, inspect, the lifecycle actions, remove, prune.

use std::time::Duration;

use codex_engine::engine::{is_live, Engine};
use codex_engine::registry::{ContainerRecord, ContainerStatus};
use hyper::StatusCode;
use serde_json::json;

use crate::body::{self, Resp};
use crate::error::{ApiError, ApiResult};
use crate::filters;
use crate::inspect::{self, config_of, status_word, Around};
use crate::query::Call;
use crate::server::Ctx;

/// Runs a synchronous engine call on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(
    ctx: &Ctx,
    f: impl FnOnce(&Engine) -> codex_engine::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let eng = ctx.eng.clone();
    tokio::task::spawn_blocking(move || f(eng.engine()))
        .await
        .map_err(|e| ApiError::internal(format!("engine call: {e}")))?
        .map_err(ApiError::from)
}

/// The image reference for an image id (`NAME:TAG`), or the id when it has none.
fn image_ref(refs: &[(String, String)], id: &str) -> String {
    refs.iter()
        .find(|(_, i)| i == id)
        .map(|(r, _)| r.clone())
        .unwrap_or_else(|| format!("sha256:{id}"))
}

/// `(reference, image id)` pairs of the store.
pub fn image_refs(eng: &Engine) -> Vec<(String, String)> {
    eng.images()
        .and_then(|s| s.list())
        .map(|l| {
            l.into_iter()
                .filter_map(|i| i.reference().map(|r| (r, i.id)))
                .collect()
        })
        .unwrap_or_default()
}

/// What [`inspect::inspect`] needs besides the record.
pub fn around(eng: &Engine, rec: &ContainerRecord, refs: &[(String, String)]) -> Around {
    let cfg = config_of(rec);
    let env = eng
        .spec(&rec.id)
        .ok()
        .and_then(|s| serde_json::from_value(s["process"]["env"].clone()).ok())
        .unwrap_or_default();
    Around {
        env,
        networks: eng.network_attachments(&rec.id).unwrap_or_default(),
        ports: if is_live(rec.status) {
            eng.ports_of(&rec.id).unwrap_or_default()
        } else {
            Vec::new()
        },
        image_ref: image_ref(refs, cfg.image.as_deref().unwrap_or_default()),
        root: eng.root().to_path_buf(),
    }
}

pub async fn create(ctx: &Ctx, c: &mut Call) -> ApiResult<Resp> {
    let b: crate::create::CreateBody = c.body_json().await?;
    let cfg = crate::create::config_from(&b, c.q("name"))?;
    let rec = ctx.eng.create(cfg).await?;
    body::json(StatusCode::CREATED, &json!({"Id": rec.id, "Warnings": []}))
}

pub async fn inspect(ctx: &Ctx, id: &str) -> ApiResult<Resp> {
    let id = id.to_string();
    let v = blocking(ctx, move |e| {
        let rec = e.get(&id)?;
        let refs = image_refs(e);
        Ok(inspect::inspect(&rec, &around(e, &rec, &refs)))
    })
    .await?;
    body::ok_json(&v)
}

/// Whether a container passes `docker ps`'s filters.
fn passes(rec: &ContainerRecord, a: &Around, f: &filters::Filters) -> bool {
    filters::all_match(f, |k, v| match k {
        "label" => filters::label_matches(v, &rec.labels),
        "name" => rec.name.contains(v.trim_start_matches('/')),
        "id" => rec.id.starts_with(v),
        "status" => status_word(rec.status) == v,
        "network" => a.networks.contains_key(v),
        "ancestor" => a.image_ref == v || a.image_ref.starts_with(&format!("{v}:")),
        _ => false,
    })
}

pub async fn list(ctx: &Ctx, c: &Call) -> ApiResult<Resp> {
    let all = c.flag("all", false);
    let limit: Option<i64> = c.num("limit")?;
    let f = filters::parse(c.q("filters"))?;
    filters::only(
        &f,
        &["label", "name", "id", "status", "network", "ancestor"],
    )?;
    let mut out = blocking(ctx, move |e| {
        let refs = image_refs(e);
        let mut recs = e.list()?;
        // Newest first, as Docker lists them.
        recs.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(recs
            .iter()
            .filter(|r| all || f.contains_key("status") || is_live(r.status))
            .filter_map(|r| {
                let a = around(e, r, &refs);
                passes(r, &a, &f).then(|| inspect::summary(r, &a))
            })
            .collect::<Vec<_>>())
    })
    .await?;
    if let Some(n) = limit.filter(|n| *n > 0) {
        out.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    body::ok_json(&out)
}

pub fn is_action(a: &str) -> bool {
    matches!(
        a,
        "start" | "stop" | "restart" | "kill" | "pause" | "unpause" | "rename" | "resize"
    )
}

fn stop_timeout(c: &Call, rec: &ContainerRecord) -> ApiResult<Duration> {
    let t: Option<i64> = c.num("t")?;
    let secs = match t {
        Some(t) if t >= 0 => u64::try_from(t).unwrap_or(0),
        // -1: wait forever (Docker); a day is forever enough for a stop.
        Some(_) => 86_400,
        None => config_of(rec).stop_timeout.unwrap_or(10),
    };
    Ok(Duration::from_secs(secs))
}

pub async fn action(ctx: &Ctx, c: &Call, id: &str, action: &str) -> ApiResult<Resp> {
    let id = id.to_string();
    let rec = blocking(ctx, {
        let id = id.clone();
        move |e| e.get(&id)
    })
    .await?;
    match action {
        "start" => {
            if is_live(rec.status) {
                return Ok(body::empty(StatusCode::NOT_MODIFIED));
            }
            // An attach with stdin made a pipe for this start (`run -i`).
            let pipe = ctx
                .stdin_pipes
                .lock()
                .ok()
                .and_then(|mut p| p.remove(&rec.id));
            match pipe {
                Some(r) => {
                    let eng = ctx.eng.clone();
                    let id = rec.id.clone();
                    tokio::task::spawn_blocking(move || eng.engine().start_with_stdin(&id, r))
                        .await
                        .map_err(|e| ApiError::internal(format!("engine call: {e}")))?
                        .map_err(start_error)?;
                }
                None => {
                    ctx.eng.start(&rec.id).await.map_err(start_error)?;
                }
            }
        }
        "stop" => {
            if !is_live(rec.status) {
                return Ok(body::empty(StatusCode::NOT_MODIFIED));
            }
            let signal = match c.q("signal").filter(|s| !s.is_empty()) {
                Some(s) => Some(
                    codex_runtime::parse_signal(s)
                        .map_err(|e| ApiError::bad_request(format!("signal: {e}")))?,
                ),
                None => None,
            };
            let t = stop_timeout(c, &rec)?;
            let id = rec.id.clone();
            blocking(ctx, move |e| e.stop_with(&id, t, signal)).await?;
        }
        "restart" => {
            let t = stop_timeout(c, &rec)?;
            blocking(ctx, move |e| e.restart(&id, t)).await?;
        }
        "kill" => {
            let sig = codex_runtime::parse_signal(c.q("signal").unwrap_or("SIGKILL"))
                .map_err(|e| ApiError::bad_request(format!("signal: {e}")))?;
            if !is_live(rec.status) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "Cannot kill container: {}: container is not running",
                        rec.name
                    ),
                ));
            }
            blocking(ctx, move |e| e.kill(&id, sig)).await?;
        }
        "pause" => {
            blocking(ctx, move |e| e.pause(&id)).await?;
        }
        "unpause" => {
            blocking(ctx, move |e| e.unpause(&id)).await?;
        }
        "rename" => {
            let new = c
                .q("name")
                .filter(|n| !n.is_empty())
                .ok_or_else(|| ApiError::bad_request("rename: the name parameter is required"))?
                .trim_start_matches('/')
                .to_string();
            blocking(ctx, move |e| e.rename(&id, &new)).await?;
        }
        // The container's terminal, if it has one and runs (a resize sent before the
        // start, or of a container without a terminal, changes nothing, as Docker's).
        "resize" => {
            let (h, w): (Option<u16>, Option<u16>) = (c.num("h")?, c.num("w")?);
            if let (Some(h), Some(w)) = (h, w) {
                if config_of(&rec).tty && rec.status == ContainerStatus::Running {
                    blocking(ctx, move |e| {
                        let m = e.terminal(&id)?;
                        codex_engine::attach::set_terminal_size(&m, h, w)
                    })
                    .await?;
                }
            }
            return Ok(body::empty(StatusCode::OK));
        }
        other => {
            return Err(ApiError::not_implemented(&format!(
                "POST /containers/{{id}}/{other}"
            )))
        }
    }
    Ok(body::empty(StatusCode::NO_CONTENT))
}

pub async fn remove(ctx: &Ctx, c: &Call, id: &str) -> ApiResult<Resp> {
    let (force, volumes) = (c.flag("force", false), c.flag("v", false));
    if c.flag("link", false) {
        return Err(ApiError::not_implemented(
            "DELETE /containers/{id}?link (links)",
        ));
    }
    let id = id.to_string();
    blocking(ctx, move |e| {
        let rec = e.get(&id)?;
        if !force && matches!(rec.status, ContainerStatus::Running | ContainerStatus::Paused) {
            return Err(codex_engine::Error::InUse {
                kind: "container",
                name: rec.name.clone(),
                by: "its running process: you cannot remove a running container; stop it first or force removal".into(),
            });
        }
        e.remove(&id, force, volumes)
    })
    .await?;
    Ok(body::empty(StatusCode::NO_CONTENT))
}

pub async fn prune(ctx: &Ctx) -> ApiResult<Resp> {
    let ids = blocking(ctx, |e| {
        let before: Vec<(String, String)> = e.list()?.into_iter().map(|r| (r.name, r.id)).collect();
        let names = e.prune()?;
        Ok(before
            .into_iter()
            .filter(|(n, _)| names.contains(n))
            .map(|(_, id)| id)
            .collect::<Vec<_>>())
    })
    .await?;
    body::ok_json(&json!({"ContainersDeleted": ids, "SpaceReclaimed": 0}))
}

/// `GET /containers/{id}/export`: a tar of its filesystem, streamed.
pub async fn export(ctx: &Ctx, id: &str) -> ApiResult<Resp> {
    let id = id.to_string();
    let rec = blocking(ctx, move |e| e.get(&id)).await?;
    Ok(crate::tarstream::stream_tar(ctx, move |e, out| {
        e.export(&rec.id, true, out)
    }))
}

/// A start that failed, in the words the docker CLI turns into its exit code (it reads
/// the message only: 127 for "no such file or directory" or "executable file not
/// found", 126 for "permission denied", else 125), from the engine's typed exec code.
fn start_error(e: codex_engine::Error) -> ApiError {
    let code = e.exec_code();
    let mut a = ApiError::from(e);
    a.message = a
        .message
        .replace("No such file or directory", "no such file or directory");
    let lower = a.message.to_lowercase();
    match code {
        Some(127)
            if !lower.contains("no such file or directory")
                && !lower.contains("executable file not found") =>
        {
            a.message.push_str(": executable file not found")
        }
        Some(126) if !lower.contains("permission denied") => {
            a.message.push_str(": permission denied")
        }
        _ => {}
    }
    a
}
