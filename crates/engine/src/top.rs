//! `top`: the processes of a running container, as the host sees them (pid, user,
//! CPU time, command line), read from /proc for the pids its cgroup lists.

use serde::Serialize;

use crate::engine::Engine;
use crate::error::Result;
use crate::registry::ContainerStatus;

/// One process of a container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessRow {
    /// The host's pid.
    pub pid: i32,
    pub ppid: i32,
    /// Its real uid on the host (a user-namespaced container's root is not 0 here).
    pub uid: u32,
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Its command line (the command name in brackets when it has none, as ps does).
    pub command: String,
}

impl Engine {
    /// The container's processes, by pid.
    pub fn top(&self, reference: &str) -> Result<Vec<ProcessRow>> {
        let rec = self.get_in(
            reference,
            &[ContainerStatus::Running, ContainerStatus::Paused],
            "it must be running",
        )?;
        let mut rows: Vec<ProcessRow> = self
            .runtime()
            .pids(&rec.id)?
            .into_iter()
            .filter_map(read_process)
            .collect();
        rows.sort_by_key(|r| r.pid);
        Ok(rows)
    }
}

/// What /proc says of `pid`; `None` if it has exited meanwhile.
fn read_process(pid: i32) -> Option<ProcessRow> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let (name, fields) = parse_stat(&stat)?;
    // Fields after the name: state(0) ppid(1) ... utime(11) stime(12).
    let ppid = fields.get(1).and_then(|f| f.parse().ok())?;
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf with a constant name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let command = if args.is_empty() {
        format!("[{name}]")
    } else {
        args.join(" ")
    };
    Some(ProcessRow {
        pid,
        ppid,
        uid,
        cpu_seconds: ticks as f64 / hz,
        command,
    })
}

/// (comm, the fields after it) of a /proc/PID/stat line; the name may hold spaces
/// and parentheses, so it ends at the last `)`.
fn parse_stat(stat: &str) -> Option<(String, Vec<String>)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields = stat
        .get(close + 1..)?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    Some((name, fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_parentheses_and_spaces_does_not_shift_the_fields() {
        let (name, f) = parse_stat("42 (a) b (c)) S 7 42 42 0 -1 0 0 0 0 0 5 3 0 0").unwrap();
        assert_eq!(name, "a) b (c)");
        assert_eq!(
            (f[0].as_str(), f[1].as_str(), f[11].as_str(), f[12].as_str()),
            ("S", "7", "5", "3")
        );
    }

    #[test]
    fn this_process_reads_as_itself() {
        let me = read_process(std::process::id() as i32).unwrap();
        assert_eq!(me.pid, std::process::id() as i32);
        // SAFETY: getuid has no arguments and cannot fail.
        assert_eq!(me.uid, unsafe { libc::getuid() });
        assert!(!me.command.is_empty());
    }
}
