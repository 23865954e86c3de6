//! `containers/<id>/state.json`: one container's metadata and config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use codex_sys::ProcessId;

use crate::error::{Error, Result};

/// The version of `state.json` this engine writes. Every earlier version still loads
/// (see `runtime-state/README.md`).
pub const RECORD_VERSION: u32 = 1;

/// A container's state, as DESIGN.md names it: the same words in the CLI, JSON and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// Created, not started yet.
    Created,
    /// Its process runs.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// Its process ended on its own (or was killed by a signal not sent by `stop`).
    Exited,
    /// Could not start: `error` says why.
    Failed,
    /// Ended because the user stopped it.
    Stopped,
    /// Between two runs of its restart policy.
    Restarting,
    /// An `rm` has claimed it: nothing starts it again; its removal is under way (or
    /// was interrupted, and the next `rm` finishes it).
    Removing,
}

impl ContainerStatus {
    pub const ALL: [ContainerStatus; 8] = [
        ContainerStatus::Created,
        ContainerStatus::Running,
        ContainerStatus::Paused,
        ContainerStatus::Exited,
        ContainerStatus::Failed,
        ContainerStatus::Stopped,
        ContainerStatus::Restarting,
        ContainerStatus::Removing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Paused => "paused",
            ContainerStatus::Exited => "exited",
            ContainerStatus::Failed => "failed",
            ContainerStatus::Stopped => "stopped",
            ContainerStatus::Restarting => "restarting",
            ContainerStatus::Removing => "removing",
        }
    }
}

impl std::fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ContainerStatus {
    type Err = Error;

    /// Parses the lowercase word (`--filter status=running`).
    fn from_str(s: &str) -> Result<Self> {
        ContainerStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let words: Vec<&str> = ContainerStatus::ALL.iter().map(|s| s.as_str()).collect();
                Error::invalid(
                    "status",
                    format!("{s:?} is not one of {}", words.join(", ")),
                )
            })
    }
}

/// One container's persisted record. Fields that a later version adds must have a default,
/// so that every golden example of `runtime-state/examples/` keeps loading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Schema version of this file ([`RECORD_VERSION`] when this engine writes it).
    pub version: u32,
    /// 64 lowercase hex characters; also the directory name.
    pub id: String,
    /// Unique among containers; the index maps it to `id`.
    pub name: String,
    /// RFC 3339 UTC.
    pub created: String,
    pub status: ContainerStatus,
    /// The container's init process, while it has one.
    #[serde(default)]
    pub pid: Option<i32>,
    /// Its supervisor process, while it has one.
    #[serde(default)]
    pub supervisor_pid: Option<i32>,
    /// The supervisor's start time (clock ticks after boot, `/proc/PID/stat` field 22):
    /// with the pid, the identity of the one process that claimed the container, which
    /// a recycled pid or a process with a forged command line cannot take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor_start: Option<u64>,
    /// The last exit code (128 + signal for a signal death, as shells and Docker report).
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The signal number that ended the last run, if one did.
    #[serde(default)]
    pub signal: Option<i32>,
    /// The kernel's OOM killer ended the last run.
    #[serde(default)]
    pub oom_killed: bool,
    /// Why it failed (status `failed`), or the last engine error about it.
    #[serde(default)]
    pub error: Option<String>,
    /// RFC 3339 UTC, of the last start.
    #[serde(default)]
    pub started_at: Option<String>,
    /// RFC 3339 UTC, of the last exit.
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub restart_count: u32,
    /// A user asked for the stop that is under way (the exit is then `stopped`, not
    /// `exited`, and no restart policy applies).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop_requested: bool,
    /// A user stopped or killed the last run: its restart policy does not undo that,
    /// and `unless-stopped` does not bring it back at boot. Cleared by a user's start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manually_stopped: bool,
    /// Made by `run --rm`, on the boot this names (the kernel's boot id): its files are
    /// written without fsync, since the container goes when its run ends. A host crash
    /// may lose them or leave its record empty; the first open on a later boot removes
    /// it (`Engine::open`, the registry's reconcile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_boot: Option<String>,
    /// The attached `run --rm` that removes this container once it has its exit code
    /// (pid and start time, as for the supervisor). Should that command be gone before
    /// it did (killed), whoever records the end removes the container once the command
    /// has exited, as Docker's daemon does (`supervisor::finish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remover_pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remover_start: Option<u64>,
    /// The process that recorded the end (pid and start time) and now waits for the
    /// remover above to exit: it deletes the removed container's files
    /// (`containers/.removing-<id>`) then, so a remover that finds it running leaves
    /// them to it and need not wait for their deletion. It declared an intent before it
    /// recorded the end: should it die first, the next command's full reconcile deletes
    /// them (`supervisor::finish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleter_pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleter_start: Option<u64>,
    /// The backoff before the last restart, in milliseconds (doubled for the next one
    /// unless the container ran long enough; see `restart::next_delay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_delay_ms: Option<u64>,
    /// RFC 3339 UTC: while `restarting`, when the supervisor starts it again. `None`
    /// while restarting means the supervisor is starting it now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<String>,
    /// Its health, while it has a health check: status, failing streak, last results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::HealthState>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The engine's container configuration (a JSON object), opaque to the registry.
    #[serde(default)]
    pub config: serde_json::Value,
}

