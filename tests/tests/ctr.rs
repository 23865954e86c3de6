//! `codex-ctr` end to end: the engine's CLI on real containers. Each test has its own
//! engine root (CODEX_CTR_ROOT) with the busybox image imported.

use codex_tests::ctr::Ctr;
use codex_tests::*;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn attached_run_streams_output_and_exits_with_the_containers_code() {
    let c = Ctr::new();
    let o = c.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    o.assert_code(3);
    assert_eq!(o.stdout, "out\n");
    assert!(o.stderr.contains("err"), "{o:?}");
    assert_eq!(c.containers(), 0, "--rm left the container");
}

#[test]
fn detached_container_outlives_the_cli_with_its_logs_and_exit_code() {
    let c = Ctr::new();
    let o = c.run(&[
        "run",
        "-d",
        "--name",
        "bg",
        "busybox",
        "sh",
        "-c",
        "echo started; sleep 1; echo done; exit 7",
    ]);
    o.assert_ok();
    assert_eq!(o.stdout.trim().len(), 64, "run -d prints the id: {o:?}");
    assert_eq!(c.inspect("bg")["status"], "running");
    let w = c.run(&["wait", "bg"]);
    w.assert_ok();
    assert_eq!(w.stdout.trim(), "7");
    let logs = c.run(&["logs", "bg"]);
    assert_eq!(logs.stdout, "started\ndone\n");
    let v = c.inspect("bg");
    assert_eq!(v["status"], "exited");
    assert_eq!(v["exit_code"], 7);
    assert!(v["finished_at"].is_string() && v["started_at"].is_string());
    c.run(&["rm", "bg"]).assert_ok();
    assert_eq!(c.containers(), 0);
}

#[test]
fn stop_of_a_process_that_ignores_sigterm_takes_the_timeout_then_kills() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; echo ready; while true; do sleep 0.1; done",
    ])
    .assert_ok();
    assert!(wait_until(Duration::from_secs(10), || c
        .run(&["logs", "stubborn"])
        .stdout
        .contains("ready")));
    let t = Instant::now();
    c.run(&["stop", "-t", "2", "stubborn"]).assert_ok();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "stop returned after {took:?}"
    );
    // generous: holds at load 8 (2 s of grace, then the kill)
    assert!(took < Duration::from_secs(30), "stop took {took:?}");
    let v = c.inspect("stubborn");
    assert_eq!(v["status"], "stopped");
    assert_eq!(v["exit_code"], 137);
}

#[test]
fn ps_lists_running_and_all_and_names_stay_unique() {
    let c = Ctr::new();
    c.run(&["run", "-d", "--name", "one", "busybox", "sleep", "100"])
        .assert_ok();
    c.run(&["create", "--name", "two", "busybox", "true"])
        .assert_ok();
    let ps = c.run(&["ps"]);
    assert!(
        ps.stdout.contains("one") && !ps.stdout.contains("two"),
        "{ps:?}"
    );
    let all = c.run(&["ps", "-a", "--format", "json"]);
    let names: Vec<String> = all
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let dup = c.run(&["create", "--name", "one", "busybox", "true"]);
    assert_eq!(dup.code(), Some(125));
    assert!(dup.stderr.contains("already in use"), "{dup:?}");
    c.run(&["rm", "-f", "one", "two"]).assert_ok();
    assert_eq!(c.containers(), 0);
}

#[test]
fn minimal_isolation_runs_a_host_script_with_a_memory_limit() {
    let c = Ctr::new();
    // the host's hierarchy, as the runtime would find it (v1 memory controller or v2)
    let limit_file = if cgroup_v2_only() {
        "/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)/memory.max".to_string()
    } else {
        let mount = cgroup_dir_in(&cgroup_mounts(), "memory", "/").expect("a memory hierarchy");
        format!(
            "{}$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)/memory.limit_in_bytes",
            mount.display()
        )
    };
    let script = format!("cat {limit_file}; hostname");
    let o = c.run(&[
        "run",
        "--rm",
        "--isolation",
        "minimal",
        "--memory",
        "32m",
        "/bin/sh",
        "-c",
        &script,
    ]);
    o.assert_ok();
    let mut lines = o.stdout.lines();
    assert_eq!(lines.next(), Some("33554432"), "{o:?}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        lines.next(),
        Some(host.trim()),
        "minimal keeps the host's hostname"
    );
}

