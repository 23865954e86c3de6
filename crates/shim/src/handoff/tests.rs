use super::*;

#[test]
fn shim_arguments_round_trip() {
    let mut a = ShimArgs {
        root: "/var/lib/codex-ctr".into(),
        id: "abc".into(),
        worker: 42,
        ready: 8,
        info: 9,
        stdout: 5,
        stderr: 7,
        log: "/r/containers/abc/container.log".into(),
        rotation: Rotation {
            max_size: 300,
            max_files: 1,
        },
        exe: "/usr/bin/codex-ctr".into(),
        view: None,
        health: None,
        console: None,
        monitor: None,
    };
    assert_eq!(ShimArgs::parse(&a.to_args()), Ok(a.clone()));
    a.monitor = Some(MonitorArgs {
        interval: Duration::from_secs(10),
        history: "/r/containers/abc/usage.ring".into(),
        thresholds: Thresholds::default(),
    });
    assert_eq!(ShimArgs::parse(&a.to_args()), Ok(a.clone()));
    a.view = Some(11);
    a.console = Some(12);
    a.health = Some((Duration::from_secs(1), Duration::from_millis(10_500)));
    a.monitor = Some(MonitorArgs {
        interval: Duration::from_millis(250),
        history: "/r/containers/abc/usage.ring".into(),
        thresholds: Thresholds {
            warn_memory: Some(64 << 20),
            warn_cpu: Some(87.5),
            stop_memory: Some(1 << 30),
        },
    });
    let args = a.to_args();
    assert_eq!(ShimArgs::parse(&args), Ok(a.clone()));
    // The engine's liveness check: the mode and the id are whole arguments.
    assert!(args.iter().any(|x| x == MODE) && args.iter().any(|x| x == "abc"));
    assert!(ShimArgs::parse(&args[..args.len() - 1]).is_err());
    let f = a.finish_argv(&Finish::Failed("x".into()));
    assert_eq!(
        f[..5],
        [
            "/usr/bin/codex-ctr",
            MODE,
            "--root",
            "/var/lib/codex-ctr",
            "abc"
        ]
        .map(OsString::from)
    );
}

#[test]
fn restart_notices_round_trip() {
    for ms in [0, 100, 60_000] {
        let d = Duration::from_millis(ms);
        assert_eq!(decode_restart(&encode_restart(d)), Some(d));
    }
    for bad in [
        &b""[..],
        b"restart \n",
        b"restart 1",
        b"restart x\n",
        b"12\0",
    ] {
        assert_eq!(decode_restart(bad), None, "{bad:?}");
    }
}

#[test]
fn finish_arguments_round_trip() {
    for f in [
        Finish::Exited(Outcome {
            code: 137,
            signal: Some(9),
            timed_out: true,
            memory_stopped: false,
        }),
        Finish::Exited(Outcome {
            code: 137,
            signal: Some(9),
            timed_out: false,
            memory_stopped: true,
        }),
        Finish::Exited(Outcome {
            code: 0,
            signal: None,
            timed_out: false,
            memory_stopped: false,
        }),
        Finish::Failed("writing /x: No space left on device".into()),
    ] {
        let args = f.to_args();
        assert_eq!(args[0], "--finish");
        assert_eq!(Finish::parse(&args[1..]), Ok(f));
    }
    assert!(Finish::parse(&["exited", "x", "0", "0"]).is_err());
    assert!(Finish::parse(&["exited", "1", "0", "0", "0", "0"]).is_err());
    // What a shim of the version before memory stops says.
    assert_eq!(
        Finish::parse(&["exited", "3", "0", "1"]),
        Ok(Finish::Exited(Outcome {
            code: 3,
            signal: None,
            timed_out: true,
            memory_stopped: false,
        }))
    );
}

#[test]
fn a_handover_round_trips() {
    for h in [
        Handover {
            pid: 77,
            procs: Some("/sys/fs/cgroup/pids/c 1/cgroup.procs".into()),
            usage: UsageFiles {
                memory: Some("/sys/fs/cgroup/memory/c/memory.usage_in_bytes".into()),
                cpu: Some("/sys/fs/cgroup/unified/c/cpu.stat".into()),
            },
            timeout: Some(Timeout {
                deadline: Duration::new(12345, 678),
                stop_signal: 15,
                grace: Duration::from_secs(10),
            }),
            pending: [b"par\0tial".to_vec(), b"\xff".to_vec()],
        },
        Handover {
            pid: 1,
            procs: None,
            usage: UsageFiles::default(),
            timeout: None,
            pending: [Vec::new(), Vec::new()],
        },
    ] {
        assert_eq!(Handover::decode(&h.encode()), Some(h));
    }
    assert_eq!(Handover::decode(b""), None);
    // pid 12, no cgroup, no timeout, one pending byte of stdout.
    let head: &[u8] = b"12\0\0\0\0\0\0\0";
    assert_eq!(Handover::decode(&[head, b"1\0", b"0\0"].concat()), None);
    assert_eq!(
        Handover::decode(&[head, b"1\0", b"0\0", b"x"].concat()).map(|h| h.pending),
        Some([b"x".to_vec(), Vec::new()])
    );
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 returned two new fds that nothing else owns.
    unsafe {
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    }
}

// await_worker reaps the worker (by pid), not its `Child`.
#[allow(clippy::zombie_processes)]
fn worker(script: &str, ready_r: OwnedFd, info_w: OwnedFd) -> i32 {
    std::process::Command::new("/bin/sh")
        .args(["-c", script])
        .stdin(ready_r)
        .stdout(info_w)
        .spawn()
        .unwrap()
        .id() as i32
}

#[test]
fn the_worker_speaks_only_after_ready() {
    let (ready_r, ready_w) = pipe();
    let (info_r, info_w) = pipe();
    // Says nothing before the ready byte (head blocks until it comes).
    let w = worker(
        r"head -c1 >/dev/null; printf '4242\000/cg/cgroup.procs\000/cg/memory.current\000\000\000\000\000%s\000%s\000' 0 0",
        ready_r,
        info_w,
    );
    assert_eq!(
        await_worker(ready_w, info_r, w).unwrap(),
        Worker::HandedOver(Handover {
            pid: 4242,
            procs: Some("/cg/cgroup.procs".into()),
            usage: UsageFiles {
                memory: Some("/cg/memory.current".into()),
                cpu: None,
            },
            timeout: None,
            pending: [Vec::new(), Vec::new()],
        })
    );
    for (script, want) in [
        ("exit 0", Worker::Done),
        (
            "printf 'restart 1600\\n'",
            Worker::Restart(Duration::from_millis(1600)),
        ),
        ("exit 1", Worker::Failed),
        (
            "exit 101",
            Worker::Died(format!("{WORKER_DIED}: exit code 101")),
        ),
        (
            "kill -9 $$",
            Worker::Died(format!("{WORKER_DIED}: killed by signal 9")),
        ),
    ] {
        let (ready_r, ready_w) = pipe();
        let (info_r, info_w) = pipe();
        let w = worker(&format!("head -c1 >/dev/null; {script}"), ready_r, info_w);
        assert_eq!(await_worker(ready_w, info_r, w).unwrap(), want);
    }
}
