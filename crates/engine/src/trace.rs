//! A timing trace of the start path: with `CODEX_TRACE=1` each phase prints one line to
//! stderr; with `CODEX_TRACE=/abs/path` it is appended to that file instead (the
//! supervisor's stderr is /dev/null, and a file gathers the CLI's and the supervisor's
//! lines in one place). Each line: `trace PID MONOTONIC_MS +DELTA_MS PHASE`, where
//! MONOTONIC_MS is CLOCK_MONOTONIC (comparable across processes) and DELTA_MS the time
//! since this process's previous line. Off (one env lookup, once) when unset.
//! The image store writes a few lines too (a layer unpacked, waited for or reused, a
//! blob requested, waited for or reused: docs/images.md) so concurrency can be checked.

use std::io::Write;
use std::sync::Mutex;
use std::sync::OnceLock;

/// Where the lines go, decided once per process.
enum Sink {
    Off,
    Stderr,
    File(std::path::PathBuf),
}

fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| parse(std::env::var_os("CODEX_TRACE").as_deref()))
}

/// The sink an environment value names: unset, empty or `0` is off; an absolute path is
/// a file; anything else is stderr.
fn parse(value: Option<&std::ffi::OsStr>) -> Sink {
    match value {
        None => Sink::Off,
        Some(v) if v.is_empty() || v == "0" => Sink::Off,
        Some(v) if v.as_encoded_bytes().starts_with(b"/") => Sink::File(v.into()),
        Some(_) => Sink::Stderr,
    }
}

/// Whether tracing is on.
pub fn enabled() -> bool {
    !matches!(sink(), Sink::Off)
}

/// CLOCK_MONOTONIC in milliseconds.
fn monotonic_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 * 1000.0 + ts.tv_nsec as f64 / 1e6
}

/// Notes that `phase` has ended (now).
pub fn phase(phase: &str) {
    if !enabled() {
        return;
    }
    static LAST: Mutex<Option<f64>> = Mutex::new(None);
    let now = monotonic_ms();
    let delta = match LAST.lock() {
        Ok(mut last) => {
            let d = last.map_or(0.0, |l| now - l);
            *last = Some(now);
            d
        }
        Err(_) => 0.0,
    };
    let line = format!(
        "trace {} {now:.3} +{delta:.3} {phase}\n",
        std::process::id()
    );
    match sink() {
        Sink::Off => {}
        Sink::Stderr => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        Sink::File(p) => {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                let _ = f.write_all(line.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn the_environment_value_picks_the_sink() {
        assert!(matches!(parse(None), Sink::Off));
        assert!(matches!(parse(Some(OsStr::new(""))), Sink::Off));
        assert!(matches!(parse(Some(OsStr::new("0"))), Sink::Off));
        assert!(matches!(parse(Some(OsStr::new("1"))), Sink::Stderr));
        assert!(
            matches!(parse(Some(OsStr::new("/tmp/t.log"))), Sink::File(p) if p.as_os_str() == "/tmp/t.log")
        );
    }
}
