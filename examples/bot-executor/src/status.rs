//! The live status: one line per bot (state, health, restarts, CPU, memory), printed
//! every interval. On a terminal the block is redrawn in place; otherwise (a pipe, a
//! log file, the integration test) each block is appended with a time stamp, one
//! `status` line per bot, so it can be read back.

use std::fmt::Write as _;

/// What is shown of one bot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BotView {
    pub name: String,
    /// The container's status word (`running`, `restarting`, ...), or `gone`.
    pub state: String,
    /// `starting`, `healthy`, `unhealthy`, or `-` without a check.
    pub health: String,
    /// Restarts the engine counted (its restart policy, also after the memory
    /// ceiling or an unhealthy check killed it).
    pub restarts: u32,
    /// Over the last sample window; `None` while it is not running.
    pub cpu_percent: Option<f64>,
    pub memory: Option<u64>,
    pub memory_ceiling: Option<u64>,
}

/// `12.3MiB`, `512KiB`, `3B`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b}B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1}{unit}")
}

/// The header line of a block.
pub fn header() -> String {
    format!(
        "{:<16} {:<11} {:<10} {:>8} {:>7} {:>19}",
        "BOT", "STATE", "HEALTH", "RESTARTS", "CPU %", "MEMORY / CEILING"
    )
}

/// One bot's line.
pub fn line(v: &BotView) -> String {
    let restarts = v.restarts.to_string();
    let cpu = v
        .cpu_percent
        .map_or_else(|| "-".to_string(), |c| format!("{c:.1}"));
    let mem = v.memory.map_or_else(|| "-".to_string(), human_bytes);
    let ceiling = v
        .memory_ceiling
        .map_or_else(|| "-".to_string(), human_bytes);
    let mut s = String::new();
    let _ = write!(
        s,
        "{:<16} {:<11} {:<10} {:>8} {:>7} {:>19}",
        v.name,
        v.state,
        v.health,
        restarts,
        cpu,
        format!("{mem} / {ceiling}")
    );
    s
}

/// The block for a file or pipe: each bot's line prefixed with `status`, so a reader can
/// pick them out (the executor's other lines are `event ...`).
pub fn plain_block(time: &str, views: &[BotView]) -> String {
    let mut s = String::new();
    for v in views {
        let _ = writeln!(s, "status {time} {}", line(v));
    }
    s
}

/// The block for a terminal: the cursor goes back up over the previous block (of
/// `previous_lines` lines) and redraws it.
pub fn tty_block(previous_lines: usize, views: &[BotView]) -> String {
    let mut s = String::new();
    if previous_lines > 0 {
        // Cursor up N lines, then clear to the end of the screen.
        let _ = write!(s, "\x1b[{previous_lines}A\x1b[J");
    }
    let _ = writeln!(s, "{}", header());
    for v in views {
        let _ = writeln!(s, "{}", line(v));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_a_person_reads_them() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1023), "1023B");
        assert_eq!(human_bytes(1536), "1.5KiB");
        assert_eq!(human_bytes(24 << 20), "24.0MiB");
        assert_eq!(human_bytes(3 << 30), "3.0GiB");
    }

    #[test]
    fn a_line_shows_state_health_restarts_cpu_and_memory() {
        let v = BotView {
            name: "leaker".into(),
            state: "running".into(),
            health: "-".into(),
            restarts: 3,
            cpu_percent: Some(12.345),
            memory: Some(20 << 20),
            memory_ceiling: Some(24 << 20),
        };
        let l = line(&v);
        for part in ["leaker", "running", " 3 ", "12.3", "20.0MiB / 24.0MiB"] {
            assert!(l.contains(part), "{part}: {l}");
        }
        let idle = line(&BotView {
            name: "x".into(),
            state: "restarting".into(),
            health: "unhealthy".into(),
            ..Default::default()
        });
        assert!(
            idle.contains("restarting") && idle.contains("- / -"),
            "{idle}"
        );
        let block = plain_block("T", &[v.clone(), v]);
        assert_eq!(block.lines().count(), 2);
        assert!(block.lines().all(|l| l.starts_with("status T leaker")));
        let redraw = tty_block(3, &[BotView::default()]);
        assert!(redraw.starts_with("\x1b[3A\x1b[J"));
        assert_eq!(redraw.lines().count(), 2);
        assert!(!tty_block(0, &[]).contains('\x1b'));
    }
}
