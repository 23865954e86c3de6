//! Resource control on this (hybrid, v1-controller) host: every limit is enforced by the
//! kernel and can be read back. Pure cgroup v2 is proven by the VM tier (vm/).

use codex_tests::*;
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

fn stats(ctx: &TestCtx, id: &str) -> Value {
    let o = ctx.rt.run(&["events", "--stats", id]);
    o.assert_ok();
    o.json()["data"].clone()
}

/// Whether the host's memory controller accounts swap (v1 memsw, v2 memory.swap.max), read
/// in this process's own memory cgroup.
fn swap_accounting() -> bool {
    cgroup_dir(std::process::id() as i64, "memory").is_some_and(|d| {
        d.join("memory.memsw.limit_in_bytes").exists() || d.join("memory.swap.max").exists()
    })
}

#[test]
fn codex_oom_killed_process_gets_137_and_the_oom_is_reported() {
    let ctx = TestCtx::new("res-oom");
    let mut b = ctx.bundle();
    let limit = 32 * 1024 * 1024;
    let mut mem = json!({"limit": limit});
    if swap_accounting() {
        mem["swap"] = json!(limit);
    }
    b.set("/linux/resources/memory", mem);
    // The shell outlives the OOM kill of `tail` (the largest process) and reports it.
    b.sh("read go < /dev/shm/go 2>/dev/null; tail /dev/zero; echo tail-exit=$?; sleep 1");
    let id = ctx.id("oom");
    ctx.create(&b, &id, &[]).assert_ok();
    let mut events = ctx.rt.command(&["events", "--interval", "100ms", &id]);
    let ev_out = ctx.path("events.out");
    events.stdout(fs::File::create(&ev_out).unwrap());
    let mut events = events.spawn().unwrap();
    ctx.rt.run(&["start", &id]).assert_ok();
    ctx.wait_for_stdout(&id, "tail-exit=137");
    assert!(
        wait_until(Duration::from_secs(10), || read_lossy(&ev_out)
            .contains("\"type\":\"oom\"")),
        "no oom event: {:?}",
        read_lossy(&ev_out)
    );
    let _ = events.kill();
    let _ = events.wait();
    assert!(stats(&ctx, &id)["memory"]["oom_kill"].as_u64().unwrap_or(0) >= 1);
    // positive control for the leftover walk below
    assert!(!cgroup_dirs_containing(&id).is_empty());
    ctx.rt.run(&["delete", "--force", &id]).assert_ok();
    assert!(
        cgroup_dirs_containing(&id).is_empty(),
        "{:?}",
        cgroup_dirs_containing(&id)
    );
}

#[test]
fn init_killed_by_the_oom_killer_makes_run_exit_137() {
    let ctx = TestCtx::new("res-oom-run");
    let mut b = ctx.bundle();
    let limit = 32 * 1024 * 1024;
    let mut mem = json!({"limit": limit});
    if swap_accounting() {
        mem["swap"] = json!(limit);
    }
    b.set("/linux/resources/memory", mem);
    // the init waits for /go so its cgroup can be seen first, then becomes `tail`
    b.sh("while [ ! -e /go ]; do sleep 0.05; done; exec tail /dev/zero");
    let id = ctx.id("oomrun");
    let mut run = ctx.spawn_run(&b, &id, &[]);
    assert!(
        wait_until(WAIT, || !cgroup_dirs_containing(&id).is_empty()),
        "control: no cgroup named after {id} while it runs"
    );
    fs::write(b.rootfs().join("go"), "").unwrap();
    run.wait(cmd_timeout()).assert_code(137);
    assert!(cgroup_dirs_containing(&id).is_empty());
}

