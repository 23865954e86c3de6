//! `GET /containers/{id}/logs`: the container's log in Docker's multiplexed framing
//! (containers here never have a terminal), whole or followed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use codex_engine::logread::LogQuery;
use codex_engine::supervisor::logs::LogLine;
use hyper::StatusCode;

use crate::body::{self, frame, Resp, StreamKind};
use crate::containers::blocking;
use crate::error::{ApiError, ApiResult};
use crate::query::Call;
use crate::server::Ctx;

pub const MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";

/// Docker's times in a query: Unix seconds with an optional fraction (`0` or absent:
/// none), or RFC 3339.
pub fn parse_time(field: &str, s: Option<&str>) -> ApiResult<Option<SystemTime>> {
    let Some(s) = s.filter(|s| !s.is_empty() && *s != "0") else {
        return Ok(None);
    };
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(Some(t));
    }
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let bad = || ApiError::bad_request(format!("{field}: {s:?} is not a Unix time or RFC 3339"));
    let secs: u64 = secs.parse().map_err(|_| bad())?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}")
            .get(..9)
            .and_then(|f| f.parse().ok())
            .ok_or_else(bad)?
    };
    Ok(Some(UNIX_EPOCH + Duration::new(secs, nanos)))
}

pub const RAW: &str = "application/vnd.docker.raw-stream";

/// A log line's bytes: its time first when asked, its newline unless it is a partial
/// line (a terminal's prompt).
pub fn line_text(l: &LogLine, timestamps: bool) -> String {
    let nl = if l.partial { "" } else { "\n" };
    if timestamps {
        format!("{} {}{nl}", l.time, l.log)
    } else {
        format!("{}{nl}", l.log)
    }
}

/// A log line as it goes out: a frame of its stream, or raw for a container with a
/// terminal (one stream, as Docker sends it).
pub fn line_out(l: &LogLine, timestamps: bool, tty: bool) -> Bytes {
    let text = line_text(l, timestamps);
    if tty {
        return Bytes::from(text);
    }
    let kind = if l.stream == "stderr" {
        StreamKind::Stderr
    } else {
        StreamKind::Stdout
    };
    frame(kind, text.as_bytes())
}

fn before(l: &LogLine, until: Option<SystemTime>) -> bool {
    until.is_none_or(|u| humantime::parse_rfc3339(&l.time).is_ok_and(|t| t <= u))
}

pub async fn logs(ctx: &Ctx, c: &Call, id: &str) -> ApiResult<Resp> {
    let (stdout, stderr) = (c.flag("stdout", false), c.flag("stderr", false));
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let tail = match c.q("tail") {
        None | Some("") | Some("all") => None,
        Some(n) => Some(n.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("tail: {n:?} is not a number or \"all\""))
        })?),
    }
    .map(|n| usize::try_from(n.max(0)).unwrap_or(0));
    let query = LogQuery {
        since: parse_time("since", c.q("since"))?,
        tail,
        stdout,
        stderr,
    };
    let until = parse_time("until", c.q("until"))?;
    let ts = c.flag("timestamps", false);
    let id = id.to_string();
    let rec = {
        let id = id.clone();
        blocking(ctx, move |e| e.get(&id)).await?
    };
    let tty = crate::inspect::config_of(&rec).tty;
    let kind = if tty { RAW } else { MULTIPLEXED };
    if !c.flag("follow", false) {
        let lines = blocking(ctx, move |e| e.logs(&id, &query)).await?;
        let mut out = Vec::new();
        for l in lines.iter().filter(|l| before(l, until)) {
            out.extend_from_slice(&line_out(l, ts, tty));
        }
        return Ok(body::bytes(StatusCode::OK, kind, out));
    }
    let mut follow = ctx.eng.follow_logs(&id, query)?;
    let (tx, resp) = body::stream(kind);
    tokio::spawn(async move {
        while let Ok(Some(lines)) = follow.next().await {
            for l in &lines {
                if !before(l, until) {
                    return;
                }
                if tx.send(line_out(l, ts, tty)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_docker_sends_them() {
        assert_eq!(parse_time("since", Some("0")).unwrap(), None);
        assert_eq!(parse_time("since", None).unwrap(), None);
        let t = parse_time("since", Some("1700000000.5")).unwrap().unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::new(1_700_000_000, 500_000_000));
        let t = parse_time("since", Some("1700000000")).unwrap().unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert!(parse_time("since", Some("2023-11-14T22:13:20Z"))
            .unwrap()
            .is_some());
        assert!(parse_time("since", Some("soon"))
            .unwrap_err()
            .message
            .contains("since"));
    }

    #[test]
    fn lines_become_frames_of_their_stream() {
        let l = LogLine {
            time: "2026-01-01T00:00:00.000000001Z".into(),
            stream: "stderr".into(),
            log: "oops".into(),
            partial: false,
        };
        let f = line_out(&l, false, false);
        assert_eq!(&f[..8], &[2, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(&f[8..], b"oops\n");
        let f = line_out(&l, true, false);
        assert!(f[8..].starts_with(b"2026-01-01T00:00:00.000000001Z oops"));
        // With a terminal: raw, and a prompt (partial line) has no newline added.
        let p = LogLine {
            partial: true,
            log: "$ ".into(),
            ..l
        };
        assert_eq!(&line_out(&p, false, true)[..], b"$ ");
        assert_eq!(&line_out(&p, false, false)[8..], b"$ ");
    }
}
