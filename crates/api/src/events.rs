//! `GET /events`: the engine's events file in Docker's shapes (Type, Action, Actor.ID,
//! Actor.Attributes with name, image, exitCode), filtered, from `since` (without it:
//! only new ones, as Docker) and followed until `until` or the client goes away.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use codex_engine::events::Event;
use serde_json::{json, Map, Value};

use crate::body::{self, Resp};
use crate::error::ApiResult;
use crate::filters::{self, Filters};
use crate::logs::parse_time;
use crate::query::Call;
use crate::server::Ctx;

/// How often the events file is looked at while following.
const POLL: Duration = Duration::from_millis(100);

/// An engine event as Docker's; `image` is the container's image reference if known.
pub fn docker_event(e: &Event, image: Option<&str>) -> Value {
    let t = humantime::parse_rfc3339(&e.time)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    let mut attrs: Map<String, Value> = Map::new();
    for (k, v) in &e.attributes {
        let key = match k.as_str() {
            "exit_code" => "exitCode",
            "old_name" => "oldName",
            other => other,
        };
        attrs.insert(key.to_string(), Value::String(v.clone()));
    }
    attrs.insert("name".into(), Value::String(e.name.clone()));
    let image = image
        .map(str::to_string)
        .or_else(|| e.attributes.get("image").map(|i| format!("sha256:{i}")))
        .unwrap_or_default();
    attrs.insert("image".into(), Value::String(image.clone()));
    // Docker's action for a health change carries the status.
    let action = match (e.action.as_str(), e.attributes.get("health_status")) {
        ("health_status", Some(s)) => format!("health_status: {s}"),
        (a, _) => a.to_string(),
    };
    json!({
        "Type": "container",
        "Action": action,
        "Actor": {"ID": e.id, "Attributes": attrs},
        "scope": "local",
        "time": t.as_secs(),
        "timeNano": u64::try_from(t.as_nanos()).unwrap_or(u64::MAX),
        "status": action,
        "id": e.id,
        "from": image,
    })
}

/// Whether `e` passes Docker's event filters (container, event, label, type, image).
pub fn wanted(f: &Filters, e: &Event, image: &str) -> bool {
    filters::all_match(f, |k, v| match k {
        "type" => v == "container",
        "container" => e.name == v || e.id.starts_with(v),
        "event" => e.action == v,
        "label" => filters::label_matches(v, &e.attributes.clone().into_iter().collect()),
        "image" => image == v || image.starts_with(&format!("{v}:")),
        _ => false,
    })
}

fn event_time(e: &Event) -> Option<SystemTime> {
    humantime::parse_rfc3339(&e.time).ok()
}

pub async fn events(ctx: &Ctx, c: &Call) -> ApiResult<Resp> {
    let since = parse_time("since", c.q("since"))?;
    let until = parse_time("until", c.q("until"))?;
    let f = filters::parse(c.q("filters"))?;
    filters::only(&f, &["type", "container", "event", "label", "image"])?;
    let mut reader = ctx.eng.engine().events()?;
    let started = SystemTime::now();
    let (tx, resp) = body::stream("application/json");
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let mut first = true;
        let mut image_of: std::collections::HashMap<String, String> = Default::default();
        loop {
            let batch = match reader.read_new() {
                Ok(b) => b,
                Err(_) => return,
            };
            let refs = crate::containers::image_refs(ctx.eng.engine());
            for e in batch {
                if let Some(i) = e.attributes.get("image") {
                    image_of.insert(e.id.clone(), i.clone());
                }
                let t = event_time(&e);
                // Without `since`, only what happens from now on.
                let from = since.unwrap_or(started);
                if first && since.is_none() {
                    continue;
                }
                if t.is_some_and(|t| t < from) {
                    continue;
                }
                if let (Some(u), Some(t)) = (until, t) {
                    if t > u {
                        return;
                    }
                }
                // The image (by id) from the container's create event, which every
                // later event of it lacks; else from its record while it exists.
                let image_id = image_of.get(&e.id).cloned().or_else(|| {
                    let r = ctx.eng.engine().registry().get(&e.id).ok()?;
                    r.config.get("image")?.as_str().map(str::to_string)
                });
                let image = image_id.map(|id| {
                    refs.iter()
                        .find(|(_, i)| *i == id)
                        .map(|(r, _)| r.clone())
                        .unwrap_or_else(|| format!("sha256:{id}"))
                });
                if !wanted(&f, &e, image.as_deref().unwrap_or("")) {
                    continue;
                }
                if tx
                    .send(body::json_line(&docker_event(&e, image.as_deref())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            first = false;
            if until.is_some_and(|u| SystemTime::now() > u) {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_events_take_dockers_shape() {
        let e = Event {
            time: "2026-01-01T00:00:01.5Z".into(),
            action: "die".into(),
            id: "abc".into(),
            name: "web".into(),
            attributes: [
                ("exit_code".to_string(), "3".to_string()),
                ("tier".into(), "db".into()),
            ]
            .into(),
        };
        let d = docker_event(&e, Some("busybox:latest"));
        assert_eq!(d["Type"], "container");
        assert_eq!(d["Action"], "die");
        assert_eq!(d["Actor"]["ID"], "abc");
        assert_eq!(d["Actor"]["Attributes"]["exitCode"], "3");
        assert_eq!(d["Actor"]["Attributes"]["name"], "web");
        assert_eq!(d["Actor"]["Attributes"]["image"], "busybox:latest");
        assert_eq!(d["time"], 1_767_225_601u64);
        assert_eq!(d["timeNano"], 1_767_225_601_500_000_000u64);
        let f = filters::parse(Some(
            r#"{"event":["die"],"label":["tier=db"],"container":["web"]}"#,
        ))
        .unwrap();
        assert!(wanted(&f, &e, ""));
        let f = filters::parse(Some(r#"{"event":["start"]}"#)).unwrap();
        assert!(!wanted(&f, &e, ""));
    }
}
