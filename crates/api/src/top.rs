//! `GET /containers/{id}/top`: the container's processes (those in its cgroup), in
//! `ps -ef`'s columns, read from /proc. `ps_args` other than `-ef` is refused.

use std::path::Path;

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::body::{self, Resp};
use crate::containers::blocking;
use crate::error::{ApiError, ApiResult};
use crate::query::Call;
use crate::server::Ctx;

/// Pids in the first of the container's cgroup directories that lists them.
fn cgroup_pids(cgroups: &Value) -> Vec<i32> {
    let dirs: Vec<String> = match cgroups {
        Value::Array(a) => a
            .iter()
            .filter_map(|d| d["path"].as_str().map(str::to_string))
            .collect(),
        Value::Object(m) => m
            .values()
            .filter_map(|d| d.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    for d in dirs {
        if let Ok(t) = std::fs::read_to_string(Path::new(&d).join("cgroup.procs")) {
            let pids: Vec<i32> = t.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if !pids.is_empty() {
                return pids;
            }
        }
    }
    Vec::new()
}

/// One `ps -ef` row from /proc/PID's `status`, `stat` and `cmdline` (`None`: it is gone).
pub fn row(status: &str, stat: &str, cmdline: &[u8], pid: i32, hz: u64) -> Option<Vec<String>> {
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    // Fields after the command (which may hold spaces) in `stat`.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    let secs = ticks / hz.max(1);
    let time = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    let cmd = if cmdline.is_empty() {
        format!("[{}]", field("Name:").unwrap_or_default())
    } else {
        cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    Some(vec![
        field("Uid:")?,
        pid.to_string(),
        field("PPid:")?,
        "0".into(),
        "-".into(),
        "?".into(),
        time,
        cmd,
    ])
}

pub async fn top(ctx: &Ctx, c: &Call, id: &str) -> ApiResult<Resp> {
    if let Some(a) = c.q("ps_args").filter(|a| !a.is_empty() && *a != "-ef") {
        return Err(ApiError::bad_request(format!(
            "ps_args: {a:?} is not supported (codex-ctr lists processes as `ps -ef`)"
        )));
    }
    let id = id.to_string();
    let (running, cgroups) = blocking(ctx, move |e| {
        let rec = e.get(&id)?;
        let v = e.inspect(&rec.id)?;
        Ok((
            rec.status == codex_engine::registry::ContainerStatus::Running,
            v["cgroups"].clone(),
        ))
    })
    .await?;
    if !running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the container is not running",
        ));
    }
    // SAFETY: sysconf reads a constant of the system.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    let rows: Vec<Vec<String>> = cgroup_pids(&cgroups)
        .into_iter()
        .filter_map(|pid| {
            let p = format!("/proc/{pid}");
            row(
                &std::fs::read_to_string(format!("{p}/status")).ok()?,
                &std::fs::read_to_string(format!("{p}/stat")).ok()?,
                &std::fs::read(format!("{p}/cmdline")).ok()?,
                pid,
                hz,
            )
        })
        .collect();
    body::ok_json(&json!({
        "Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
        "Processes": rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_make_a_ps_row() {
        let status = "Name:\tsleep\nPPid:\t1\nUid:\t1000\t1000\t1000\t1000\n";
        let stat = "42 (sle ep) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 1 0 100 0";
        let r = row(status, stat, b"sleep\x00300\x00", 42, 100).unwrap();
        assert_eq!(
            r,
            ["1000", "42", "1", "0", "-", "?", "00:00:04", "sleep 300"]
        );
        let r = row(status, stat, b"", 42, 100).unwrap();
        assert_eq!(r[7], "[sleep]");
        assert!(row(status, "garbage", b"", 1, 100).is_none());
    }
}
