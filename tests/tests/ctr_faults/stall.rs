//! A CLI with `RLIMIT_NOFILE` 32, and a supervisor stopped with SIGSTOP for 5 s.

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use codex_tests::ctr::Ctr;
use codex_tests::*;

use crate::{assert_ps_truthful, assert_records_whole, run_bounded, run_within};

const LIMIT: Duration = Duration::from_secs(30);

/// `cmd` with its soft and hard `RLIMIT_NOFILE` set to `n` before it execs.
fn with_nofile(mut cmd: std::process::Command, n: u64) -> std::process::Command {
    // SAFETY: setrlimit is async-signal-safe; the closure touches no shared state.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Runs `args` limited to `n` fds: it works, or fails with a message (never a panic, a
/// hang or a signal).
fn limited(c: &Ctr, args: &[&str], n: u64) -> Out {
    let o = run_bounded(with_nofile(c.cmd(args), n), LIMIT)
        .unwrap_or_else(|| panic!("{args:?} with {n} fds hung"));
    assert!(o.code().is_some(), "{args:?} with {n} fds died: {o:?}");
    assert!(!o.stderr.contains("panicked"), "{o:?}");
    if !o.ok() {
        assert!(o.stderr.starts_with("codex-ctr: "), "{o:?}");
    }
    o
}

#[test]
fn cli_with_32_file_descriptors_works_or_says_why() {
    let c = Ctr::new();
    // The control: the limit is real (a shell under it cannot open fd 40).
    let mut sh = std::process::Command::new("sh");
    sh.args(["-c", "ulimit -n; exec 40</dev/null && echo opened"]);
    let o = run_bounded(with_nofile(sh, 32), LIMIT).unwrap();
    assert!(
        o.stdout.starts_with("32\n") && !o.stdout.contains("opened"),
        "{o:?}"
    );

    for n in [32, 12] {
        let name = format!("fd{n}");
        let mut outcomes = Vec::new();
        let script = "echo hello; exec sleep 1000";
        let run = ["run", "-d", "--name", &name, "busybox", "sh", "-c", script];
        for args in [
            &run[..],
            &["ps", "-a"],
            &["logs", &name],
            &["exec", &name, "echo", "from-exec"],
            &["run", "--rm", "busybox", "echo", "foreground"],
            &["rm", "-f", &name],
        ] {
            let o = limited(&c, args, n);
            if n == 32 {
                // 32 is enough for every command: a failure here is a bug, not a limit.
                o.assert_ok();
            }
            outcomes.push((args[0], o.ok()));
            assert_records_whole(&c.root);
            assert_ps_truthful(&c);
        }
        eprintln!("RLIMIT_NOFILE {n}: {outcomes:?}");
        // Whatever failed under the limit, the engine works without it.
        run_within(&c, &["rm", "-f", &name], LIMIT);
        assert_eq!(assert_ps_truthful(&c).len(), 0);
    }
    run_within(&c, &["run", "--rm", "busybox", "true"], LIMIT).assert_ok();
}

/// SIGCONTs the stopped supervisors when dropped, even if the test failed.
struct Stopped(Vec<i64>);

impl Drop for Stopped {
    fn drop(&mut self) {
        for &p in &self.0 {
            // SAFETY: kill(2) with integers, to this test's own supervisors.
            unsafe { libc::kill(p as i32, libc::SIGCONT) };
        }
    }
}

/// The parent of `pid` (field 4 of `/proc/PID/stat`).
fn parent(pid: i64) -> Option<i64> {
    let s = read_lossy(std::path::Path::new(&format!("/proc/{pid}/stat")));
    let rest = s.rsplit_once(')')?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The state letter of `/proc/PID/stat`.
fn state(pid: i64) -> char {
    let s = read_lossy(std::path::Path::new(&format!("/proc/{pid}/stat")));
    let rest = s
        .rsplit_once(')')
        .map(|(_, r)| r.trim_start())
        .unwrap_or("");
    rest.chars().next().unwrap_or('?')
}

#[test]
fn a_stopped_supervisor_holds_no_command_beyond_its_timeout() {
    let c = Ctr::new();
    let mut sups = Vec::new();
    for n in ["talker", "stopme", "killme"] {
        let script = "echo up; trap 'exit 7' TERM; sleep 1000 & wait";
        let run = ["run", "-d", "--name", n, "busybox", "sh", "-c", script];
        run_within(&c, &run, LIMIT).assert_ok();
        let v = c.inspect(n);
        let (init, sup) = (
            v["pid"].as_i64().unwrap(),
            v["supervisor_pid"].as_i64().unwrap(),
        );
        // The supervisor's worker reaps the init for its first moments: stop the
        // supervisor once it is the init's parent, the one that records its exit.
        let adopted = || parent(init) == Some(sup);
        assert!(wait_until(Duration::from_secs(10), adopted), "{v}");
        sups.push(sup);
    }
    let stopped = Stopped(sups.clone());
    for &p in &stopped.0 {
        // SAFETY: kill(2) with integers, to this test's own supervisors.
        unsafe { libc::kill(p as i32, libc::SIGSTOP) };
    }
    // The control: they are really stopped.
    assert!(wait_until(Duration::from_secs(5), || sups
        .iter()
        .all(|&p| state(p) == 'T')));
    let t0 = Instant::now();
    let quick = Duration::from_secs(3);
    run_within(&c, &["ps", "-a"], quick).assert_ok();
    assert_eq!(c.inspect("talker")["status"], "running");
    let logs = run_within(&c, &["logs", "talker"], quick);
    assert_eq!(logs.stdout, "up\n", "{logs:?}");
    // stop --time 1 and rm -f kill the container within their timeouts; the record
    // cannot say so before the supervisor runs again, and they say that.
    let bound = Duration::from_secs(6);
    let stop = run_within(&c, &["stop", "--time", "1", "stopme"], bound);
    let rm = run_within(&c, &["rm", "-f", "killme"], bound);
    for o in [&stop, &rm] {
        assert!(o.stderr.contains("not recorded yet"), "{o:?}");
        assert!(o.stderr.contains("is stopped"), "{o:?}");
    }
    // wait has no timeout of its own: it returns once the exit is recorded, so here it
    // must still be waiting when we give up on it.
    let wait = run_bounded(c.cmd(&["wait", "stopme"]), Duration::from_secs(1));
    assert!(wait.is_none(), "wait made up an exit: {wait:?}");
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(12), "{took:?}");
    // SIGCONT after 5 s of stop, then everything agrees.
    std::thread::sleep(Duration::from_secs(5).saturating_sub(t0.elapsed()));
    drop(stopped);
    let recorded = |name: &str, status: &str| {
        let v = c.inspect(name);
        v["status"] == status && v["supervisor_pid"].is_null()
    };
    let agreed = wait_until(Duration::from_secs(10), || {
        recorded("stopme", "stopped") && recorded("killme", "stopped")
    });
    assert!(agreed, "{} {}", c.inspect("stopme"), c.inspect("killme"));
    assert_eq!(c.inspect("stopme")["exit_code"], 7);
    let w = run_within(&c, &["wait", "stopme"], quick);
    assert_eq!(w.stdout.trim(), "7", "{w:?}");
    run_within(&c, &["rm", "-f", "killme"], quick).assert_ok();
    assert!(
        !c.run(&["inspect", "killme"]).ok(),
        "rm -f said ok but it remains"
    );
    assert_eq!(c.inspect("talker")["status"], "running");
    assert_records_whole(&c.root);
    assert_eq!(assert_ps_truthful(&c).len(), 2);
    run_within(&c, &["rm", "-f", "talker", "stopme"], LIMIT).assert_ok();
    for p in sups {
        assert!(wait_until(Duration::from_secs(10), || !pid_alive(p)));
    }
}
