//! The flags of `create`/`run` that loosen or tighten a container (kept apart from
//! args.rs, flattened into [`super::args::CreateArgs`]): capabilities, `--privileged`,
//! `--read-only`, `--security-opt`, `--ulimit`, `--shm-size`, `--device`.

use clap::Args;
use codex_engine::config::security::{self, Security};

#[derive(Debug, Args, Clone, Default)]
pub struct SecurityFlags {
    /// Add a capability (NET_ADMIN or CAP_NET_ADMIN; ALL) to the isolation's set (repeatable).
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL) from the set, after --cap-add (repeatable).
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Every capability and device, no seccomp filter, no masked paths: the host's root in effect.
    #[arg(long)]
    pub privileged: bool,
    /// Mount the container's root filesystem read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// no-new-privileges, or seccomp=unconfined|FILE (an OCI seccomp JSON) (repeatable).
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// NAME=SOFT[:HARD], e.g. nofile=1024:2048 (-1: unlimited) (repeatable).
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm: bytes or 64m, 1g (default 64m).
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// HOST[:CONTAINER[:rwm]]: a host device node in the container (repeatable).
    #[arg(long)]
    pub device: Vec<String>,
}

impl SecurityFlags {
    pub fn security(&self) -> anyhow::Result<Security> {
        let mut s = Security {
            privileged: self.privileged,
            read_only: self.read_only,
            ..Default::default()
        };
        for (i, c) in self.cap_add.iter().enumerate() {
            s.cap_add
                .push(security::cap_name(&format!("cap-add[{i}]"), c)?);
        }
        for (i, c) in self.cap_drop.iter().enumerate() {
            s.cap_drop
                .push(security::cap_name(&format!("cap-drop[{i}]"), c)?);
        }
        for (i, o) in self.security_opt.iter().enumerate() {
            security::apply_security_opt(&mut s, &format!("security-opt[{i}]"), o)?;
        }
        for (i, u) in self.ulimit.iter().enumerate() {
            s.ulimits
                .push(security::parse_ulimit(&format!("ulimit[{i}]"), u)?);
        }
        for (i, d) in self.device.iter().enumerate() {
            s.devices
                .push(security::parse_device(&format!("device[{i}]"), d)?);
        }
        s.shm_size = self
            .shm_size
            .as_deref()
            .map(|v| codex_engine::config::parse_memory("shm-size", v))
            .transpose()?;
        Ok(s)
    }
}
