//! `POST /containers/{id}/update`: new resource limits (Memory, NanoCpus or
//! CpuQuota/CpuPeriod, PidsLimit) over the engine's `update`: applied at once to a
//! running container, kept for its later starts. Fields the engine cannot change are a
//! 400 that names them.

use codex_engine::update::LimitsUpdate;
use serde::Deserialize;
use serde_json::json;

use crate::body::{self, Resp};
use crate::containers::blocking;
use crate::error::{ApiError, ApiResult};
use crate::query::Call;
use crate::server::Ctx;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateBody {
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<i64>,
    pub pids_limit: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub blkio_weight: Option<i64>,
    pub restart_policy: Option<serde_json::Value>,
}

/// The engine's update for a body; what it cannot change is refused by name.
pub fn limits_from(b: &UpdateBody) -> ApiResult<LimitsUpdate> {
    let set = |v: Option<i64>| v.is_some_and(|n| n != 0);
    for (field, on) in [
        (
            "MemorySwap",
            set(b.memory_swap) && b.memory_swap != Some(-1),
        ),
        ("MemoryReservation", set(b.memory_reservation)),
        ("CpuShares", set(b.cpu_shares)),
        (
            "CpusetCpus",
            b.cpuset_cpus.as_ref().is_some_and(|c| !c.is_empty()),
        ),
        ("BlkioWeight", set(b.blkio_weight)),
        (
            "RestartPolicy",
            b.restart_policy.as_ref().is_some_and(|r| {
                r.get("Name")
                    .and_then(|n| n.as_str())
                    .is_some_and(|n| !n.is_empty())
            }),
        ),
    ] {
        if on {
            return Err(ApiError::bad_request(format!(
                "{field}: codex-ctr cannot change it on an existing container (memory, CPUs and pids only)"
            )));
        }
    }
    let positive = |field: &str, v: Option<i64>| -> ApiResult<Option<u64>> {
        match v {
            None | Some(0) => Ok(None),
            Some(n) if n < 0 => Err(ApiError::bad_request(format!(
                "{field}: must not be negative"
            ))),
            Some(n) => Ok(Some(u64::try_from(n).unwrap_or(0))),
        }
    };
    let mut cpus = positive("NanoCpus", b.nano_cpus)?.map(|n| n as f64 / 1e9);
    if let Some(q) = positive("CpuQuota", b.cpu_quota)? {
        let period = positive("CpuPeriod", b.cpu_period)?.unwrap_or(100_000);
        cpus = Some(q as f64 / period as f64);
    }
    Ok(LimitsUpdate {
        memory: positive("Memory", b.memory)?,
        cpus,
        pids: b.pids_limit.filter(|p| *p != 0),
    })
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
