//! Health checks: what a container is probed with (`HealthCheck`, part of its config),
//! the status that follows from the results (`state`), and the `__health` process that
//! runs one probe and records its result (`probe`). The supervisor (the shim's pump)
//! only keeps time: one `__health` at a time, an interval after the last one ended,
//! killed with its process group if it overruns. See docs/monitors.md.

pub mod probe;
pub mod state;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use state::{HealthResult, HealthState, HealthStatus};

/// How a container is probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum HealthProbe {
    /// Checks switched off (`--no-healthcheck`): an image's check does not apply.
    None,
    /// A shell command run inside the container as `exec` runs one (`sh -c CMD`);
    /// exit code 0 is healthy.
    Cmd { command: String },
    /// An HTTP GET of `path` on `port` of the container's own loopback, from inside its
    /// network namespace; a 2xx or 3xx answer is healthy.
    Http { port: u16, path: String },
    /// A TCP connect to `port` on the container's own loopback, from inside its
    /// network namespace.
    Tcp { port: u16 },
}

/// A container's health check. Absent from a config: the image's (when images carry
/// one), else none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    /// Between the end of one probe and the start of the next.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// A probe that takes longer is killed (its whole process group) and fails.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive failures that make it `unhealthy`.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// After a start, failures for this long do not count (a success still counts).
    #[serde(default)]
    pub start_period_ms: u64,
}

fn default_interval_ms() -> u64 {
    30_000
}
fn default_timeout_ms() -> u64 {
    30_000
}
fn default_retries() -> u32 {
    3
}

/// The shortest interval and timeout: a probe is a process start of the engine binary
/// and an exec into the container, which costs milliseconds.
pub const MIN_PERIOD: Duration = Duration::from_millis(100);

impl HealthCheck {
    /// A check with Docker's defaults (30 s interval and timeout, 3 retries).
    pub fn new(probe: HealthProbe) -> HealthCheck {
        HealthCheck {
            probe,
            interval_ms: default_interval_ms(),
            timeout_ms: default_timeout_ms(),
            retries: default_retries(),
            start_period_ms: 0,
        }
    }

    /// Whether probes run at all.
    pub fn enabled(&self) -> bool {
        self.probe != HealthProbe::None
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Errors name the flag.
    pub fn validate(&self) -> Result<()> {
        let min = MIN_PERIOD.as_millis() as u64;
        if self.enabled() {
            if self.interval_ms < min {
                return Err(Error::invalid(
                    "health-interval",
                    format!("{} ms is shorter than {min} ms", self.interval_ms),
                ));
            }
            if self.timeout_ms < min {
                return Err(Error::invalid(
                    "health-timeout",
                    format!("{} ms is shorter than {min} ms", self.timeout_ms),
                ));
            }
            if self.retries == 0 {
                return Err(Error::invalid("health-retries", "must be at least 1"));
            }
        }
        match &self.probe {
            HealthProbe::Cmd { command } if command.trim().is_empty() => {
                Err(Error::invalid("health-cmd", "the command is empty"))
            }
            HealthProbe::Http { port: 0, .. } => Err(Error::invalid("health-http", "port 0")),
            HealthProbe::Http { path, .. } if !valid_path(path) => Err(Error::invalid(
                "health-http",
                format!("{path:?} is not an absolute path of printable characters"),
            )),
            HealthProbe::Tcp { port: 0 } => Err(Error::invalid("health-tcp", "port 0")),
            _ => Ok(()),
        }
    }
}

/// A request path that cannot break the request line.
fn valid_path(p: &str) -> bool {
    p.starts_with('/') && p.bytes().all(|b| b.is_ascii_graphic())
}

/// `--health-http PORT/PATH` (`8080/healthz`, `8080` for `/`).
pub fn parse_http(s: &str) -> Result<HealthProbe> {
    let (port, path) = match s.split_once('/') {
        Some((p, rest)) => (p, format!("/{rest}")),
        None => (s, "/".to_string()),
    };
    let probe = HealthProbe::Http {
        port: parse_port("health-http", port)?,
        path,
    };
    HealthCheck::new(probe.clone()).validate()?;
    Ok(probe)
}

/// `--health-tcp PORT`.
pub fn parse_tcp(s: &str) -> Result<HealthProbe> {
    let probe = HealthProbe::Tcp {
        port: parse_port("health-tcp", s)?,
    };
    HealthCheck::new(probe.clone()).validate()?;
    Ok(probe)
}

fn parse_port(field: &str, s: &str) -> Result<u16> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Error::invalid(field, format!("{s:?} is not a port (1-65535)")))
}

/// `--health-interval 1s`, `500ms`, `2m` as milliseconds.
pub fn parse_period(field: &str, s: &str) -> Result<u64> {
    let d = humantime::parse_duration(s)
        .map_err(|e| Error::invalid(field, format!("{s:?} is not a duration like 5s ({e})")))?;
    u64::try_from(d.as_millis())
        .map_err(|_| Error::invalid(field, format!("{s:?} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse_and_bad_ones_name_their_flag() {
        assert_eq!(
            parse_http("8080/healthz").unwrap(),
            HealthProbe::Http {
                port: 8080,
                path: "/healthz".into()
            }
        );
        assert_eq!(
            parse_http("80").unwrap(),
            HealthProbe::Http {
                port: 80,
                path: "/".into()
            }
        );
        assert_eq!(parse_tcp("6379").unwrap(), HealthProbe::Tcp { port: 6379 });
        for bad in ["", "0/x", "99999/", "x/y", "80/a b", "80/\r\nHost: evil"] {
            let e = parse_http(bad).unwrap_err().to_string();
            assert!(e.starts_with("health-http: "), "{bad:?}: {e}");
        }
        for bad in ["", "0", "-1", "http"] {
            let e = parse_tcp(bad).unwrap_err().to_string();
            assert!(e.starts_with("health-tcp: "), "{bad:?}: {e}");
        }
        assert_eq!(parse_period("health-interval", "1s").unwrap(), 1000);
        assert_eq!(parse_period("health-interval", "250ms").unwrap(), 250);
        assert!(parse_period("health-interval", "soon")
            .unwrap_err()
            .to_string()
            .starts_with("health-interval: "));
    }

    #[test]
    fn checks_validate_their_periods() {
        let mut c = HealthCheck::new(HealthProbe::Tcp { port: 1 });
        assert!(c.validate().is_ok());
        c.interval_ms = 10;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("health-interval"));
        c.interval_ms = 1000;
        c.timeout_ms = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("health-timeout"));
        c.timeout_ms = 1000;
        c.retries = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("health-retries"));
        let off = HealthCheck {
            interval_ms: 0,
            ..HealthCheck::new(HealthProbe::None)
        };
        assert!(off.validate().is_ok() && !off.enabled());
        let empty = HealthCheck::new(HealthProbe::Cmd {
            command: " ".into(),
        });
        assert!(empty
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("health-cmd"));
    }
}