#[test]
fn strict_isolation_has_a_readonly_root_no_capabilities_and_a_user_namespace() {
    let c = Ctr::new();
    let o = c.run(&[
        "run", "--rm", "--isolation", "strict", "busybox", "sh", "-c",
        "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; touch /x 2>&1; touch /tmp/ok && echo tmp-writable; cat /proc/self/uid_map",
    ]);
    o.assert_ok();
    assert!(o.stdout.contains("CapEff:\t0000000000000000"), "{o:?}");
    assert!(o.stdout.contains("NoNewPrivs:\t1"), "{o:?}");
    assert!(o.stdout.contains("Read-only file system"), "{o:?}");
    assert!(o.stdout.contains("tmp-writable"), "{o:?}");
    assert!(
        o.stdout.contains("100000"),
        "container root must not be host root: {o:?}"
    );
}

#[test]
fn volumes_env_and_workdir_reach_the_container() {
    let c = Ctr::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in.txt"), "from-host").unwrap();
    let rw = format!("{}:/data", host.path().display());
    let ro = format!("{}:/ro:ro", host.path().display());
    let o = c.run(&[
        "run",
        "--rm",
        "-v",
        &rw,
        "-v",
        &ro,
        "-e",
        "GREETING=hi",
        "-w",
        "/data",
        "busybox",
        "sh",
        "-c",
        "cat in.txt; echo; echo $GREETING; pwd; echo written > out.txt; touch /ro/x 2>&1 || true",
    ]);
    o.assert_ok();
    assert!(o.stdout.starts_with("from-host\nhi\n/data\n"), "{o:?}");
    assert!(o.stdout.contains("Read-only file system"), "{o:?}");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out.txt")).unwrap(),
        "written\n"
    );
}

#[test]
fn bad_inputs_fail_clearly_and_leave_nothing_behind() {
    let c = Ctr::new();
    let cases: &[(&[&str], &str, i32)] = &[
        (&["run", "--rm", "nosuchimage", "true"], "nosuchimage", 125),
        (
            &["run", "--rm", "-v", "relative:dir", "busybox", "true"],
            "volumes[0]",
            125,
        ),
        (
            &["run", "--rm", "--memory", "12x", "busybox", "true"],
            "memory",
            125,
        ),
        (
            &["run", "--rm", "--name", "-bad", "busybox", "true"],
            "name",
            125,
        ),
        (
            &["run", "--rm", "busybox", "no-such-command"],
            "executable file not found",
            127,
        ),
    ];
    for (args, needle, code) in cases {
        let o = c.run(args);
        assert_eq!(o.code(), Some(*code), "{o:?}");
        assert!(o.stderr.contains(needle), "{needle}: {o:?}");
        assert!(o.stderr.starts_with("codex-ctr: "), "{o:?}");
        assert_eq!(c.containers(), 0, "{args:?} left a container");
    }
    let o = c.run(&["logs", "nonexistent"]);
    assert!(!o.ok() && o.stderr.contains("not found"), "{o:?}");
}

#[test]
fn image_ls_and_rm_refuse_an_image_in_use() {
    let c = Ctr::new();
    let ls = c.run(&["image", "ls", "--format", "json"]);
    assert_eq!(ls.json()[0]["name"], "busybox");
    c.run(&["create", "--name", "user", "busybox", "true"])
        .assert_ok();
    let rm = c.run(&["image", "rm", "busybox"]);
    assert!(!rm.ok(), "an image in use was removed: {rm:?}");
    c.run(&["rm", "user"]).assert_ok();
    c.run(&["image", "rm", "busybox"]).assert_ok();
    assert_eq!(
        c.run(&["image", "ls", "--format", "json"]).json(),
        serde_json::json!([])
    );
}

