//! The supervisor's side of health checks: their timing, and starting one
//! `__health` process (see `crate::health::probe`).

use std::path::Path;
use std::time::Duration;

use crate::config::ContainerConfig;

/// How much longer than its probe's timeout a `__health` process may take (it
/// enforces the timeout itself; this is for one stuck on the registry lock).
pub(super) const HEALTH_GRACE: Duration = Duration::from_secs(10);

/// The supervisor's timing of `cfg`'s health checks: (interval, limit).
pub(super) fn health_timing(cfg: &ContainerConfig) -> Option<(Duration, Duration)> {
    let h = cfg.health.as_ref().filter(|h| h.enabled())?;
    Some((h.interval(), h.timeout() + HEALTH_GRACE))
}

/// Starts `__health --root ROOT ID` of this very binary (the full supervisor, which
/// runs from its read-only view) in a new process group; its pid.
pub(super) fn start_check(root: &Path, id: &str) -> std::io::Result<i32> {
    use std::os::unix::process::CommandExt;
    let arg0 = std::env::args_os().next().unwrap_or_default();
    let child = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .arg(codex_shim::handoff::HEALTH_MODE)
        .arg("--root")
        .arg(root)
        .arg(id)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Reaped by pid by the pump, not through the `Child`.
    Ok(child.id() as i32)
}
