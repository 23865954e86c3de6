//! Copies a container's output into its log until the init has exited, enforcing
//! the timeout on the way. One implementation for the shim and for a supervisor that
//! stays in one process.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use crate::log::LogWriter;
use crate::sys;
use crate::{Context, Result};

/// `--timeout`: the stop signal at `deadline` (CLOCK_MONOTONIC, see
/// [`sys::monotonic`]), SIGKILL from `grace` later on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout {
    pub deadline: Duration,
    pub stop_signal: i32,
    pub grace: Duration,
}

/// `--timeout` before it starts: [`TimeLimit::starting_now`] makes the [`Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeLimit {
    pub after: Duration,
    pub stop_signal: i32,
    pub grace: Duration,
}

impl TimeLimit {
    /// The timeout of a container that counts from now.
    pub fn starting_now(&self) -> Timeout {
        Timeout {
            deadline: sys::monotonic() + self.after,
            stop_signal: self.stop_signal,
            grace: self.grace,
        }
    }
}

/// How the init ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The exit code, or 128+N for signal N.
    pub code: i32,
    pub signal: Option<i32>,
    /// The timeout fired (the record then says exit code 124).
    pub timed_out: bool,
    /// `--stop-on-memory` killed it (see [`Sampler`]).
    pub memory_stopped: bool,
}

/// After the init has exited, processes outside a PID namespace may keep the pipes
/// open: their output is still read for this long, then no more.
pub const EXIT_GRACE: Duration = Duration::from_secs(2);

/// How often SIGKILL is sent again once the timeout's grace is over, and how often
/// the init is looked at when no pidfd can be had.
const TICK: Duration = Duration::from_millis(100);

/// One read. Small: what a shim has touched stays resident.
const READ_SIZE: usize = 16 * 1024;

/// Output quiet for this long after some came: the memory the log writer used for
/// it goes back to the kernel.
const QUIET: Duration = Duration::from_secs(1);

/// Health checks as the supervisor runs them: it only keeps time. One check at a
/// time, `interval` after the previous one ended (the first an interval after the
/// pump starts); a check still running `limit` after it began is SIGKILLed with its
/// whole process group. The check process records its own result.
pub struct HealthTimer<'a> {
    pub interval: Duration,
    pub limit: Duration,
    /// Starts one check as the leader of a new process group; returns its pid.
    pub spawn: &'a mut dyn FnMut() -> std::io::Result<i32>,
}

/// The usage sampling of [`crate::monitor`], timed as health checks are: `sample`
/// runs every `interval` while the init runs (the first an interval after the pump
/// starts). When it returns `true` the container is killed: SIGKILL to all its
/// processes, again every 100 ms until the init has exited, and the outcome says
/// `memory_stopped`.
pub struct Sampler<'a> {
    pub interval: Duration,
    pub sample: &'a mut dyn FnMut() -> bool,
}

/// A check under way.
struct Check {
    pid: i32,
    pidfd: Option<OwnedFd>,
    kill_at: Duration,
}

impl Check {
    /// Ends it (its whole group) and reaps it.
    fn kill(self) {
        // SAFETY: kill with integer arguments: the group the check leads (pid > 0).
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        let _ = sys::wait(self.pid);
    }
}

/// Why [`pump_until`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    Exited(Outcome),
    /// `yield_at` came while the init ran (and the timeout had not fired): the
    /// pipes are as they were, the log's unterminated lines are pending in it.
    Yielded,
}

/// Copies `pipes` (stdout, stderr) into `log` until the init `pid` (a child of this
/// process) has exited and the pipes are drained (or [`EXIT_GRACE`] has passed);
/// `kill(signal)` signals every process of the container. Does not flush `log`.
pub fn pump(
    log: &mut LogWriter,
    pipes: [OwnedFd; 2],
    pid: i32,
    timeout: Option<Timeout>,
    kill: &mut dyn FnMut(i32),
    health: Option<HealthTimer>,
    sampler: Option<Sampler>,
) -> Result<Outcome> {
    match pump_until(log, &pipes, pid, timeout, None, kill, health, sampler)? {
        Pumped::Exited(o) => Ok(o),
        // Without a yield_at there is no yielding.
        Pumped::Yielded => Err(crate::Error::new(
            "pumping the container's output",
            std::io::Error::other("stopped without a reason"),
        )),
    }
}

