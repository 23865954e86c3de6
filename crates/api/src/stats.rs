//! `GET /containers/{id}/stats`: the cgroup counters in Docker's shape, so that the
//! docker CLI's and docker-py users' arithmetic works: CPU % is the container's CPU
//! time delta over the host's (`system_cpu_usage`, all CPUs' time in ns from
//! /proc/stat, as Docker reports it), times `online_cpus`, times 100.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::body::{self, Resp};
use crate::containers::blocking;
use crate::error::ApiResult;
use crate::query::Call;
use crate::server::Ctx;

/// Docker's stats interval.
const INTERVAL: Duration = Duration::from_secs(1);

/// The host's CPU time (all CPUs, every state) in ns, from /proc/stat's `cpu` line.
pub fn system_cpu_ns(proc_stat: &str) -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100);
    let ticks: u64 = proc_stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    ticks.saturating_mul(1_000_000_000 / hz)
}

fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// One sample: the runtime's stats data, the host's CPU time, and when.
#[derive(Debug, Clone)]
pub struct Sample {
    pub data: Value,
    pub system_ns: u64,
    pub at: SystemTime,
    pub net: Option<codex_engine::network::netstats::NetCounters>,
}

fn cpu_json(s: Option<&Sample>) -> Value {
    let Some(s) = s else {
        return json!({"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                      "system_cpu_usage": 0, "online_cpus": 0,
                      "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}});
    };
    let c = &s.data["cpu"];
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let mut usage = json!({
        "total_usage": n(&c["usage"]["total"]),
        "usage_in_kernelmode": n(&c["usage"]["kernel"]),
        "usage_in_usermode": n(&c["usage"]["user"]),
    });
    if let Some(p) = c["usage"]["percpu"].as_array().filter(|p| !p.is_empty()) {
        usage["percpu_usage"] = Value::Array(p.clone());
    }
    json!({
        "cpu_usage": usage,
        "system_cpu_usage": s.system_ns,
        "online_cpus": online_cpus(),
        "throttling_data": {
            "periods": n(&c["throttling"]["periods"]),
            "throttled_periods": n(&c["throttling"]["throttled_periods"]),
            "throttled_time": n(&c["throttling"]["throttled_time"]),
        },
    })
}

fn memory_json(d: &Value) -> Value {
    let m = &d["memory"];
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let host = codex_engine::usage::host_memory();
    let limit = n(&m["usage"]["limit"]);
    json!({
        "usage": n(&m["usage"]["usage"]),
        "max_usage": n(&m["usage"]["max"]),
        "failcnt": n(&m["usage"]["failcnt"]),
        // No limit reads as 0 or a huge number: Docker shows the host's memory.
        "limit": if limit == 0 || limit > host { host } else { limit },
        "stats": m.get("raw").cloned().unwrap_or_else(|| json!({})),
    })
}

fn blkio_json(d: &Value) -> Value {
    let entries: Vec<Value> = d["blkio"]["ioServiceBytesRecursive"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    json!({"major": e["major"], "minor": e["minor"],
                                "op": e["op"].as_str().unwrap_or("").to_lowercase(),
                                "value": e["value"]})
                })
                .collect()
        })
        .unwrap_or_default();
    json!({"io_service_bytes_recursive": entries, "io_serviced_recursive": null,
           "io_queue_recursive": null, "io_service_time_recursive": null,
           "io_wait_time_recursive": null, "io_merged_recursive": null,
           "io_time_recursive": null, "sectors_recursive": null})
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// One stats document: `cur` against `pre` (absent for the first of a stream or a
/// one-shot).
pub fn document(id: &str, name: &str, cur: &Sample, pre: Option<&Sample>) -> Value {
    let mut v = json!({
        "id": id,
        "name": format!("/{name}"),
        "read": rfc3339(cur.at),
        "preread": pre.map(|p| rfc3339(p.at)).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        "pids_stats": {"current": cur.data["pids"]["current"].as_u64().unwrap_or(0)},
        "blkio_stats": blkio_json(&cur.data),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_json(Some(cur)),
        "precpu_stats": cpu_json(pre),
        "memory_stats": memory_json(&cur.data),
    });
    if let Some(n) = &cur.net {
        v["networks"] = json!({"eth0": {
            "rx_bytes": n.rx_bytes, "rx_packets": n.rx_packets, "rx_errors": 0, "rx_dropped": 0,
            "tx_bytes": n.tx_bytes, "tx_packets": n.tx_packets, "tx_errors": 0, "tx_dropped": 0}});
    }
    v
}