#[test]
fn pids_limit_caps_the_number_of_processes() {
    let ctx = TestCtx::new("res-pids");
    let mut b = ctx.bundle();
    b.set("/linux/resources/pids", json!({"limit": 20}));
    b.push_mount(
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                        "options": ["ro", "nosuid", "nodev", "noexec"]}),
    );
    let o = ctx.run_sh(
        &mut b,
        // A failed fork ends the subshell; the outer shell then reads the counters
        // with builtins only (every process slot may be taken).
        "( i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done ) 2>/dev/null; \
         d=/sys/fs/cgroup/pids; [ -e /sys/fs/cgroup/pids.max ] && d=/sys/fs/cgroup; \
         read max < $d/pids.max; read current < $d/pids.current; \
         set -- /proc/[0-9]*; echo max=$max current=$current running=$#",
    );
    let line = o.stdout.lines().last().unwrap_or_default().to_string();
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {line:?}"))
    };
    assert_eq!(field("max"), 20, "{line}");
    assert!(field("current") <= 20, "{line}");
    assert!(field("running") <= 20, "{line}");
    assert!(
        field("current") >= 15,
        "the fork loop should reach the limit: {line}"
    );
}

/// The kernel's CPU counters of a container: (usage ns, periods, throttled periods).
fn cpu_counters(ctx: &TestCtx, id: &str) -> (u64, u64, u64) {
    let s = stats(ctx, id);
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a counter: {s}"));
    (
        n(&s["cpu"]["usage"]["total"]),
        n(&s["cpu"]["throttling"]["periods"]),
        n(&s["cpu"]["throttling"]["throttled_periods"]),
    )
}

#[test]
fn codex_cpu_quota_holds_a_busy_loop_to_a_tenth_of_a_cpu() {
    // What the kernel counted, not a share of wall time: over the enforcement periods
    // the kernel ran, the loop got at most the quota per period, and it was throttled
    // (it wanted more). Load on the machine can only lower the usage, never break the
    // bound; the quota is a tenth of a CPU so that the loop still wants more than that
    // at load 8 on two cores (a quarter of a CPU each), and so gets throttled.
    let _turn = serial("cpu-share");
    let ctx = TestCtx::new("res-cpu");
    let mut b = ctx.bundle();
    let (quota_us, period_us) = (10_000u64, 100_000u64);
    b.set(
        "/linux/resources/cpu",
        json!({"quota": quota_us, "period": period_us}),
    );
    b.sh("while :; do :; done");
    let id = ctx.id("cpu");
    ctx.create_and_start(&b, &id);
    let (u0, p0, t0) = cpu_counters(&ctx, &id);
    let mut last = (u0, p0, t0);
    // at least 20 periods (2 s of the loop's life) with 3 of them throttled; 120 s only
    // bounds a machine so loaded that the loop never reaches its quota
    let enough = wait_until(Duration::from_secs(120), || {
        last = cpu_counters(&ctx, &id);
        last.1 - p0 >= 20 && last.2 - t0 >= 3
    });
    let (u1, p1, t1) = last;
    let (used, periods, throttled) = (u1 - u0, p1 - p0, t1 - t0);
    assert!(
        enough,
        "the loop was throttled in {throttled} of {periods} periods: the quota never bit"
    );
    // CFS may hand out a slice ahead (~5 ms per CPU): 10% and two periods of slack
    let allowed = (periods + 2) * quota_us * 1000 * 11 / 10;
    assert!(
        used <= allowed,
        "the loop used {used} ns in {periods} periods of {period_us} us, more than the \
         quota allows ({allowed} ns)"
    );
    assert!(used > 0, "the loop never ran");
}

