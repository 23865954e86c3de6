//! The async engine on real containers (run as root): `minimal` isolation runs a host
//! shell under a real supervisor (the debug `codex-ctr` binary, built by `cargo build`
//! before `cargo test`), so no image is needed. Each test has its own engine root.

use std::time::{Duration, Instant};

use codex_engine::aio::AsyncEngine;
use codex_engine::logread::LogQuery;

mod common;
use common::script;

/// An engine over a fresh root, or None (with a loud note) where this cannot run.
fn engine() -> Option<(tempfile::TempDir, AsyncEngine)> {
    let (dir, eng) = common::real_engine("codex-aio-")?;
    Some((dir, AsyncEngine::new(eng)))
}

#[tokio::test(flavor = "current_thread")]
async fn wait_and_follow_see_output_and_the_exit_without_blocking_the_runtime() {
    let Some((dir, eng)) = engine() else { return };
    let rec = eng
        .create(script(
            "aio-follow",
            &format!(
                "echo one; i=0; while [ ! -e {t} ] && [ $i -lt 400 ]; do sleep 0.05; \
                 i=$((i+1)); done; [ -e {t} ] && echo two >&2 || echo no-trigger >&2; exit 5",
                t = dir.path().join("trigger").display()
            ),
        ))
        .await
        .expect("create");
    // Opened before start with an empty backlog, as `run` does.
    let mut follow = eng
        .follow_logs(
            &rec.id,
            LogQuery {
                tail: Some(0),
                ..Default::default()
            },
        )
        .expect("follow");
    eng.start(&rec.id).await.expect("start");

    // One thread: the script prints its second line only after this task has made the
    // trigger file, and this task can only run while the follower is waiting, if the
    // follower does not block the thread (event order, not a count of ticks in a window;
    // the script gives up after ~20 s and says so).
    let trigger = dir.path().join("trigger");
    let ticker = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        std::fs::write(&trigger, b"").expect("trigger");
    });
    let mut lines = Vec::new();
    while let Some(batch) = tokio::time::timeout(Duration::from_secs(60), follow.next())
        .await
        .expect("follow ends when the container ends")
        .expect("follow")
    {
        lines.extend(batch.into_iter().map(|l| (l.stream, l.log)));
    }
    assert_eq!(
        lines,
        [
            ("stdout".to_string(), "one".to_string()),
            ("stderr".to_string(), "two".to_string())
        ]
    );
    ticker.await.expect("the trigger task ran");
    let code = tokio::time::timeout(Duration::from_secs(10), eng.wait(&rec.id))
        .await
        .expect("wait returns")
        .expect("wait");
    assert_eq!(code, Some(5));
    eng.remove(&rec.id, true, true).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_waits_share_the_runtime_and_wake_on_each_exit() {
    let Some((_dir, eng)) = engine() else { return };
    let mut ids = Vec::new();
    for i in 0..4 {
        let rec = eng
            .create(script(
                &format!("aio-wait-{i}"),
                &format!("sleep 0.{i}; exit {i}"),
            ))
            .await
            .expect("create");
        eng.start(&rec.id).await.expect("start");
        ids.push(rec.id);
    }
    let started = Instant::now();
    let waits = ids.iter().map(|id| {
        let eng = eng.clone();
        let id = id.clone();
        tokio::spawn(async move { eng.wait(&id).await })
    });
    let mut codes = Vec::new();
    for w in waits {
        codes.push(w.await.expect("join").expect("wait"));
    }
    assert_eq!(codes, [Some(0), Some(1), Some(2), Some(3)]);
    // Generous bound: only proves the waits did not hang.
    assert!(started.elapsed() < Duration::from_secs(20));
    for id in &ids {
        eng.remove(id, true, true).await.expect("remove");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_subscriber_sees_the_restart_policy_at_work_and_wait_for_sees_the_end() {
    use codex_engine::events::EventQuery;
    use codex_engine::wait::{WaitCondition, WaitOutcome};
    let Some((_dir, eng)) = engine() else { return };
    let mut cfg = script("aio-events", "echo run; exit 4");
    cfg.restart = codex_engine::restart::RestartPolicy::OnFailure { max: Some(1) };
    let rec = eng.create(cfg).await.expect("create");
    // Another container's events are not this subscriber's (the filter applies).
    let other = eng
        .create(script("aio-events-other", "exit 0"))
        .await
        .expect("create other");
    let query = EventQuery {
        filters: vec![("container".into(), "aio-events".into())],
        ..Default::default()
    };
    // From now on: the `create` already written is not delivered.
    let mut events = eng.subscribe(query, false).expect("subscribe");
    eng.start(&other.id).await.expect("start other");
    eng.start(&rec.id).await.expect("start");
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|a: &&String| a.starts_with("die"))
        .count()
        < 2
    {
        let e = tokio::time::timeout(Duration::from_secs(60), events.next())
            .await
            .unwrap_or_else(|_| panic!("no event within 60 s; so far {seen:?}"))
            .expect("event");
        assert_eq!(e.name, "aio-events", "{e:?}");
        seen.push(match e.attributes.get("exit_code") {
            Some(c) => format!("{}:{c}", e.action),
            None => e.action,
        });
    }
    assert_eq!(seen, ["start", "die:4", "restart", "start", "die:4"]);
    let end = eng
        .wait_for(
            &rec.id,
            WaitCondition::Exited,
            Some(Duration::from_secs(60)),
        )
        .await
        .expect("wait_for");
    let WaitOutcome::Reached(Some(r)) = end else {
        panic!("not exited: {end:?}")
    };
    assert_eq!((r.restart_count, r.exit_code), (1, Some(4)));
    let logs = eng.logs(&rec.id, LogQuery::default()).await.expect("logs");
    assert_eq!(logs.iter().filter(|l| l.log == "run").count(), 2);
    for id in [&rec.id, &other.id] {
        eng.remove(id, true, true).await.expect("remove");
    }
}