#[test]
fn exec_pause_unpause_restart_and_stats_work_on_a_running_container() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "svc",
        "-l",
        "tier=web",
        "--memory",
        "64m",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "while true; do sleep 0.1; done",
    ])
    .assert_ok();
    let e = c.run(&[
        "exec",
        "-e",
        "X=42",
        "-w",
        "/tmp",
        "svc",
        "sh",
        "-c",
        "echo $X $(pwd); exit 4",
    ]);
    e.assert_code(4);
    assert_eq!(e.stdout, "42 /tmp\n");
    c.run(&["pause", "svc"]).assert_ok();
    assert_eq!(c.inspect("svc")["status"], "paused");
    let paused = c.run(&["ps", "--filter", "status=paused", "-q"]);
    assert_eq!(paused.stdout.lines().count(), 1, "{paused:?}");
    c.run(&["unpause", "svc"]).assert_ok();
    assert_eq!(c.inspect("svc")["status"], "running");
    let s = c.run(&["stats", "--no-stream", "--format", "json", "svc"]);
    let s = &s.json()[0];
    assert_eq!(s["memory_limit"], 64 << 20);
    assert!(s["pids"].as_u64().unwrap() >= 1);
    c.run(&["restart", "-t", "1", "svc"]).assert_ok();
    let v = c.inspect("svc");
    assert_eq!(v["status"], "running");
    assert_eq!(v["restart_count"], 1);
    let by_label = c.run(&["ps", "--filter", "label=tier=web", "--format", "json"]);
    assert_eq!(by_label.json().as_array().unwrap().len(), 1);
    let none = c.run(&["ps", "--filter", "label=tier=db", "-q"]);
    assert_eq!(none.stdout, "");
}

#[test]
fn timeout_stops_a_long_running_container_and_says_so() {
    let c = Ctr::new();
    let t = Instant::now();
    let o = c.run(&[
        "run",
        "--name",
        "slow",
        "--timeout",
        "1s",
        "--stop-timeout",
        "1",
        "busybox",
        "sleep",
        "60",
    ]);
    o.assert_code(124);
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let v = c.inspect("slow");
    assert_eq!(v["exit_code"], 124);
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{v}"
    );
}

#[test]
fn detached_rm_container_removes_itself_and_logs_follow_ends_with_the_container() {
    let c = Ctr::new();
    c.run(&["run", "-d", "--rm", "busybox", "true"]).assert_ok();
    assert!(
        wait_until(Duration::from_secs(10), || c.containers() == 0),
        "a detached --rm container stayed"
    );
    c.run(&[
        "run",
        "-d",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.2; done",
    ])
    .assert_ok();
    let f = c.run(&["logs", "-f", "talker"]);
    f.assert_ok();
    assert_eq!(f.stdout, "line1\nline2\nline3\n");
    let tail = c.run(&["logs", "--tail", "1", "talker"]);
    assert_eq!(tail.stdout, "line3\n");
}

#[test]
fn version_and_info_describe_the_engine_and_host() {
    let c = Ctr::new();
    let v = c.run(&["version"]);
    assert!(v.stdout.starts_with("codex-ctr version "), "{v:?}");
    let i = c.run(&["info"]);
    let info = i.json();
    // "v2" exactly when the host has no v1 controller (the VM tier's pure v2 hierarchy)
    let kind = info["cgroup_version"].as_str().unwrap();
    if cgroup_v2_only() {
        assert_eq!(kind, "v2", "{info}");
    } else {
        assert!(["v1", "hybrid"].contains(&kind), "{info}");
    }
    assert_eq!(info["images"], 1);
    assert_eq!(info["root"], c.root.to_string_lossy().as_ref());
}

