//! The monitors' commands: `wait --condition` and `events` (docs/monitors.md).

use std::time::Duration;

use anyhow::Result;
use codex_engine::engine::Engine;

use super::commands::each;

/// `wait --condition C [--timeout D] NAME...`: one deadline for all of them; prints
/// each name as it meets the condition. Exit code 1 if one timed out or never can.
pub(super) fn wait_condition(
    eng: &Engine,
    cond: &str,
    timeout: Option<&str>,
    names: &[String],
) -> Result<i32> {
    use codex_engine::wait::{WaitCondition, WaitOutcome};
    let cond: WaitCondition = cond.parse()?;
    let timeout = timeout
        .map(|t| codex_engine::health::parse_period("timeout", t).map(Duration::from_millis))
        .transpose()?;
    let end = timeout.map(|t| std::time::Instant::now() + t);
    // 1 when a condition was not reached (it timed out, or can never be met), 125 for
    // an engine error (no such container, bad input) as everywhere else.
    let mut not_reached = false;
    // Every name resolved before the first wait (Docker's order): a container removed
    // while an earlier one is waited for is then "removed", not "no such container".
    let mut ids = std::collections::HashMap::new();
    for n in names {
        if let Ok(r) = eng.get(n) {
            ids.insert(n.clone(), r.id);
        }
    }
    let code = each(names, |c| {
        let left = end.map(|e| e.saturating_duration_since(std::time::Instant::now()));
        let target = ids.get(c).map_or(c, String::as_str);
        let outcome = match eng.wait_for(target, cond, left) {
            Err(codex_engine::Error::NotFound { .. })
                if cond == WaitCondition::Removed && ids.contains_key(c) =>
            {
                Ok(WaitOutcome::Reached(None))
            }
            other => other,
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(
                e @ (codex_engine::Error::WrongState { .. } | codex_engine::Error::Invalid { .. }),
            ) => {
                eprintln!("codex-ctr: {c}: {e}");
                not_reached = true;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        match outcome {
            WaitOutcome::Reached(_) => {
                println!("{c}");
                Ok(())
            }
            WaitOutcome::TimedOut(rec) => {
                let now = rec.map_or_else(
                    || "removed".to_string(),
                    |r| {
                        let health = r
                            .health
                            .map(|h| format!(", {}", h.status))
                            .unwrap_or_default();
                        format!("{}{health}", r.status)
                    },
                );
                eprintln!("codex-ctr: {c}: timed out waiting for it (it is {now})");
                not_reached = true;
                Ok(())
            }
        }
    })?;
    Ok(if code == 0 && not_reached { 1 } else { code })
}

/// `events`: the kept events that match, then (without `--until`, or until then)
/// new ones as they are written.
pub(super) fn events(
    eng: &Engine,
    since: Option<&str>,
    until: Option<&str>,
    filters: &[String],
    format: &str,
) -> Result<i32> {
    use codex_engine::events::EventQuery;
    use std::io::Write;
    let parse = |field: &str, t: &str| {
        codex_engine::logread::parse_since(t).map_err(|e| {
            anyhow::anyhow!("{field}: {}", e.to_string().trim_start_matches("since: "))
        })
    };
    let q = EventQuery {
        since: since.map(|t| parse("since", t)).transpose()?,
        until: until.map(|t| parse("until", t)).transpose()?,
        filters: EventQuery::parse_filters(filters)?,
    };
    let mut reader = eng.events()?;
    let mut out = std::io::stdout().lock();
    loop {
        for e in reader.read_new()?.into_iter().filter(|e| q.matches(e)) {
            if format == "json" {
                writeln!(out, "{}", serde_json::to_string(&e)?)?;
            } else {
                let attrs: Vec<String> = e
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                writeln!(
                    out,
                    "{} container {} {} (name={}{}{})",
                    e.time,
                    e.action,
                    e.id,
                    e.name,
                    if attrs.is_empty() { "" } else { ", " },
                    attrs.join(", ")
                )?;
            }
        }
        out.flush()?;
        let wait = match q.until {
            None => Duration::from_secs(3600),
            Some(u) => match u.duration_since(std::time::SystemTime::now()) {
                Ok(left) if !left.is_zero() => left,
                _ => return Ok(0),
            },
        };
        reader.wait(wait)?;
    }
}
