//! Points where the race and crash tests widen a window or end a process, so that an
//! interleaving that is rare in real use happens every time in a test. Debug builds
//! only: in a release build these are empty functions.
//!
//! - `CODEX_TEST_PAUSE=POINT:MS` sleeps MS milliseconds at POINT.
//! - `CODEX_TEST_DIE=POINT` SIGKILLs the process at POINT.

/// Sleeps at `point` when `CODEX_TEST_PAUSE` names it (debug builds).
pub fn pause(point: &str) {
    #[cfg(debug_assertions)]
    if let Ok(v) = std::env::var("CODEX_TEST_PAUSE") {
        if let Some(ms) = v
            .strip_prefix(point)
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(|ms| ms.parse::<u64>().ok())
        {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}

/// SIGKILLs this process at `point` when `CODEX_TEST_DIE` names it (debug builds).
pub fn die(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("CODEX_TEST_DIE").is_ok_and(|v| v == point) {
        // SAFETY: kill with integer arguments, to this process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}
