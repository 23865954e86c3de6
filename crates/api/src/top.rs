//! `GET /containers/{id}/top` over the engine's `top` (the processes its cgroup lists,
//! read from /proc), in `ps -ef`'s columns. `ps_args` other than `-ef` is refused.

use codex_engine::top::ProcessRow;
use serde_json::json;

use crate::body::{self, Resp};
use crate::containers::blocking;
use crate::error::{ApiError, ApiResult};
use crate::query::Call;
use crate::server::Ctx;

/// One `ps -ef` row (STIME is not known here: `-`).
pub fn row(p: &ProcessRow) -> Vec<String> {
    let secs = p.cpu_seconds.max(0.0) as u64;
    vec![
        p.uid.to_string(),
        p.pid.to_string(),
        p.ppid.to_string(),
        "0".into(),
        "-".into(),
        "?".into(),
        format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
        p.command.clone(),
    ]
}

pub async fn top(ctx: &Ctx, c: &Call, id: &str) -> ApiResult<Resp> {
    if let Some(a) = c.q("ps_args").filter(|a| !a.is_empty() && *a != "-ef") {
        return Err(ApiError::bad_request(format!(
            "ps_args: {a:?} is not supported (codex-ctr lists processes as `ps -ef`)"
        )));
    }
    let id = id.to_string();
    let procs = blocking(ctx, move |e| e.top(&id)).await?;
    body::ok_json(&json!({
        "Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
        "Processes": procs.iter().map(row).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_become_ps_rows() {
        let p = ProcessRow {
            pid: 42,
            ppid: 1,
            uid: 1000,
            cpu_seconds: 3723.9,
            command: "sleep 300".into(),
        };
        assert_eq!(
            row(&p),
            ["1000", "42", "1", "0", "-", "?", "01:02:03", "sleep 300"]
        );
    }
}
