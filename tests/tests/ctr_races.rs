//! The engine's state under races and lies: `rm -f` against `start`, `volume rm`
//! against a create that mounts the volume, a supervisor's pid taken by another process,
//! an exit nobody recorded, a worker that dies after it started the container.

use std::path::Path;
use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::*;
use serde_json::Value;

/// Processes whose cgroup path names `id` (container cgroups end in the id).
fn processes_in_cgroups_of(id: &str) -> Vec<i64> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
        .filter(|pid| read_lossy(Path::new(&format!("/proc/{pid}/cgroup"))).contains(id))
        .collect()
}

/// The state letter of `/proc/PID/stat` (`None` once it is gone).
fn process_state(pid: i64) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// The start time (field 22) of `/proc/PID/stat`.
fn start_time(pid: i64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// Rewrites a container's state.json as a test that simulates what the kernel or a
/// crash would do (no engine command runs meanwhile).
fn edit_record(c: &Ctr, name: &str, f: impl FnOnce(&mut Value)) {
    let id = c.inspect(name)["id"].as_str().unwrap().to_string();
    let path = c.root.join("containers").join(id).join("state.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// A process that looks like container `id`'s supervisor to anyone reading its
/// command line: `sh -c 'read x' __supervise --root ROOT ID` (the arguments after the
/// script are sh's `$0`...). It blocks in a builtin on a pipe, so killing it leaves no
/// child behind.
fn forged_supervisor(c: &Ctr, id: &str) -> std::process::Child {
    std::process::Command::new("sh")
        .args(["-c", "read x", "__supervise", "--root"])
        .arg(&c.root)
        .arg(id)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn rm_force_racing_start_never_leaves_a_started_container_killed_behind_its_back() {
    let c = Ctr::new();
    for (i, pause_ms) in [400, 150, 20].into_iter().enumerate() {
        let name = format!("r{i}");
        c.run(&["create", "--name", &name, "busybox", "sleep", "1000"])
            .assert_ok();
        let id = c.inspect(&name)["id"].as_str().expect("id").to_string();
        // rm -f has read the record (created, nobody starting it) and pauses before it
        // touches anything; the start claims the container in that window.
        let pause = format!("rm-claim:{pause_ms}");
        let (start, rm) = std::thread::scope(|s| {
            let rm = s.spawn(|| {
                let mut cmd = c.cmd(&["rm", "-f", &name]);
                cmd.env("CODEX_TEST_PAUSE", &pause);
                cmd.output().unwrap()
            });
            std::thread::sleep(Duration::from_millis(pause_ms / 4));
            let start = s.spawn(|| c.run(&["start", &name]));
            (start.join().unwrap(), rm.join().unwrap())
        });
        if rm.status.success() {
            let gone = c.run(&["inspect", &name]);
            assert!(!gone.ok(), "rm -f succeeded but {name} remains: {gone:?}");
            // And nothing of it runs on unrecorded (a removal that let the start through).
            assert!(
                wait_until(Duration::from_secs(5), || processes_in_cgroups_of(&id)
                    .is_empty()),
                "rm -f succeeded but {name}'s processes run on: {:?}",
                processes_in_cgroups_of(&id)
            );
        } else {
            // rm lost to the start: then the start's container must be intact.
            assert!(start.ok(), "both failed: start {start:?} rm {rm:?}");
            let v = c.inspect(&name);
            assert_eq!(v["status"], "running", "rm failed ({rm:?}) and then: {v}");
            assert!(pid_alive(v["pid"].as_i64().unwrap()), "{v}");
            c.run(&["rm", "-f", &name]).assert_ok();
        }
    }
    assert_eq!(c.containers(), 0);
}

#[test]
fn a_recycled_supervisor_pid_neither_blocks_start_nor_passes_as_the_supervisor() {
    let c = Ctr::new();
    c.run(&["create", "--name", "reused", "busybox", "sleep", "1000"])
        .assert_ok();
    let id = c.inspect("reused")["id"].as_str().unwrap().to_string();
    // The pid the record names now belongs to another process, which even looks like a
    // supervisor of this container; the recorded start time is the old process's.
    let mut impostor = forged_supervisor(&c, &id);
    let pid = impostor.id() as i64;
    assert!(wait_until(Duration::from_secs(5), || {
        read_lossy(Path::new(&format!("/proc/{pid}/cmdline"))).contains("__supervise")
    }));
    edit_record(&c, "reused", |v| {
        v["supervisor_pid"] = pid.into();
        v["supervisor_start"] = (start_time(pid) - 1).into();
    });
    let o = c.run(&["start", "reused"]);
    let _ = impostor.kill();
    let _ = impostor.wait();
    o.assert_ok();
    let v = c.inspect("reused");
    assert_eq!(v["status"], "running", "{v}");
    assert_ne!(v["supervisor_pid"].as_i64(), Some(pid), "{v}");
    c.run(&["rm", "-f", "reused"]).assert_ok();

    // A running container whose supervisor died and whose pid went to an impostor: the
    // engine must not take the impostor for its supervisor.
    c.run(&["run", "-d", "--name", "orphan", "busybox", "sleep", "1000"])
        .assert_ok();
    let v = c.inspect("orphan");
    let id = v["id"].as_str().unwrap().to_string();
    let init = v["pid"].as_i64().unwrap();
    let sup = v["supervisor_pid"].as_i64().unwrap();
    // SAFETY: kill(2) with integers; `sup` is this test's supervisor, `init` its init.
    unsafe {
        libc::kill(sup as i32, libc::SIGKILL);
        libc::kill(init as i32, libc::SIGKILL);
    }
    assert!(wait_until(Duration::from_secs(10), || !pid_alive(sup)
        && !pid_alive(init)));
    let mut impostor = forged_supervisor(&c, &id);
    let pid = impostor.id() as i64;
    edit_record(&c, "orphan", |v| {
        v["supervisor_pid"] = pid.into();
        v["supervisor_start"] = (start_time(pid) + 5).into();
    });
    let v = c.inspect("orphan");
    let _ = impostor.kill();
    let _ = impostor.wait();
    assert_eq!(
        v["status"], "exited",
        "the impostor passed as supervisor: {v}"
    );
    assert!(v["exit_code"].is_null(), "{v}");
}

#[test]
fn an_exit_nobody_recorded_is_unknown_never_zero() {
    let c = Ctr::new();
    c.run(&["run", "-d", "--name", "lost", "busybox", "sleep", "1000"])
        .assert_ok();
    let v = c.inspect("lost");
    let (sup, init) = (
        v["supervisor_pid"].as_i64().unwrap(),
        v["pid"].as_i64().unwrap(),
    );
    // SAFETY: kill(2) with integers; this test's supervisor and init.
    unsafe {
        libc::kill(sup as i32, libc::SIGKILL);
        libc::kill(init as i32, libc::SIGKILL);
    }
    assert!(wait_until(Duration::from_secs(10), || !pid_alive(sup)
        && !pid_alive(init)));
    let w = c.run(&["wait", "lost"]);
    w.assert_code(125);
    assert!(w.stdout.trim().is_empty(), "a code was made up: {w:?}");
    assert!(w.stderr.contains("unknown"), "{w:?}");
    let v = c.inspect("lost");
    assert_eq!(v["status"], "exited");
    assert!(v["exit_code"].is_null(), "{v}");
    // Control: a recorded exit is reported as it was.
    c.run(&[
        "run", "-d", "--name", "known", "busybox", "sh", "-c", "exit 3",
    ])
    .assert_ok();
    let w = c.run(&["wait", "known"]);
    w.assert_ok();
    assert_eq!(w.stdout.trim(), "3");
}

/// Runs a container whose supervisor's worker is SIGKILLed at `point` (a debug-build
/// hook), and checks nothing of it runs on while the record says why it failed.
fn worker_dies_at(point: &str) {
    let c = Ctr::new();
    c.run(&["create", "--name", "w", "busybox", "sleep", "1000"])
        .assert_ok();
    let id = c.inspect("w")["id"].as_str().unwrap().to_string();
    let o = c
        .cmd(&["start", "w"])
        .env("CODEX_TEST_DIE", point)
        .output()
        .unwrap();
    // Either way the start cannot have been reported as a success that then vanished.
    let settled = || {
        let v = c.inspect("w");
        v["status"] == "failed" && v["supervisor_pid"].is_null()
    };
    assert!(
        wait_until(Duration::from_secs(15), settled),
        "{point}: start said {o:?}; record: {}",
        c.inspect("w")
    );
    let v = c.inspect("w");
    let error = v["error"].as_str().unwrap_or_default();
    assert!(error.contains("worker"), "{point}: {v}");
    // Killed processes may stay zombies until the supervisor that adopted them ends.
    let running = || {
        processes_in_cgroups_of(&id)
            .into_iter()
            .filter(|p| process_state(*p).is_some_and(|s| s != 'Z'))
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(10), || running().is_empty()),
        "{point}: processes run on unsupervised: {:?}",
        running()
    );
    // It can be started again, and then runs.
    c.run(&["start", "w"]).assert_ok();
    assert_eq!(c.inspect("w")["status"], "running");
    c.run(&["rm", "-f", "w"]).assert_ok();
}

#[test]
fn codex_worker_killed_after_starting_the_container_leaves_nothing_running() {
    worker_dies_at("worker-started");
}

#[test]
fn codex_worker_killed_after_recording_running_leaves_nothing_running() {
    worker_dies_at("worker-recorded");
}

#[test]
fn codex_worker_killed_once_it_called_for_the_shim_leaves_nothing_running() {
    // The container runs past the worker's first moments: the supervisor is executing
    // the shim, which finds the worker dead instead of a handover.
    worker_dies_at("worker-called");
}

#[test]
fn volume_rm_racing_a_create_that_mounts_it_never_deletes_a_used_volume() {
    let c = Ctr::new();
    for (i, pause_ms) in [400, 100].into_iter().enumerate() {
        let vol = format!("v{i}");
        let name = format!("c{i}");
        let spec = format!("{vol}:/data");
        c.run(&["volume", "create", &vol]).assert_ok();
        // volume rm has counted no users and pauses; a container that mounts the
        // volume is created in that window.
        let pause = format!("volume-rm:{pause_ms}");
        let (run, rm) = std::thread::scope(|s| {
            let rm = s.spawn(|| {
                let mut cmd = c.cmd(&["volume", "rm", &vol]);
                cmd.env("CODEX_TEST_PAUSE", &pause);
                cmd.output().unwrap()
            });
            std::thread::sleep(Duration::from_millis(pause_ms / 4));
            let run = s.spawn(|| {
                c.run(&[
                    "run",
                    "-d",
                    "--name",
                    &name,
                    "-v",
                    &spec,
                    "busybox",
                    "sh",
                    "-c",
                    "touch /data/alive && exec sleep 1000",
                ])
            });
            (run.join().unwrap(), rm.join().unwrap())
        });
        run.assert_ok();
        // The container's volume exists, is recorded, and is the one it writes to.
        let info = c.run(&["volume", "inspect", &vol]);
        assert!(
            info.ok(),
            "rm {rm:?} left {name} with no volume record: {info:?}"
        );
        let data = c.root.join("volumes").join(&vol).join("_data");
        assert!(
            wait_until(Duration::from_secs(10), || data.join("alive").exists()),
            "rm {rm:?}: the container's volume data is not at {}",
            data.display()
        );
        assert_eq!(c.inspect(&name)["status"], "running");
        // And now it is in use.
        assert!(!c.run(&["volume", "rm", &vol]).ok());
        c.run(&["rm", "-f", &name]).assert_ok();
    }
}
