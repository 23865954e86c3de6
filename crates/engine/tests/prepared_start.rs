//! A supervisor started ahead of its container (`Engine::prepare_start`, what `run`
//! does so that the supervisor's exec overlaps the create), on real processes (run as
//! root): used, it starts the container; dropped, it leaves no process and no zombie.

use std::path::Path;

mod common;
use common::script;

/// Processes (pid, state) whose command line names `__supervise` and `root`, and any
/// zombie child of this process.
fn supervisors_of(root: &Path) -> Vec<(i32, char)> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
        let mut fields = after.split(' ');
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = fields.next().unwrap_or("");
        let ours = args.contains(&&b"__supervise"[..])
            && args.contains(&root.as_os_str().as_encoded_bytes());
        if ours || (state == 'Z' && ppid == me) {
            found.push((pid, state));
        }
    }
    found
}

#[test]
fn a_prepared_start_starts_the_container_and_a_dropped_one_leaves_nothing() {
    let Some((_dir, eng)) = common::real_engine("codex-prepared-") else {
        return;
    };
    let root = eng.root().to_path_buf();

    let prepared = eng.prepare_start(None).expect("prepare");
    // Control: the supervisor waiting for its id is there to be found (once its exec
    // is through: a process in the middle of one has an empty command line).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut waiting = supervisors_of(&root);
    while waiting.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        waiting = supervisors_of(&root);
    }
    // Its first process, or that one's zombie and the detached supervisor.
    assert!(
        (1..=2).contains(&waiting.len()),
        "the waiting supervisor: {waiting:?}"
    );
    drop(prepared);
    // Its first process is reaped by the drop; the detached one sees the pipe's end and
    // exits on its own, a moment later (init reaps it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut left = supervisors_of(&root);
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        left = supervisors_of(&root);
    }
    assert_eq!(
        left,
        vec![],
        "a dropped prepared start left a process or a zombie"
    );

    // A slow warm-up (a long grace period) must still be over when the start returns.
    std::env::set_var("CODEX_TEST_PAUSE", "cgroup-warm:300");
    let prepared = eng.prepare_start(None).expect("prepare");
    let rec = eng.create(script("prepared", "exit 7")).expect("create");
    let started = eng.start_prepared(prepared, &rec.id).expect("start");
    assert_eq!(started.id, rec.id);
    // The start's cgroup warm-up thread is joined by the time it returns: a
    // single-threaded caller may fork (an in-process exec) right after.
    let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|c| c.trim() == "cgroup-warm")
        .collect();
    assert!(threads.is_empty(), "the warm-up thread outlived the start");
    std::env::remove_var("CODEX_TEST_PAUSE");
    let code = eng.wait(&rec.id).expect("wait");
    assert_eq!(code, Some(7));
    eng.remove(&rec.id, true, true).expect("remove");
    assert_eq!(
        supervisors_of(&root),
        vec![],
        "the supervisor outlived its container"
    );
}