#[test]
fn write_throttle_on_the_backing_device_is_enforced() {
    let ctx = TestCtx::new("res-blkio");
    let data = ctx.mkdir("data");
    let dev = fs::metadata(&data).unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let sysfs = format!("/sys/dev/block/{major}:{minor}");
    if major == 0 || !std::path::Path::new(&sysfs).exists() {
        return skip(&format!(
            "the test dir is not on a block device ({major}:{minor})"
        ));
    }
    // Throttles apply to whole disks: use the partition's parent when there is one.
    let (major, minor) = if std::path::Path::new(&format!("{sysfs}/partition")).exists() {
        let parent = fs::read_to_string(format!("{sysfs}/../dev")).unwrap();
        let (a, b) = parent.trim().split_once(':').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    } else {
        (major, minor)
    };
    let mut b = ctx.bundle();
    b.add_bind(&data, "/data", &["rbind", "rw"]);
    b.set(
        "/linux/resources/blockIO",
        json!({"throttleWriteBpsDevice": [{"major": major, "minor": minor, "rate": 4 * 1024 * 1024}]}),
    );
    b.sh(
        "dd if=/dev/zero of=/data/f bs=1M count=8 oflag=direct 2>&1; echo dd-done; exec sleep 1000",
    );
    let id = ctx.id("blkio");
    ctx.create(&b, &id, &[]).assert_ok();
    let start = Instant::now();
    ctx.rt.run(&["start", &id]).assert_ok();
    let out = ctx.wait_for_stdout(&id, "dd-done");
    let took = start.elapsed();
    if out.contains("Invalid argument") {
        return skip("the backing filesystem refuses O_DIRECT");
    }
    // Control, from the kernel's counters: the container's 8 MiB went through the
    // throttle of exactly the device the rule names (so the rule and the writes meet).
    let s = stats(&ctx, &id);
    let written: u64 = s["blkio"]["ioServiceBytesRecursive"]
        .as_array()
        .unwrap_or_else(|| panic!("no blkio stats: {s}"))
        .iter()
        // (runc leaves out zero fields: a missing minor is 0)
        .filter(|e| {
            let n = |k: &str| e[k].as_u64().unwrap_or(0);
            n("major") == u64::from(major) && n("minor") == u64::from(minor) && e["op"] == "Write"
        })
        .map(|e| e["value"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        written >= 8 << 20,
        "the throttled device {major}:{minor} counted {written} bytes written: {s}"
    );
    // A lower bound: load can only make the write slower, never faster than the rate.
    // (8 MiB at 4 MiB/s is 2 s; blk-throttle lets a first slice through early.)
    assert!(
        took >= Duration::from_millis(1700),
        "8 MiB at 4 MiB/s took {took:?}: {out:?}"
    );
}

#[test]
fn denied_device_cannot_be_opened_even_when_its_node_exists() {
    // The node is made on the host and bound in, so it exists whatever the device rules
    // say about mknod: only the device cgroup stands between the container and 1:11.
    let ctx = TestCtx::new("res-dev");
    let node = ctx.path("kmsg-node");
    host_sh(&format!("mknod -m 666 {} c 1 11", node.display())).assert_ok();
    let script = "test -c /dev/kmsg2; echo node=$?; \
                  head -c1 /dev/kmsg2 >/dev/null 2>&1; echo kmsg=$?; \
                  echo x > /dev/null; echo null=$?";
    let run = |rules: serde_json::Value| {
        let mut b = ctx.bundle();
        b.set("/linux/resources/devices", rules);
        // CAP_SYSLOG: reading /dev/kmsg needs it when dmesg_restrict is set.
        for set in ["bounding", "effective", "permitted"] {
            b.caps(set, &["CAP_SYSLOG", "CAP_DAC_OVERRIDE"]);
        }
        b.add_bind(&node, "/dev/kmsg2", &[]);
        ctx.run_sh(&mut b, script)
    };
    // Control: with 1:11 allowed, the same node opens.
    let allowed = run(json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "r"}
    ]));
    assert!(
        allowed.stdout.contains("node=0") && allowed.stdout.contains("kmsg=0"),
        "control: the bound node must open when allowed: {allowed:?}"
    );
    let denied = run(json!([{"allow": false, "access": "rwm"}]));
    assert!(
        denied.stdout.contains("node=0"),
        "the node is not there: {denied:?}"
    );
    assert!(denied.stdout.contains("null=0"), "{denied:?}");
    assert!(
        denied.stdout.contains("kmsg=1"),
        "a denied device opened: {denied:?}"
    );
}