#[test]
fn a_killed_supervisor_is_reported_and_rm_force_cleans_everything() {
    let c = Ctr::new();
    c.run(&["run", "-d", "--name", "orphan", "busybox", "sleep", "100"])
        .assert_ok();
    let v = c.inspect("orphan");
    let sup = v["supervisor_pid"].as_i64().expect("a supervisor pid") as i32;
    let id = v["id"].as_str().unwrap().to_string();
    // positive control for the leftover walk at the end: it finds the running container's
    assert!(
        !cgroup_dirs_containing(&id).is_empty(),
        "control: no cgroup named after {id} while it runs"
    );
    // SAFETY: kill with integer arguments; the pid is this test's container's supervisor.
    unsafe { libc::kill(sup, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(5), || !pid_alive(
        sup as i64
    )));
    let v = c.inspect("orphan");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("supervisor died"),
        "{v}"
    );
    c.run(&["rm", "-f", "orphan"]).assert_ok();
    assert_eq!(c.containers(), 0);
    assert!(
        cgroup_dirs_containing(&id).is_empty(),
        "{:?}",
        cgroup_dirs_containing(&id)
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "a mount of the container is left");
}

#[test]
fn fifty_concurrent_creates_lose_nothing_and_names_stay_unique() {
    let c = Ctr::new();
    let mut children = Vec::new();
    for i in 0..50 {
        let name = format!("n{i}");
        let mut cmd = c.cmd(&["create", "--name", &name, "busybox", "true"]);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        children.push(cmd.spawn().unwrap());
    }
    for _ in 0..10 {
        let mut cmd = c.cmd(&["create", "--name", "contested", "busybox", "true"]);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        children.push(cmd.spawn().unwrap());
    }
    let outs: Vec<_> = children
        .into_iter()
        .map(|ch| ch.wait_with_output().unwrap())
        .collect();
    assert!(
        outs[..50].iter().all(|o| o.status.success()),
        "a distinct-name create failed"
    );
    let contested: Vec<_> = outs[50..].iter().collect();
    assert_eq!(
        contested.iter().filter(|o| o.status.success()).count(),
        1,
        "exactly one winner"
    );
    for o in contested.iter().filter(|o| !o.status.success()) {
        assert!(String::from_utf8_lossy(&o.stderr).contains("already in use"));
    }
    let all = c.run(&["ps", "-a", "--format", "json"]).json();
    assert_eq!(all.as_array().unwrap().len(), 51);
    assert_eq!(c.containers(), 51);
}

#[test]
fn the_supervisor_runs_from_a_read_only_view_of_the_binary() {
    // The container's init is a fork of the supervisor (CVE-2019-5736 class): its
    // executable must not be the host's writable codex-ctr file.
    let c = Ctr::new();
    c.run(&["run", "-d", "--name", "guarded", "busybox", "sleep", "30"])
        .assert_ok();
    // The long-lived supervisor: a `run`'s forked one runs the command's binary, as the
    // command does, until its worker hands the container over to the shim.
    let sup = c.handed_over_supervisor("guarded");
    // Opening a running binary for writing fails with ETXTBSY whatever it is, so that
    // proves nothing. What keeps a container from writing through /proc/PID/exe once the
    // supervisor has exited is that the file it leads to cannot be written: a sealed memfd
    // or a file on a read-only mount (what codex-runtime's selfclone checks).
    assert!(
        !exe_is_unwritable(std::process::id() as i64),
        "control: this test's own binary (in target/) must look writable"
    );
    let exe = std::fs::read_link(format!("/proc/{sup}/exe")).unwrap();
    assert!(
        exe_is_unwritable(sup),
        "the supervisor's executable ({}) can be written",
        exe.display()
    );
    let host = workspace_dir().join("target/debug/codex-ctr");
    assert_ne!(exe, host, "the supervisor runs the host binary itself");
}

/// Whether the file `/proc/PID/exe` leads to is a write-sealed memfd or on a read-only
/// mount.
fn exe_is_unwritable(pid: i64) -> bool {
    let f = std::fs::File::open(format!("/proc/{pid}/exe")).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    // SAFETY: F_GET_SEALS on a valid fd; a regular file answers EINVAL.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    if seals >= 0 && seals & libc::F_SEAL_WRITE != 0 {
        return true;
    }
    // SAFETY: a zeroed statvfs is a valid out-parameter for fstatvfs on a valid fd.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstatvfs(fd, &mut st) };
    assert_eq!(
        rc,
        0,
        "fstatvfs /proc/{pid}/exe: {}",
        std::io::Error::last_os_error()
    );
    st.f_flag & libc::ST_RDONLY != 0
}

