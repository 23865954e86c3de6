//! Newer runtime-spec fields (personality, scheduler, ioPriority, execCPUAffinity, time
//! namespace with timeOffsets): codex honours each, and each test checks the kernel's view
//! of it (codex-specific: runc 1.1.5 ignores them). A rejection is a failure here: the
//! tests once accepted "honoured or rejected", which let a runtime that refused everything
//! pass (the refusal branch matched its needle in the runtime's own echoed arguments).

use codex_tests::*;

/// Runs `script` in a container built by `edit`; the run must succeed and `check` judges
/// the output.
fn honoured(name: &str, edit: impl FnOnce(&mut Bundle), script: &str, check: impl FnOnce(&str)) {
    let ctx = TestCtx::new(name);
    let mut b = ctx.bundle();
    edit(&mut b);
    let o = ctx.run_sh(&mut b, script);
    check(&o.stdout);
}

#[test]
fn codex_personality_is_honoured() {
    honoured(
        "personality",
        |b| {
            b.set(
                "/linux/personality",
                serde_json::json!({"domain": "LINUX32"}),
            );
        },
        "uname -m",
        |out| {
            assert!(
                matches!(out.trim(), "i686" | "i386"),
                "LINUX32 personality ignored: {out:?}"
            )
        },
    );
}

#[test]
fn codex_scheduler_is_honoured() {
    honoured(
        "scheduler",
        |b| {
            b.set(
                "/process/scheduler",
                serde_json::json!({"policy": "SCHED_BATCH"}),
            );
        },
        // field 41 of /proc/self/stat is the policy (SCHED_BATCH = 3); comm "cut" has no spaces
        "cut -d' ' -f41 /proc/self/stat",
        |out| assert_eq!(out.trim(), "3", "SCHED_BATCH ignored"),
    );
}

#[test]
fn codex_io_priority_is_honoured() {
    honoured(
        "iopriority",
        |b| {
            b.set(
                "/process/ioPriority",
                serde_json::json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0}),
            );
        },
        "ionice",
        |out| {
            assert!(
                out.trim().starts_with("idle"),
                "IOPRIO_CLASS_IDLE ignored: {out:?}"
            )
        },
    );
}

#[test]
fn codex_exec_cpu_affinity_is_honoured_by_exec() {
    // execCPUAffinity applies to processes exec'd into the container, not to its init.
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if cpus < 2 {
        skip("execCPUAffinity test needs 2 CPUs");
        return;
    }
    let ctx = TestCtx::new("cpu-affinity");
    let mut b = ctx.bundle();
    b.sh("echo ready; exec sleep 1000");
    let id = ctx.id("affinity");
    ctx.create_and_start(&b, &id);
    ctx.wait_for_stdout(&id, "ready");
    let p = ctx.path("process.json");
    let process = serde_json::json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["grep", "Cpus_allowed_list", "/proc/self/status"],
        "env": ["PATH=/bin"],
        "cwd": "/",
        "execCPUAffinity": {"final": "1"},
    });
    std::fs::write(&p, serde_json::to_vec(&process).unwrap()).unwrap();
    // control: without execCPUAffinity, an exec'd process may run on every CPU
    let all = ctx.exec(
        &id,
        &[],
        &["grep", "Cpus_allowed_list", "/proc/self/status"],
    );
    all.assert_ok();
    assert_ne!(all.stdout.split_whitespace().last(), Some("1"), "{all:?}");
    let o = ctx.exec(&id, &["--process", p.to_str().unwrap()], &[]);
    o.assert_ok();
    assert_eq!(
        o.stdout.split_whitespace().last(),
        Some("1"),
        "execCPUAffinity ignored: {o:?}"
    );
}

#[test]
fn codex_time_namespace_offsets_are_honoured() {
    honoured(
        "timens",
        |b| {
            b.namespace("time", None);
            b.set(
                "/linux/timeOffsets",
                serde_json::json!({"monotonic": {"secs": 86400, "nanosecs": 0},
                                   "boottime": {"secs": 172800, "nanosecs": 0}}),
            );
        },
        "cat /proc/self/timens_offsets; cut -d. -f1 /proc/uptime",
        |out| {
            let l: Vec<String> = out
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            assert!(l.contains(&"monotonic 86400 0".to_string()), "{out:?}");
            assert!(l.contains(&"boottime 172800 0".to_string()), "{out:?}");
            let up: u64 = l.last().unwrap().parse().unwrap();
            assert!(
                up >= 172800,
                "uptime must include the boottime offset: {out:?}"
            );
        },
    );
}

#[test]
fn codex_memory_policy_is_applied_to_the_process() {
    if !std::path::Path::new("/proc/self/numa_maps").exists() {
        return skip("no NUMA support in this kernel (/proc/self/numa_maps)");
    }
    let ctx = TestCtx::new("mempolicy");
    let mut b = ctx.bundle();
    b.set(
        "/linux/memoryPolicy",
        serde_json::json!({"mode": "MPOL_BIND", "nodes": "0"}),
    );
    let o = ctx.run_sh(&mut b, "head -n1 /proc/self/numa_maps");
    assert!(o.stdout.contains("bind:0"), "{o:?}");
    let mut bad = ctx.bundle();
    bad.set(
        "/linux/memoryPolicy",
        serde_json::json!({"mode": "MPOL_DEFAULT", "nodes": "0"}),
    );
    let id = ctx.id("badpol");
    ctx.run(&bad, &id, &[])
        .assert_fails()
        .assert_stderr_mentions("linux.memoryPolicy");
}