#[test]
fn paused_container_makes_no_progress_and_resumes() {
    let ctx = TestCtx::new("res-pause");
    let out = ctx.mkdir("out");
    let mut b = ctx.bundle();
    b.add_bind(&out, "/out", &["rbind", "rw"]);
    b.sh("i=0; while true; do i=$((i+1)); echo $i > /out/n; sleep 0.02; done");
    let id = ctx.id("pause");
    ctx.create_and_start(&b, &id);
    let n = || {
        read_lossy(&out.join("n"))
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    assert!(wait_until(Duration::from_secs(5), || n() > 3));
    let pid = ctx.rt.pid(&id);
    ctx.rt.run(&["pause", &id]).assert_ok();
    assert_eq!(ctx.rt.status(&id).as_deref(), Some("paused"));
    // the kernel's word, not only a quiet counter: the init's cgroup is frozen
    let frozen = match cgroup_dir(pid, "freezer") {
        Some(d) if d.join("freezer.state").exists() => read_lossy(&d.join("freezer.state")),
        _ => read_lossy(
            &cgroup_dir(pid, "")
                .expect("a v2 cgroup")
                .join("cgroup.events"),
        ),
    };
    assert!(
        frozen.trim() == "FROZEN" || frozen.lines().any(|l| l == "frozen 1"),
        "paused, but the kernel says {frozen:?}"
    );
    let frozen_at = n();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(n(), frozen_at, "the counter advanced while paused");
    ctx.rt.run(&["resume", &id]).assert_ok();
    assert_eq!(ctx.rt.status(&id).as_deref(), Some("running"));
    assert!(
        wait_until(Duration::from_secs(5), || n() > frozen_at + 3),
        "no progress after resume"
    );
    ctx.rt.run(&["resume", &id]).assert_fails();
}

#[test]
fn update_changes_memory_and_pids_limits_of_a_running_container() {
    let ctx = TestCtx::new("res-update");
    let mut b = ctx.bundle();
    b.set(
        "/linux/resources",
        json!({"memory": {"limit": 64 * 1024 * 1024}, "pids": {"limit": 50}}),
    );
    b.sh("sleep 1000");
    let id = ctx.id("upd");
    ctx.create_and_start(&b, &id);
    let read_back = |ctx: &TestCtx| {
        let s = ctx.rt.run(&["events", "--stats", &id]).json()["data"].clone();
        (
            s["memory"]["usage"]["limit"].as_u64(),
            s["pids"]["limit"].as_u64(),
        )
    };
    if !runtime_is_runc() {
        assert_eq!(read_back(&ctx), (Some(64 * 1024 * 1024), Some(50)));
    }
    ctx.rt
        .run(&["update", "--memory", "33554432", "--pids-limit", "20", &id])
        .assert_ok();
    if !runtime_is_runc() {
        assert_eq!(read_back(&ctx), (Some(32 * 1024 * 1024), Some(20)));
    }
    // The resources JSON on stdin, as containerd passes it.
    let mut cmd = ctx.rt.command(&["update", "--resources", "-", &id]);
    own_group(&mut cmd).stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"pids": {"limit": 30}}"#)
        .unwrap();
    let st = wait_child(&mut child, cmd_timeout());
    if st.is_none() {
        kill_group(&mut child);
    }
    assert!(
        st.is_some_and(|s| s.success()),
        "update --resources -: {st:?}"
    );
    let pids_max: Vec<String> = cgroup_dirs_containing(&id)
        .into_iter()
        .filter(|d| d.join("pids.max").exists())
        .map(|d| read_lossy(&d.join("pids.max")).trim().to_string())
        .collect();
    assert_eq!(pids_max, vec!["30".to_string()]);
}

#[test]
fn codex_unsupported_resources_are_refused_by_name() {
    let ctx = TestCtx::new("res-refuse");
    let mut b = ctx.bundle();
    b.set(
        "/linux/resources/rdma",
        json!({"mlx5_0": {"hcaHandles": 3}}),
    );
    let id = ctx.id("rdma");
    ctx.run(&b, &id, &[])
        .assert_fails()
        .assert_stderr_mentions("linux.resources.rdma");
    assert!(!ctx.rt.root_has_entry(&id));
}
