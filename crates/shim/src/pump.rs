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
mod tests;
