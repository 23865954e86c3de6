//! Volume endpoints: create, list, inspect, remove, prune (local driver only).

use std::collections::BTreeMap;

use codex_engine::volume::VolumeInfo;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{self, Resp};
use crate::containers::blocking;
use crate::error::{ApiError, ApiResult};
use crate::filters;
use crate::query::Call;
use crate::server::Ctx;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: Option<BTreeMap<String, String>>,
    pub labels: Option<BTreeMap<String, String>>,
}

pub fn volume_json(v: &VolumeInfo) -> Value {
    json!({
        "Name": v.record.name,
        "Driver": "local",
        "Mountpoint": v.mountpoint,
        "CreatedAt": v.record.created,
        "Labels": {},
        "Scope": "local",
        "Options": {},
        "UsageData": {"Size": -1, "RefCount": v.used_by.len()},
    })
}

pub async fn create(ctx: &Ctx, c: &mut Call) -> ApiResult<Resp> {
    let b: CreateBody = c.body_json().await?;
    match b.driver.as_deref() {
        None | Some("") | Some("local") => {}
        Some(d) => {
            return Err(ApiError::bad_request(format!(
                "Driver: {d:?} is not supported (local only)"
            )))
        }
    }
    if b.driver_opts.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(ApiError::bad_request(
            "DriverOpts: not supported by codex-ctr",
        ));
    }
    if b.labels.as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(ApiError::bad_request(
            "Labels: volume labels are not supported by codex-ctr yet",
        ));
    }
    let v = blocking(ctx, move |e| {
        let name = match b.name.filter(|n| !n.is_empty()) {
            Some(n) => n,
            None => codex_engine::registry::new_volume_name()?,
        };
        e.create_volume(&name)?;
        e.inspect_volume(&name)
    })
    .await?;
    body::json(StatusCode::CREATED, &volume_json(&v))
}

pub async fn list(ctx: &Ctx, c: &Call) -> ApiResult<Resp> {
    let f = filters::parse(c.q("filters"))?;
    filters::only(&f, &["name", "dangling"])?;
    let vols = blocking(ctx, |e| e.volumes()).await?;
    let out: Vec<Value> = vols
        .iter()
        .filter(|v| {
            filters::all_match(&f, |k, x| match k {
                "name" => v.record.name.contains(x),
                "dangling" => (x == "true" || x == "1") == v.used_by.is_empty(),
                _ => false,
            })
        })
        .map(volume_json)
        .collect();
    body::ok_json(&json!({"Volumes": out, "Warnings": []}))
}

pub async fn inspect(ctx: &Ctx, name: &str) -> ApiResult<Resp> {
    let name = name.to_string();
    let v = blocking(ctx, move |e| e.inspect_volume(&name)).await?;
    body::ok_json(&volume_json(&v))
}

pub async fn remove(ctx: &Ctx, c: &Call, name: &str) -> ApiResult<Resp> {
    let _ = c.flag("force", false);
    let name = name.to_string();
    blocking(ctx, move |e| e.remove_volume(&name)).await?;
    Ok(body::empty(StatusCode::NO_CONTENT))
}

/// Docker (API 1.42+) prunes only anonymous volumes unless `all=true` is a filter.
pub async fn prune(ctx: &Ctx, c: &Call) -> ApiResult<Resp> {
    let f = filters::parse(c.q("filters"))?;
    filters::only(&f, &["all"])?;
    let all = f
        .get("all")
        .is_some_and(|v| v.iter().any(|x| x == "true" || x == "1"));
    let removed = blocking(ctx, move |e| {
        let mut out = Vec::new();
        for v in e.volumes()? {
            if v.used_by.is_empty() && (all || v.record.anonymous) {
                match e.remove_volume(&v.record.name) {
                    Ok(()) => out.push(v.record.name),
                    Err(
                        codex_engine::Error::InUse { .. } | codex_engine::Error::NotFound { .. },
                    ) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(out)
    })
    .await?;
    body::ok_json(&json!({"VolumesDeleted": removed, "SpaceReclaimed": 0}))
}