async fn sample(ctx: &Ctx, id: &str) -> ApiResult<(Sample, String)> {
    let id = id.to_string();
    blocking(ctx, move |e| {
        let rec = e.get(&id)?;
        let data = e.stats(&id)?;
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        Ok((
            Sample {
                data,
                system_ns: system_cpu_ns(&stat),
                at: SystemTime::now(),
                net: rec.pid.and_then(codex_engine::network::netstats::of_pid),
            },
            rec.name,
        ))
    })
    .await
}

pub async fn stats(ctx: &Ctx, c: &Call, id: &str) -> ApiResult<Resp> {
    let id_owned = id.to_string();
    let rec = blocking(ctx, move |e| e.get(&id_owned)).await?;
    let (first, name) = sample(ctx, &rec.id).await?;
    if !c.flag("stream", true) {
        if c.flag("one-shot", false) {
            return body::ok_json(&document(&rec.id, &name, &first, None));
        }
        // As Docker: two samples an interval apart, so precpu_stats is filled.
        tokio::time::sleep(INTERVAL).await;
        let (second, name) = sample(ctx, &rec.id).await?;
        return body::ok_json(&document(&rec.id, &name, &second, Some(&first)));
    }
    let (tx, resp) = body::stream("application/json");
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let mut pre: Option<Sample> = None;
        let mut cur = first;
        let mut name = name;
        loop {
            if tx
                .send(body::json_line(&document(
                    &rec.id,
                    &name,
                    &cur,
                    pre.as_ref(),
                )))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(INTERVAL).await;
            match sample(&ctx, &rec.id).await {
                Ok((s, n)) => {
                    pre = Some(std::mem::replace(&mut cur, s));
                    name = n;
                }
                // Stopped or removed: the stream ends.
                Err(_) => return,
            }
        }
    });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(total: u64, system: u64) -> Sample {
        Sample {
            data: json!({"cpu": {"usage": {"total": total}},
                         "memory": {"usage": {"usage": 10u64 << 20, "limit": 64u64 << 20},
                                    "raw": {"total_inactive_file": 1}},
                         "pids": {"current": 2}}),
            system_ns: system,
            at: SystemTime::now(),
            net: None,
        }
    }

    #[test]
    fn docker_cpu_percent_arithmetic_comes_out_right() {
        // The container used 0.5 s of CPU while the host's CPUs spent 4 s in total.
        let d = document(
            "i",
            "n",
            &s(1_500_000_000, 14_000_000_000),
            Some(&s(1_000_000_000, 10_000_000_000)),
        );
        let cpu = |k: &str, p: &str| d[k]["cpu_usage"][p].as_u64().unwrap();
        let sys = |k: &str| d[k]["system_cpu_usage"].as_u64().unwrap();
        let cpu_delta =
            (cpu("cpu_stats", "total_usage") - cpu("precpu_stats", "total_usage")) as f64;
        let sys_delta = (sys("cpu_stats") - sys("precpu_stats")) as f64;
        let online = d["cpu_stats"]["online_cpus"].as_u64().unwrap() as f64;
        let percent = cpu_delta / sys_delta * online * 100.0;
        assert!((percent - 12.5 * online).abs() < 1e-9, "{percent}");
        assert_eq!(d["memory_stats"]["usage"], 10u64 << 20);
        assert_eq!(d["memory_stats"]["limit"], 64u64 << 20);
        assert_eq!(d["memory_stats"]["stats"]["total_inactive_file"], 1);
        assert_eq!(d["pids_stats"]["current"], 2);
        assert_eq!(d["name"], "/n");
    }

    #[test]
    fn a_first_sample_has_zero_precpu() {
        let d = document("i", "n", &s(5, 7), None);
        assert_eq!(d["precpu_stats"]["cpu_usage"]["total_usage"], 0);
        assert_eq!(d["precpu_stats"]["system_cpu_usage"], 0);
    }

    #[test]
    fn system_cpu_time_sums_the_cpu_line() {
        let stat = "cpu  10 0 5 85 0 0 0 0 0 0\ncpu0 5 0 2 43 0 0 0 0 0 0\n";
        // SAFETY: sysconf reads a constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        assert_eq!(system_cpu_ns(stat), 100 * (1_000_000_000 / hz));
    }
}