#[test]
fn cp_copies_in_and_out_and_never_follows_a_symlink_out_of_the_rootfs() {
    let c = Ctr::new();
    let host = tempfile::tempdir().unwrap();
    let secret = host.path().join("secret");
    std::fs::write(&secret, "HOST-SECRET").unwrap();
    let script = format!("mkdir -p /out/sub; echo result > /out/r.json; echo deep > /out/sub/d; ln -s {} /out/escape", secret.display());
    c.run(&["run", "--name", "tool", "busybox", "sh", "-c", &script])
        .assert_ok();
    let dst = host.path().join("copy");
    std::fs::create_dir(&dst).unwrap();
    c.run(&["cp", "tool:/out", dst.to_str().unwrap()])
        .assert_ok();
    assert_eq!(
        std::fs::read_to_string(dst.join("out/r.json")).unwrap(),
        "result\n"
    );
    assert_eq!(
        std::fs::read_to_string(dst.join("out/sub/d")).unwrap(),
        "deep\n"
    );
    assert!(std::fs::symlink_metadata(dst.join("out/escape"))
        .unwrap()
        .file_type()
        .is_symlink());
    // Following the link resolves inside the container, where there is no such file.
    let esc = c.run(&[
        "cp",
        "tool:/out/escape",
        host.path().join("leak").to_str().unwrap(),
    ]);
    assert!(!esc.ok(), "{esc:?}");
    assert!(!host.path().join("leak").exists());
    let input = host.path().join("in.txt");
    std::fs::write(&input, "hello").unwrap();
    c.run(&["cp", input.to_str().unwrap(), "tool:/in.txt"])
        .assert_ok();
    let tar = host.path().join("rootfs.tar");
    c.run(&["export", "--rootfs", "-o", tar.to_str().unwrap(), "tool"])
        .assert_ok();
    let list = run_command(Command::new("tar").arg("tf").arg(&tar));
    list.assert_ok();
    let names = list.stdout.clone();
    assert!(
        names
            .lines()
            .any(|l| l.trim_start_matches("./") == "in.txt"),
        "{names}"
    );
    let state = host.path().join("state.json");
    c.run(&["export", "-o", state.to_str().unwrap(), "tool"])
        .assert_ok();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(v["name"], "tool");
    let pruned = c.run(&["prune"]);
    assert_eq!(pruned.stdout, "tool\n");
    assert_eq!(c.containers(), 0);
}

#[test]
fn a_copy_racing_a_start_never_unmounts_the_running_containers_rootfs() {
    let c = Ctr::new();
    let host = tempfile::tempdir().unwrap();
    c.run(&["create", "--name", "race", "busybox", "sleep", "100"])
        .assert_ok();
    // A big file keeps the export busy long enough for the start to land inside it.
    let big = host.path().join("big");
    std::fs::write(&big, vec![7u8; 96 << 20]).unwrap();
    c.run(&["cp", big.to_str().unwrap(), "race:/big"])
        .assert_ok();
    std::fs::remove_file(&big).unwrap();
    for round in 0..5 {
        // `export --rootfs` of a stopped container mounts its rootfs for a while; the
        // start mounts it too. Whatever the order, the running container's host-side
        // view must stay mounted afterwards.
        let tar = host.path().join(format!("r{round}.tar"));
        let mut export = c
            .cmd(&["export", "--rootfs", "-o", tar.to_str().unwrap(), "race"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(5 + round * 10));
        c.run(&["start", "race"]).assert_ok();
        let _ = export.wait();
        let out = host.path().join(format!("passwd{round}"));
        c.run(&["cp", "race:/etc/passwd", out.to_str().unwrap()])
            .assert_ok();
        assert!(
            std::fs::read_to_string(&out).unwrap().contains("root:"),
            "round {round}: the running container's rootfs is not mounted"
        );
        c.run(&["stop", "-t", "0", "race"]).assert_ok();
    }
}
