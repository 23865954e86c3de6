//! CPU shares, cpusets and memory+swap through the API (`docker run`/`update`, docker-py),
//! seen in the container's cgroup files on the host; the resource fields codex-ctr cannot
//! honour refused by name; `docker commit`/`docker diff` (and docker-py's).

use std::path::Path;
use std::process::Command;

use codex_tests::ctr::Ctr;
use codex_tests::*;

use super::harness::*;

/// A limit file of the container whose init is `pid`: the v1 controller's file on a
/// host with v1 controllers, the v2 tree's otherwise.
fn cg(pid: &str, v1: (&str, &str), v2: &str) -> String {
    let pid: i64 = pid.parse().expect("a pid");
    let (ctrl, file) = if cgroup_v2_only() { ("", v2) } else { v1 };
    let dir = cgroup_dir(pid, ctrl).unwrap_or_else(|| panic!("no {ctrl} cgroup for {pid}"));
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

fn shares(pid: &str) -> String {
    cg(pid, ("cpu", "cpu.shares"), "cpu.weight")
}
fn cpus(pid: &str) -> String {
    cg(pid, ("cpuset", "cpuset.cpus"), "cpuset.cpus")
}
/// Memory plus swap in bytes (v2 keeps swap alone: added back to memory.max).
fn memsw(pid: &str) -> String {
    if cgroup_v2_only() {
        let swap = cg(pid, ("", ""), "memory.swap.max");
        let mem: u64 = cg(pid, ("", ""), "memory.max").parse().expect("memory.max");
        return swap
            .parse::<u64>()
            .map(|s| (s + mem).to_string())
            .unwrap_or(swap);
    }
    cg(pid, ("memory", "memory.memsw.limit_in_bytes"), "")
}
/// What `shares` reads for a number of shares (v2: runc's conversion to cpu.weight).
fn shares_file(s: u64) -> String {
    if cgroup_v2_only() {
        (1 + ((s - 2) * 9999) / 262_142).to_string()
    } else {
        s.to_string()
    }
}

#[test]
fn docker_run_and_update_set_cpu_shares_cpusets_and_swap() {
    if !clients(false) {
        return;
    }
    let c = Ctr::new();
    let s = Server::start(&c, &[]);
    let n = std::process::id();
    let (plain, limited) = (format!("plain-{n}"), format!("lim-{n}"));
    // Positive control: without the flags, the kernel's defaults.
    s.docker(&[
        "run",
        "-d",
        "--name",
        &plain,
        "--network",
        "none",
        "-m",
        "64m",
        "busybox",
        "sleep",
        "300",
    ])
    .assert_ok();
    let ppid = stdout_of(&s.docker(&["inspect", "-f", "{{.State.Pid}}", &plain]));
    assert_eq!(shares(&ppid), shares_file(1024));
    let all_cpus = cpus(&ppid);
    assert_ne!(
        all_cpus, "0",
        "a one-CPU host cannot show a cpuset (needs 2 CPUs)"
    );
    assert_ne!(memsw(&ppid), (128u64 << 20).to_string());

    s.docker(&[
        "run",
        "-d",
        "--name",
        &limited,
        "--network",
        "none",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "-m",
        "64m",
        "--memory-swap",
        "128m",
        "busybox",
        "sleep",
        "300",
    ])
    .assert_ok();
    let pid = stdout_of(&s.docker(&["inspect", "-f", "{{.State.Pid}}", &limited]));
    assert_eq!(shares(&pid), shares_file(512));
    assert_eq!(cpus(&pid), "0");
    assert_eq!(memsw(&pid), (128u64 << 20).to_string());
    let hc = "{{.HostConfig.CpuShares}} {{.HostConfig.CpusetCpus}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}";
    assert_eq!(
        stdout_of(&s.docker(&["inspect", "-f", hc, &limited])),
        format!("512 0 {} {}", 64u64 << 20, 128u64 << 20)
    );
    // codex-ctr's own CLI sees the same limits.
    let rec = c.inspect(&limited);
    assert_eq!(rec["limits"]["cpu_shares"], 512, "{rec}");

    // docker update: at once on the running container, and in inspect.
    s.docker(&[
        "update",
        "--cpu-shares",
        "256",
        "--cpuset-cpus",
        "1",
        "--memory-swap",
        "256m",
        &limited,
    ])
    .assert_ok();
    assert_eq!(shares(&pid), shares_file(256));
    assert_eq!(cpus(&pid), "1");
    assert_eq!(memsw(&pid), (256u64 << 20).to_string());
    assert_eq!(
        stdout_of(&s.docker(&["inspect", "-f", hc, &limited])),
        format!("256 1 {} {}", 64u64 << 20, 256u64 << 20)
    );
    // Memory above the swap limit it keeps: refused by name, nothing changed.
    let o = s.docker(&["update", "-m", "512m", &limited]);
    o.assert_fails();
    assert!(o.stderr.contains("memory"), "{}", o.stderr);
    assert_eq!(memsw(&pid), (256u64 << 20).to_string());

    // What codex-ctr cannot honour is a 400 naming the field, and nothing is created.
    for (flags, field) in [
        (vec!["--blkio-weight", "300"], "BlkioWeight"),
        (vec!["--cpu-rt-runtime", "950000"], "CpuRealtimeRuntime"),
        (vec!["--memory-reservation", "32m"], "MemoryReservation"),
        (vec!["--oom-kill-disable", "-m", "64m"], "OomKillDisable"),
        (vec!["--cpuset-cpus", "64"], "CpusetCpus"),
        (vec!["--cpu-shares", "1"], "CpuShares"),
        (vec!["-m", "64m", "--memory-swap", "32m"], "MemorySwap"),
    ] {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend(flags.iter().copied());
        args.extend(["busybox", "true"]);
        let o = s.docker(&args);
        o.assert_fails();
        assert!(o.stderr.contains(field), "{flags:?}: {}", o.stderr);
    }
    let o = s.docker(&["update", "--blkio-weight", "300", &limited]);
    o.assert_fails();
    assert!(o.stderr.contains("BlkioWeight"), "{}", o.stderr);
    assert_eq!(
        stdout_of(&s.docker(&["ps", "-aq"])).lines().count(),
        2,
        "a refused run left a container"
    );
    s.docker(&["rm", "-f", &plain, &limited]).assert_ok();
}

#[test]
fn docker_commit_and_diff_through_the_api() {
    if !clients(false) {
        return;
    }
    let c = Ctr::new();
    let s = Server::start(&c, &[]);
    let n = std::process::id();
    let (fresh, src) = (format!("fresh-{n}"), format!("src-{n}"));
    // Positive control first: a container that changed nothing has no changes.
    s.docker(&[
        "run",
        "-d",
        "--name",
        &fresh,
        "--network",
        "none",
        "busybox",
        "sleep",
        "300",
    ])
    .assert_ok();
    assert_eq!(stdout_of(&s.docker(&["diff", &fresh])), "");
    s.docker(&[
        "run", "-d", "--name", &src, "--network", "none", "busybox", "sh", "-c",
        "echo data > /made; rm /etc/group; echo x >> /etc/passwd; mkdir -p /srv/a; touch /ready; exec sleep 300",
    ])
    .assert_ok();
    assert!(
        wait_until(std::time::Duration::from_secs(20), || s
            .docker(&["exec", &src, "test", "-e", "/ready"])
            .ok()),
        "the container never finished its changes"
    );
    assert_eq!(
        stdout_of(&s.docker(&["diff", &src])),
        "C /etc\nD /etc/group\nC /etc/passwd\nA /made\nA /ready\nA /srv\nA /srv/a"
    );
    // codex-ctr's own diff says the same.
    let o = c.run(&["diff", &src]);
    o.assert_ok();
    assert!(o.stdout.contains("D /etc/group\n"), "{o:?}");

    // docker commit (paused by default), with a change, a comment and an author.
    let id = stdout_of(&s.docker(&[
        "commit",
        "--change",
        "ENV MARK=yes",
        "-m",
        "a note",
        "-a",
        "me <me@x>",
        &src,
        &format!("snap{n}:v1"),
    ]));
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(
        stdout_of(&s.docker(&[
            "image",
            "inspect",
            "-f",
            "{{.Author}}|{{.Comment}}",
            &format!("snap{n}:v1")
        ])),
        "me <me@x>|a note"
    );
    assert_eq!(
        stdout_of(&s.docker(&[
            "ps",
            "--filter",
            &format!("name={src}"),
            "--format",
            "{{.State}}"
        ])),
        "running",
        "the container runs on after a commit"
    );
    let o = s.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &format!("snap{n}:v1"),
        "sh",
        "-c",
        "cat /made; echo $MARK; test -e /etc/group || echo no-group; tail -n 1 /etc/passwd",
    ]);
    assert_eq!(stdout_of(&o), "data\nyes\nno-group\nx");
    // --pause=false, no tag: an untagged image of the same changes.
    let id2 = stdout_of(&s.docker(&["commit", "--pause=false", &src]));
    assert!(id2.starts_with("sha256:") && id2 != id, "{id2}");
    // Errors a client relies on.
    let o = s.docker(&["diff", "nosuch"]);
    o.assert_fails();
    assert!(o.stderr.contains("No such container"), "{}", o.stderr);
    let o = s.docker(&["commit", "nosuch", "x:1"]);
    o.assert_fails();
    assert!(o.stderr.contains("No such container"), "{}", o.stderr);
    let o = s.docker(&["commit", "--change", "RUN true", &src, "bad:1"]);
    o.assert_fails();
    assert!(o.stderr.contains("change"), "{}", o.stderr);
    s.docker(&["rm", "-f", &fresh, &src]).assert_ok();
}

#[test]
fn docker_py_sets_limits_commits_and_diffs() {
    if !clients(true) {
        return;
    }
    let c = Ctr::new();
    let s = Server::start(&c, &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ctr_api/dockerpy_resources.py");
    let tag = format!("{}", std::process::id());
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(&tag)
        .arg(if cgroup_v2_only() { "v2" } else { "v1" })
        .env("DOCKER_HOST", s.host());
    let o = run_command(&mut cmd);
    assert!(
        o.ok() && o.stdout.contains("ALL OK"),
        "docker-py flows failed:\n{}\n{}",
        o.stdout,
        o.stderr
    );
}