/// [`pump`], that also returns at `yield_at` (CLOCK_MONOTONIC) if the init still
/// runs then and the timeout has not fired.
#[allow(clippy::too_many_arguments)]
pub fn pump_until(
    log: &mut LogWriter,
    pipes: &[OwnedFd; 2],
    pid: i32,
    timeout: Option<Timeout>,
    yield_at: Option<Duration>,
    kill: &mut dyn FnMut(i32),
    mut health: Option<HealthTimer>,
    mut sampler: Option<Sampler>,
) -> Result<Pumped> {
    let mut check: Option<Check> = None;
    let pumped = pump_loop(
        log,
        pipes,
        pid,
        timeout,
        yield_at,
        kill,
        &mut health,
        &mut check,
        &mut sampler,
    );
    // Nothing of a check outlives the pump.
    if let Some(c) = check.take() {
        c.kill();
    }
    pumped
}

#[allow(clippy::too_many_arguments)]
fn pump_loop(
    log: &mut LogWriter,
    pipes: &[OwnedFd; 2],
    pid: i32,
    timeout: Option<Timeout>,
    yield_at: Option<Duration>,
    kill: &mut dyn FnMut(i32),
    health: &mut Option<HealthTimer>,
    check: &mut Option<Check>,
    sampler: &mut Option<Sampler>,
) -> Result<Pumped> {
    let mut next_check: Option<Duration> = None;
    let mut next_sample: Option<Duration> = None;
    // When --stop-on-memory killed it last (SIGKILL again every TICK until it ends).
    let mut memory_kill: Option<Duration> = None;
    // Sleep on the init's pidfd; without one (kernels before 5.3), look every TICK.
    let pidfd = sys::pidfd_open(pid).ok();
    let mut open = [true, true];
    let mut status: Option<sys::ExitStatus> = None;
    let mut exited_at: Option<Duration> = None;
    let mut timed_out = false;
    let mut last_kill: Option<Duration> = None;
    let mut buf = vec![0u8; READ_SIZE];
    // When output last came, if the heap has not been trimmed since.
    let mut output_at: Option<Duration> = None;
    loop {
        let now = sys::monotonic();
        // The next moment something is due, if any.
        let mut wake: Option<Duration> = None;
        let mut due = |at: Duration| {
            let left = at.saturating_sub(now);
            wake = Some(wake.map_or(left, |w| w.min(left)));
        };
        if let Some(t) = timeout {
            let kill_at = t.deadline + t.grace;
            if !timed_out {
                if now >= t.deadline {
                    timed_out = true;
                    kill(t.stop_signal);
                    due(kill_at.max(now + TICK));
                } else {
                    due(t.deadline);
                }
            } else if now >= kill_at {
                if last_kill.is_none_or(|l| now >= l + TICK) {
                    kill(libc::SIGKILL);
                    last_kill = Some(now);
                }
                due(now + TICK);
            } else {
                due(kill_at);
            }
        }
        if status.is_none() {
            status = sys::try_wait(pid).ctx(|| format!("waiting for {pid}"))?;
            if status.is_some() {
                exited_at = Some(now);
            }
        }
        if let Some((code, signal)) = status {
            let drained = !open[0] && !open[1];
            if drained || exited_at.is_some_and(|at| now >= at + EXIT_GRACE) {
                return Ok(Pumped::Exited(Outcome {
                    code,
                    signal,
                    // Both fired: the memory stop is what is recorded.
                    timed_out: timed_out && memory_kill.is_none(),
                    memory_stopped: memory_kill.is_some(),
                }));
            }
            if let Some(at) = exited_at {
                due(at + EXIT_GRACE);
            }
        } else {
            if let Some(at) = yield_at.filter(|_| !timed_out && memory_kill.is_none()) {
                if now >= at {
                    return Ok(Pumped::Yielded);
                }
                due(at);
            }
            if pidfd.is_none() {
                due(now + TICK);
            }
        }
        if let Some(h) = health.as_mut().filter(|_| status.is_none()) {
            if let Some(c) = check.take() {
                match sys::try_wait(c.pid) {
                    Ok(Some(_)) | Err(_) => next_check = Some(now + h.interval),
                    Ok(None) if now >= c.kill_at => {
                        c.kill();
                        next_check = Some(now + h.interval);
                    }
                    Ok(None) => {
                        due(c.kill_at);
                        if c.pidfd.is_none() {
                            due(now + TICK);
                        }
                        *check = Some(c);
                    }
                }
            }
            if check.is_none() {
                let at = *next_check.get_or_insert(now + h.interval);
                if now >= at {
                    match (h.spawn)() {
                        Ok(p) => {
                            *check = Some(Check {
                                pid: p,
                                pidfd: sys::pidfd_open(p).ok(),
                                kill_at: now + h.limit,
                            });
                            due(now + h.limit);
                        }
                        Err(_) => {
                            next_check = Some(now + h.interval);
                            due(now + h.interval);
                        }
                    }
                } else {
                    due(at);
                }
            }
        } else if let Some(c) = check.take() {
            // The init has exited: no more checks.
            c.kill();
        }
        if let Some(s) = sampler.as_mut().filter(|_| status.is_none()) {
            match memory_kill {
                Some(last) if now >= last + TICK => {
                    kill(libc::SIGKILL);
                    memory_kill = Some(now);
                    due(now + TICK);
                }
                Some(last) => due(last + TICK),
                None => {
                    let at = *next_sample.get_or_insert(now + s.interval);
                    if now >= at {
                        if (s.sample)() {
                            kill(libc::SIGKILL);
                            memory_kill = Some(now);
                            due(now + TICK);
                        } else {
                            // From the due time, so that a late wake does not drift.
                            let next = if at + s.interval > now {
                                at + s.interval
                            } else {
                                now + s.interval
                            };
                            next_sample = Some(next);
                            due(next);
                        }
                    } else {
                        due(at);
                    }
                }
            }
        }
        if let Some(at) = output_at {
            if now >= at + QUIET {
                sys::trim_heap();
                output_at = None;
            } else {
                due(at + QUIET);
            }
        }
        let mut fds = [libc::pollfd {
            fd: -1,
            events: libc::POLLIN,
            revents: 0,
        }; 4];
        if let Some(fd) = check.as_ref().and_then(|c| c.pidfd.as_ref()) {
            fds[3].fd = fd.as_raw_fd();
        }
        for (i, p) in pipes.iter().enumerate() {
            if open[i] {
                fds[i].fd = p.as_raw_fd();
            }
        }
        if status.is_none() {
            if let Some(p) = &pidfd {
                fds[2].fd = p.as_raw_fd();
            }
        }
        // Negative fds are ignored by poll; with none at all it is a plain sleep.
        sys::poll(&mut fds, wake).ctx(|| "polling the container's output")?;
        for (i, p) in pipes.iter().enumerate() {
            if !open[i] || fds[i].revents == 0 {
                continue;
            }
            // SAFETY: buf is valid for writes of buf.len() bytes; p is an open fd.
            let n = unsafe { libc::read(p.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match n {
                0 => open[i] = false,
                n if n > 0 => {
                    log.feed(i, &buf[..n as usize])?;
                    output_at = Some(now);
                }
                _ => {
                    let e = std::io::Error::last_os_error();
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                    ) {
                        open[i] = false;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
}
