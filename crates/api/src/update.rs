//! `POST /containers/{id}/update`: new resource limits (Memory, MemorySwap, NanoCpus or
//! CpuQuota/CpuPeriod, CpuShares, CpusetCpus/Mems, PidsLimit; resources.rs) over the
//! engine's `update`: applied at once to a running container, kept for its later
//! starts. Fields the engine cannot change are a 400 that names them.

use codex_engine::update::LimitsUpdate;

use crate::resources::ResourcesBody;
use serde::Deserialize;
use serde_json::json;

use crate::body::{self, Resp};
use crate::containers::blocking;
use crate::error::{ApiError, ApiResult};
use crate::query::{from_object, Call};
use crate::server::Ctx;

/// The body: Docker's resources and a restart policy, each read from the same object
/// (see `query::from_object`: a type error names its field).
#[derive(Debug, Default, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub struct UpdateBody {
    pub resources: ResourcesBody,
    pub restart_policy: Option<serde_json::Value>,
}

impl TryFrom<serde_json::Value> for UpdateBody {
    type Error = serde_json::Error;
    fn try_from(v: serde_json::Value) -> Result<Self, Self::Error> {
        Ok(UpdateBody {
            resources: from_object(&v)?,
            restart_policy: v.get("RestartPolicy").cloned().filter(|r| !r.is_null()),
        })
    }
}

/// The engine's update for a body; what it cannot change is refused by name.
pub fn limits_from(b: &UpdateBody) -> ApiResult<LimitsUpdate> {
    if b.restart_policy.as_ref().is_some_and(|r| {
        r.get("Name")
            .and_then(|n| n.as_str())
            .is_some_and(|n| !n.is_empty())
    }) {
        return Err(ApiError::bad_request(
            "RestartPolicy: codex-ctr cannot change it on an existing container (resources only)",
        ));
    }
    b.resources.update()
}

pub async fn update(ctx: &Ctx, c: &mut Call, id: &str) -> ApiResult<Resp> {
    let b: UpdateBody = c.body_json().await?;
    let up = limits_from(&b)?;
    let id = id.to_string();
    blocking(ctx, move |e| e.update(&id, &up)).await?;
    body::ok_json(&json!({"Warnings": []}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse_json;

    #[test]
    fn update_bodies_map_to_limits() {
        let b: UpdateBody =
            parse_json(br#"{"Memory":134217728,"NanoCpus":1500000000,"PidsLimit":50,"CpuShares":0,"RestartPolicy":{"Name":""}}"#)
                .unwrap();
        let u = limits_from(&b).unwrap();
        assert_eq!(u.memory, Some(128 << 20));
        assert_eq!(u.cpus, Some(1.5));
        assert_eq!(u.pids, Some(50));
        let b: UpdateBody = parse_json(br#"{"CpuQuota":50000,"CpuPeriod":100000}"#).unwrap();
        assert_eq!(limits_from(&b).unwrap().cpus, Some(0.5));
        let b: UpdateBody = parse_json(br#"{"RestartPolicy":{"Name":"always"}}"#).unwrap();
        assert!(limits_from(&b)
            .unwrap_err()
            .message
            .contains("RestartPolicy"));
        let b: UpdateBody = parse_json(br#"{"Memory":-5}"#).unwrap();
        assert!(limits_from(&b).unwrap_err().message.contains("Memory"));
    }
}
