//! `POST /containers/{id}/wait?condition=not-running|next-exit|removed`. The headers go
//! out at once (the docker CLI sends its wait before the start); the body is
//! `{"StatusCode": N, "Error": ...}` once the condition is met.

use std::time::Duration;

use codex_engine::engine::is_live;
use codex_engine::registry::{ContainerRecord, ContainerStatus};
use serde_json::json;

use crate::body::{self, Resp};
use crate::containers::blocking;
use crate::error::{ApiError, ApiResult};
use crate::query::Call;
use crate::server::Ctx;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    NotRunning,
    NextExit,
    Removed,
}

pub fn parse_condition(s: Option<&str>) -> ApiResult<Condition> {
    match s.unwrap_or("") {
        "" | "not-running" => Ok(Condition::NotRunning),
        "next-exit" => Ok(Condition::NextExit),
        "removed" => Ok(Condition::Removed),
        other => Err(ApiError::bad_request(format!(
            "condition: {other:?} is not not-running, next-exit or removed"
        ))),
    }
}

/// Whether `now` meets `cond` for a wait that began at `first`.
pub fn met(cond: Condition, first: &ContainerRecord, now: &ContainerRecord) -> bool {
    let ended = !is_live(now.status) && now.live_supervisor().is_none();
    match cond {
        Condition::NotRunning => ended,
        Condition::NextExit => {
            ended
                && now.status != ContainerStatus::Created
                && (now.finished_at != first.finished_at || now.status != first.status)
        }
        Condition::Removed => false,
    }
}

/// The exit code the last `die` event recorded for `id` (the container is gone).
fn exit_from_events(ctx: &Ctx, id: &str) -> Option<i32> {
    codex_engine::events::newest_about(ctx.eng.engine().root(), id, "die")
        .and_then(|e| e.attributes.get("exit_code").and_then(|c| c.parse().ok()))
}

/// Waits for `cond`; the exit code and the error, if the run failed.
pub async fn wait_for(ctx: &Ctx, first: ContainerRecord, cond: Condition) -> (i32, Option<String>) {
    let mut last = first.clone();
    loop {
        let id = first.id.clone();
        let got = blocking(ctx, move |e| e.get(&id)).await;
        match got {
            Ok(rec) => {
                if met(cond, &first, &rec) {
                    let err = (rec.status == ContainerStatus::Failed)
                        .then(|| rec.error.clone())
                        .flatten();
                    return (
                        rec.exit_code.unwrap_or(if err.is_some() { 125 } else { 0 }),
                        err,
                    );
                }
                let live = is_live(rec.status);
                last = rec;
                if live {
                    // Sleeps on the supervisor's pidfd (rechecking each second).
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), ctx.eng.wait(&last.id)).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
            Err(e) if e.status == hyper::StatusCode::NOT_FOUND => {
                let code = exit_from_events(ctx, &first.id)
                    .or(last.exit_code)
                    .unwrap_or(0);
                return (code, None);
            }
            Err(e) => return (125, Some(e.message)),
        }
    }
}

pub async fn wait(ctx: &Ctx, c: &Call, id: &str) -> ApiResult<Resp> {
    let cond = parse_condition(c.q("condition"))?;
    let id = id.to_string();
    let first = blocking(ctx, move |e| e.get(&id)).await?;
    let (tx, resp) = body::stream("application/json");
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let (code, err) = wait_for(&ctx, first, cond).await;
        let error = err.map(|m| json!({"Message": m}));
        let _ = tx
            .send(body::json_line(
                &json!({"StatusCode": code, "Error": error}),
            ))
            .await;
    });
    Ok(resp)
}
