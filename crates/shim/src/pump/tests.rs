use super::*;
use crate::log::Rotation;
use std::os::fd::FromRawFd;

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 returned two new fds that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

// The pump under test reaps the child (by pid), not its `Child`.
#[allow(clippy::zombie_processes)]
fn spawn(script: &str, out: &OwnedFd, err: &OwnedFd) -> i32 {
    let child = std::process::Command::new("/bin/sh")
        .args(["-c", script])
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap();
    child.id() as i32
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn output_is_logged_and_the_exit_code_returned() {
    let dir = std::env::temp_dir().join(format!("codex-shim-pump-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("a.log");
    let _ = std::fs::remove_file(&path);
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let pid = spawn("echo hi; echo oops >&2; exit 3", &out_w, &err_w);
    drop((out_w, err_w));
    let mut log = LogWriter::open(&path, Rotation::default()).unwrap();
    let o = pump(&mut log, [out_r, err_r], pid, None, &mut |_| {}, None, None).unwrap();
    log.flush().unwrap();
    assert_eq!(
        o,
        Outcome {
            code: 3,
            signal: None,
            timed_out: false,
            memory_stopped: false,
        }
    );
    let l = lines(&path);
    assert_eq!(l.len(), 2, "{l:?}");
    assert!(l
        .iter()
        .any(|x| x.contains(r#""stream":"stdout","log":"hi""#)));
    assert!(l
        .iter()
        .any(|x| x.contains(r#""stream":"stderr","log":"oops""#)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_timeout_sends_the_stop_signal_then_sigkill() {
    let dir = std::env::temp_dir().join(format!("codex-shim-timeout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.log");
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    // Ignores the stop signal: only SIGKILL ends it.
    let pid = spawn("trap '' USR1; exec sleep 30", &out_w, &err_w);
    drop((out_w, err_w));
    let mut log = LogWriter::open(&path, Rotation::default()).unwrap();
    let t = Timeout {
        deadline: sys::monotonic() + Duration::from_millis(200),
        stop_signal: libc::SIGUSR1,
        grace: Duration::from_millis(300),
    };
    let mut sent = Vec::new();
    let started = std::time::Instant::now();
    let o = pump(
        &mut log,
        [out_r, err_r],
        pid,
        Some(t),
        &mut |s| {
            sent.push(s);
            // SAFETY: kill with integer arguments; pid is this test's child.
            unsafe { libc::kill(pid, s) };
        },
        None,
        None,
    )
    .unwrap();
    assert!(o.timed_out);
    assert!(!o.memory_stopped);
    assert_eq!(o.signal, Some(libc::SIGKILL));
    assert_eq!(sent.first(), Some(&libc::SIGUSR1));
    assert!(sent.contains(&libc::SIGKILL));
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(started.elapsed() < Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_yield_leaves_the_pipes_and_the_pending_line_to_the_next_pump() {
    let dir = std::env::temp_dir().join(format!("codex-shim-yield-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("y.log");
    let _ = std::fs::remove_file(&path);
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let pid = spawn(
        "printf 'one\\ntw'; sleep 0.5; echo o; exit 4",
        &out_w,
        &err_w,
    );
    drop((out_w, err_w));
    let pipes = [out_r, err_r];
    let mut first = LogWriter::open(&path, Rotation::default()).unwrap();
    let at = sys::monotonic() + Duration::from_millis(200);
    let p = pump_until(
        &mut first,
        &pipes,
        pid,
        None,
        Some(at),
        &mut |_| {},
        None,
        None,
    )
    .unwrap();
    assert_eq!(p, Pumped::Yielded);
    let pending = first.take_pending();
    assert_eq!(pending, [b"tw".to_vec(), Vec::new()]);
    drop(first);
    let mut second = LogWriter::open(&path, Rotation::default()).unwrap();
    second.set_pending(pending);
    let o = pump(&mut second, pipes, pid, None, &mut |_| {}, None, None).unwrap();
    second.flush().unwrap();
    assert_eq!(o.code, 4);
    let l = lines(&path);
    assert_eq!(l.len(), 2, "{l:?}");
    assert!(l[0].ends_with(r#""log":"one"}"#) && l[1].ends_with(r#""log":"two"}"#));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn health_checks_never_overlap_and_a_hung_one_is_killed_with_its_group() {
    let dir = std::env::temp_dir().join(format!("codex-shim-health-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("h.log");
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let pid = spawn("sleep 1.5", &out_w, &err_w);
    drop((out_w, err_w));
    let mut log = LogWriter::open(&path, Rotation::default()).unwrap();
    // Each check hangs (a child of its own that would outlive it too) and writes
    // its pid and its grandchild's; the limit kills the whole group.
    let pids = dir.join("pids");
    let _ = std::fs::remove_file(&pids);
    let mut started: Vec<(std::time::Instant, i32)> = Vec::new();
    let mut spawn_check = || -> std::io::Result<i32> {
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new("/bin/sh")
            .args([
                "-c",
                &format!("sleep 30 & echo $$ $! >> {}; wait", pids.display()),
            ])
            .process_group(0)
            .spawn()?;
        started.push((std::time::Instant::now(), child.id() as i32));
        Ok(child.id() as i32)
    };
    let t0 = std::time::Instant::now();
    let o = pump(
        &mut log,
        [out_r, err_r],
        pid,
        None,
        &mut |_| {},
        Some(HealthTimer {
            interval: Duration::from_millis(100),
            limit: Duration::from_millis(300),
            spawn: &mut spawn_check,
        }),
        None,
    )
    .unwrap();
    assert_eq!(o.code, 0);
    assert!(t0.elapsed() < Duration::from_secs(10));
    // One at a time: each began at least limit + interval after the one before.
    assert!(started.len() >= 2, "{started:?}");
    for w in started.windows(2) {
        let gap = w[1].0 - w[0].0;
        assert!(gap >= Duration::from_millis(395), "{gap:?}");
    }
    // Every check and its background child are gone (killed as a group).
    let text = std::fs::read_to_string(&pids).unwrap();
    let all: Vec<i32> = text
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(all.len(), 2 * started.len(), "{text}");
    let gone = |p: i32| {
        std::fs::read_to_string(format!("/proc/{p}/stat")).map_or(true, |s| s.contains(") Z "))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !all.iter().all(|p| gone(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(all.iter().all(|p| gone(*p)), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sampler_runs_every_interval_and_its_stop_kills_the_container() {
    let dir = std::env::temp_dir().join(format!("codex-shim-sample-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.log");
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    // Ignores SIGTERM: only a SIGKILL ends it early.
    let pid = spawn("trap '' TERM; exec sleep 30", &out_w, &err_w);
    drop((out_w, err_w));
    let mut log = LogWriter::open(&path, Rotation::default()).unwrap();
    let mut at = Vec::new();
    let mut sample = || {
        at.push(std::time::Instant::now());
        at.len() == 3
    };
    let mut sent = Vec::new();
    let t0 = std::time::Instant::now();
    let o = pump(
        &mut log,
        [out_r, err_r],
        pid,
        None,
        &mut |s| {
            sent.push(s);
            // SAFETY: kill with integer arguments; pid is this test's child.
            unsafe { libc::kill(pid, s) };
        },
        None,
        Some(Sampler {
            interval: Duration::from_millis(100),
            sample: &mut sample,
        }),
    )
    .unwrap();
    assert!(o.memory_stopped && !o.timed_out, "{o:?}");
    assert_eq!(o.signal, Some(libc::SIGKILL));
    assert_eq!(sent.first(), Some(&libc::SIGKILL));
    assert!(t0.elapsed() < Duration::from_secs(10));
    // Three samples, an interval apart (the first an interval after the start).
    assert_eq!(at.len(), 3);
    assert!(at[0] - t0 >= Duration::from_millis(95));
    for w in at.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(95),
            "{:?}",
            w[1] - w[0]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
