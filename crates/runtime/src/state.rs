//! The container's persisted state: `<root>/<id>/state.json`, written atomically.
//! Status is never stored: it is derived from the init process and the start socket,
//! so a state file can never claim a process that is gone is running.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroups;
use crate::error::{Context, Error, Result};
use crate::sys;

pub const STATE_FILE: &str = "state.json";
/// The unix socket the created init waits on until `start`.
pub const START_SOCKET: &str = "start.sock";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What the runtime remembers about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    /// Schema version of this file.
    pub version: u32,
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub pid: i32,
    /// The init's start time in clock ticks: tells the init from a recycled pid.
    pub pid_start_time: u64,
    /// RFC 3339 creation time.
    pub created: String,
    pub annotations: HashMap<String, String>,
    pub cgroups: Cgroups,
    /// The config the container was created with (exec and delete read it).
    pub config: Spec,
    #[serde(default)]
    pub owner: String,
    /// While `create` runs: the pid and start time of the creating runtime process. A
    /// state file that still names a creator that is gone is a crashed create, which
    /// reports `stopped` and which `delete` cleans up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<(i32, u64)>,
    /// The device and inode of the writable binary the init of a foreground `run` runs
    /// until it execs its program through the trampoline (see [`crate::trampoline`]).
    /// `exec` refuses to join an init that still runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_exe_until_exec: Option<(u64, u64)>,
}

impl ContainerState {
    /// The container's status as the kernel sees it now.
    pub fn status(&self, dir: &Path) -> Status {
        if let Some((pid, start)) = self.creator {
            let creating = crate::sys::process_start_time(pid) == Some(start)
                && crate::sys::process_state(pid).is_some_and(|s| s != 'Z');
            return if creating {
                Status::Creating
            } else {
                Status::Stopped
            };
        }
        if !self.init_alive() {
            return Status::Stopped;
        }
        if dir.join(START_SOCKET).exists() {
            return Status::Created;
        }
        if self.frozen() {
            return Status::Paused;
        }
        Status::Running
    }

    /// True while the init (not a recycled pid) exists and is not a zombie.
    pub fn init_alive(&self) -> bool {
        self.pid > 0
            && sys::process_start_time(self.pid) == Some(self.pid_start_time)
            && sys::process_state(self.pid).is_some_and(|s| s != 'Z' && s != 'X')
    }

    fn frozen(&self) -> bool {
        for d in &self.cgroups.dirs {
            if d.has("freezer") {
                return std::fs::read_to_string(d.path.join("freezer.state"))
                    .is_ok_and(|s| s.trim() == "FROZEN");
            }
        }
        for d in &self.cgroups.dirs {
            if d.is_v2() {
                return std::fs::read_to_string(d.path.join("cgroup.freeze"))
                    .is_ok_and(|s| s.trim() == "1");
            }
        }
        false
    }

    /// The OCI state JSON (`runc state` output).
    pub fn oci_state(&self, dir: &Path) -> serde_json::Value {
        let status = self.status(dir);
        let pid = if status == Status::Stopped {
            0
        } else {
            self.pid
        };
        serde_json::json!({
            "ociVersion": crate::spec::OCI_VERSION,
            "id": self.id,
            "status": status,
            "pid": pid,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "annotations": self.annotations,
            "owner": self.owner,
        })
    }

    pub fn load(dir: &Path, id: &str) -> Result<ContainerState> {
        let f = dir.join(STATE_FILE);
        let text = match std::fs::read(&f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.into()))
            }
            Err(e) => return Err(e).ctx(|| format!("reading {}", f.display())),
        };
        serde_json::from_slice(&text).map_err(|e| Error::CorruptState {
            path: f,
            reason: e.to_string(),
        })
    }

    /// Writes state.json by rename but without fsync: for the short-lived record of a
    /// create in progress, whose loss in a host crash loses nothing.
    pub fn save_unsynced(&self, dir: &Path) -> Result<()> {
        let data = serde_json::to_vec(self)
            .map_err(|e| Error::Other(format!("serializing state: {e}")))?;
        let path = dir.join(STATE_FILE);
        codex_sys::AtomicFile::new(&path)
            .not_durable()
            .write(&data)
            .ctx(|| format!("writing {}", path.display()))
    }

    /// Makes a state.json written by [`ContainerState::save_unsynced`] durable.
    pub fn sync(dir: &Path) -> Result<()> {
        let path = dir.join(STATE_FILE);
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .ctx(|| format!("syncing {}", path.display()))
    }

    /// Writes state.json atomically: temp file, fsync, rename. Every save replaces a
    /// state.json that exists (the create-in-progress record, or the container's record
    /// for `update`), so the directory is not synced (`without_dir_sync`): a host crash
    /// before the rename reached the disk leaves the previous record, and after a host
    /// crash the container is stopped whichever record says so (its processes and
    /// cgroups died with the host). That directory fsync was a journal commit of its
    /// own on a disk-backed root, about 0.2 ms of every `create`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let data = serde_json::to_vec(self)
            .map_err(|e| Error::Other(format!("serializing state: {e}")))?;
        let path = dir.join(STATE_FILE);
        codex_sys::AtomicFile::new(&path)
            .without_dir_sync()
            .write(&data)
            .ctx(|| format!("writing {}", path.display()))
    }
}

/// Replaces `path` with `data` (mode 0600: state.json holds the whole spec, env secrets
/// included) so that readers see the old or the new file, never a mix (codex_sys::atomic).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    codex_sys::write_atomic(path, data).ctx(|| format!("writing {}", path.display()))
}

/// Container ids become directory names: allow only what cannot name another place.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidId {
            id: id.into(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > 1024 {
        return bad("it is longer than 1024 bytes");
    }
    if id == "." || id == ".." {
        return bad("it names a directory entry");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'))
    {
        return bad("only letters, digits and _ + - . are allowed");
    }
    Ok(())
}

/// RFC 3339 UTC timestamp with nanoseconds, without pulling a date crate.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_become_paths_are_refused() {
        for id in ["", ".", "..", "../x", "a/b", "a b", "x\0y"] {
            assert!(validate_id(id).is_err(), "{id:?}");
        }
        for id in ["abc", "A-1_2.3+x", "0123456789abcdef"] {
            validate_id(id).unwrap();
        }
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 30, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
        assert!(t.starts_with("20"), "{t}");
    }
}
