//! `kill`: a signal to the init, or with `all` to every process in the container.

use std::os::fd::{AsFd, OwnedFd};

use super::Runtime;
use crate::error::{Context, Error, Result};
use crate::state::Status;

/// Parses `TERM`, `SIGTERM`, `sigterm` or `15`.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Error::Other(format!("invalid signal number {n}")));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(rt) = name.strip_prefix("SIGRTMIN") {
        // The offset stays within SIGRTMIN..=SIGRTMAX: fuzz/cli_parsers found
        // `SIGRTMIN+32222` accepted as signal 32256 (and a large offset overflowed).
        let (base, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        let unknown = || Error::Other(format!("unknown signal {s:?}"));
        let off = match rt.strip_prefix('+') {
            None if rt.is_empty() => 0,
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                n.parse::<i32>().map_err(|_| unknown())?
            }
            _ => return Err(unknown()),
        };
        return base
            .checked_add(off)
            .filter(|&n| n <= max)
            .ok_or_else(|| Error::Other(format!("{s:?} is past SIGRTMAX ({max})")));
    }
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| Error::Other(format!("unknown signal {s:?}")))
}

impl Runtime {
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let c = self.load(id)?;
        let status = c.status();
        if status == Status::Stopped && !all {
            return Err(c.wrong_state("kill", "needs a running container"));
        }
        let sent = if all {
            c.state.cgroups.signal_all(signal)
        } else {
            let pidfd = init_pidfd(&c.state)
                .ok_or_else(|| c.wrong_state("kill", "needs a running container"))?;
            crate::sys::pidfd_send_signal(pidfd.as_fd(), signal)
                .ctx(|| format!("sending signal {signal} to {}", c.state.pid))
        };
        // A frozen process cannot die: SIGKILL to a paused container thaws it (as runc
        // does), after the signal is queued, so no process runs any code of its own.
        if sent.is_ok() && signal == libc::SIGKILL && status == Status::Paused {
            c.state.cgroups.thaw()?;
        }
        sent
    }
}

/// A pidfd of the container's init, or None when the init is gone. Taken before the
/// start time is checked, so it cannot refer to a process that reused the pid.
pub(crate) fn init_pidfd(state: &crate::state::ContainerState) -> Option<OwnedFd> {
    let fd = crate::sys::pidfd_open(state.pid).ok()?;
    state.init_alive().then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_signals_stay_between_rtmin_and_rtmax() {
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        assert_eq!(parse_signal("SIGRTMIN").unwrap(), min);
        assert_eq!(parse_signal("rtmin+3").unwrap(), min + 3);
        assert_eq!(
            parse_signal(&format!("SIGRTMIN+{}", max - min)).unwrap(),
            max
        );
        // Found by fuzz/cli_parsers: accepted as signal 32256.
        for bad in [
            "SIGRTMIN+32222",
            "SIGRTMIN+2147483647",
            "SIGRTMIN-3",
            "SIGRTMIN++5",
        ] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
        assert!(parse_signal(&format!("SIGRTMIN+{}", max - min + 1)).is_err());
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("sigusr1").unwrap(), 10);
        assert_eq!(parse_signal("2").unwrap(), 2);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert_eq!(parse_signal("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
    }
}