impl ContainerRecord {
    /// A record in state `created`, stamped now.
    pub(crate) fn new(
        id: String,
        name: String,
        config: serde_json::Value,
        labels: BTreeMap<String, String>,
    ) -> ContainerRecord {
        ContainerRecord {
            version: RECORD_VERSION,
            id,
            name,
            created: codex_runtime::state::now_rfc3339(),
            status: ContainerStatus::Created,
            pid: None,
            supervisor_pid: None,
            supervisor_start: None,
            exit_code: None,
            signal: None,
            oom_killed: false,
            error: None,
            started_at: None,
            finished_at: None,
            restart_count: 0,
            stop_requested: false,
            manually_stopped: false,
            ephemeral_boot: None,
            remover_pid: None,
            remover_start: None,
            deleter_pid: None,
            deleter_start: None,
            restart_delay_ms: None,
            restart_at: None,
            health: None,
            labels,
            config,
        }
    }

    /// Its supervisor, while the very process that claimed it runs. A record from
    /// before supervisors were recorded with their start time is checked the old way:
    /// the process must have `__supervise` and the id among its arguments.
    pub fn live_supervisor(&self) -> Option<ProcessId> {
        let pid = self.supervisor_pid?;
        let who = match self.supervisor_start {
            Some(start_time) => ProcessId { pid, start_time },
            None if legacy_supervisor_alive(pid, &self.id) => ProcessId::of(pid).ok()?,
            None => return None,
        };
        who.is_running().then_some(who)
    }

    /// A pidfd of its live supervisor (readable once it exits), never of a process that
    /// only has its pid.
    pub fn supervisor_pidfd(&self) -> Option<std::os::fd::OwnedFd> {
        self.live_supervisor()?.open().ok().flatten()
    }

    /// Names `process` as its supervisor.
    pub(crate) fn set_supervisor(&mut self, process: Option<ProcessId>) {
        self.supervisor_pid = process.map(|p| p.pid);
        self.supervisor_start = process.map(|p| p.start_time);
    }

    /// Its files are written without fsync (see [`ContainerRecord::ephemeral_boot`]).
    pub fn ephemeral(&self) -> bool {
        self.ephemeral_boot.is_some()
    }

    /// The command that removes it at its end ([`ContainerRecord::remover_pid`]).
    pub fn remover(&self) -> Option<ProcessId> {
        Some(ProcessId {
            pid: self.remover_pid?,
            start_time: self.remover_start?,
        })
    }

    /// The process that deletes its files once it is removed, while that process runs
    /// ([`ContainerRecord::deleter_pid`]).
    pub fn running_deleter(&self) -> Option<ProcessId> {
        let deleter = ProcessId {
            pid: self.deleter_pid?,
            start_time: self.deleter_start?,
        };
        deleter.is_running().then_some(deleter)
    }

    /// Names `process` as the one that deletes its files once it is removed.
    pub(crate) fn set_deleter(&mut self, process: Option<ProcessId>) {
        self.deleter_pid = process.map(|p| p.pid);
        self.deleter_start = process.map(|p| p.start_time);
    }

    /// The first 12 characters of the id, as `ps` shows it.
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}

/// The check for supervisors recorded by pid alone.
fn legacy_supervisor_alive(pid: i32, id: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.iter().any(|a| *a == b"__supervise") && args.contains(&id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_round_trip() {
        for st in ContainerStatus::ALL {
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{st}\""));
            assert_eq!(st.as_str().parse::<ContainerStatus>().unwrap(), st);
        }
        let err = "zombie".parse::<ContainerStatus>().unwrap_err().to_string();
        assert!(
            err.starts_with("status: ") && err.contains("restarting"),
            "{err}"
        );
    }
}
