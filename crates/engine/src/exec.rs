//! `exec`: a process run in a running container with the container's own settings,
//! changed as the caller asks (args, env, cwd, user, terminal).

use std::path::PathBuf;

use crate::config::ContainerConfig;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::registry::{ContainerRecord, ContainerStatus};

/// What [`Engine::exec`] runs and how.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub args: Vec<String>,
    /// Extra `KEY=VALUE`s (replacing the container's of the same key).
    pub env: Vec<String>,
    pub cwd: Option<String>,
    /// `USER[:GROUP]`: numbers, or names from the container's /etc/passwd.
    pub user: Option<String>,
    /// Give the process a terminal.
    pub tty: bool,
    /// Connect the caller's stdin.
    pub interactive: bool,
}

/// Rows and columns of the caller's terminal, if stdin is one.
fn terminal_size() -> Option<(u64, u64)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize we pass; fd 0 may not be a tty (then -1).
    let rc = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0).then(|| (u64::from(ws.ws_row), u64::from(ws.ws_col)))
}

impl Engine {
    /// `exec -u`: numbers as given; names (`www`, `www:staff`) from the running
    /// container's own /etc/passwd and /etc/group, read through its merged root.
    fn exec_user(&self, rec: &ContainerRecord, user: &str) -> Result<String> {
        if user.split(':').all(|p| p.parse::<u32>().is_ok()) {
            return Ok(user.to_string());
        }
        let dir = self.container_dir(&rec.id)?;
        // Held while the files are read: the rootfs is mounted in the supervisor's
        // mount namespace only.
        let live = if dir.join("lowers").exists() {
            Some(self.live_rootfs(rec, &dir)?)
        } else {
            None // minimal isolation: the host's root, refused for names
        };
        let roots: Vec<PathBuf> = live.iter().map(|l| l.path()).collect();
        let mut cfg = ContainerConfig {
            user: Some(user.to_string()),
            ..Default::default()
        };
        crate::image::resolve_named_user(&roots, &mut cfg)?;
        Ok(cfg.user.unwrap_or_default())
    }

    /// Runs a process in a running container with the container's own process
    /// settings changed as `req` asks. The caller's stdout and stderr are the process's
    /// (its stdin too with `req.interactive`; with `req.tty`, this process is the
    /// terminal's proxy). Returns its exit code.
    ///
    /// Forks: the calling process must be single-threaded (the CLI is).
    pub fn exec(&self, reference: &str, req: &ExecRequest) -> Result<i32> {
        let (args, env, cwd, user) = (&req.args, &req.env, req.cwd.as_deref(), req.user.as_deref());
        let rec = self.get_in(reference, &[ContainerStatus::Running], "it must be running")?;
        if args.is_empty() {
            return Err(Error::invalid("command", "exec needs a command"));
        }
        let rt = self.runtime();
        let c = rt.load(&rec.id)?;
        let mut p = c.state.config.process().clone().unwrap_or_default();
        p.set_args(Some(args.to_vec()));
        p.set_terminal(Some(req.tty));
        if req.tty {
            let size = terminal_size();
            p.set_console_size(size.and_then(|(rows, cols)| {
                oci_spec::runtime::BoxBuilder::default()
                    .height(rows)
                    .width(cols)
                    .build()
                    .ok()
            }));
        }
        let mut all_env = p.env().clone().unwrap_or_default();
        for e in env {
            let key = e.split('=').next().unwrap_or_default();
            all_env.retain(|x| x.split('=').next() != Some(key));
            all_env.push(e.clone());
        }
        p.set_env(Some(all_env));
        if let Some(d) = cwd {
            p.set_cwd(PathBuf::from(d));
        }
        if let Some(u) = user {
            let u = &self.exec_user(&rec, u)?;
            let mut parts = u.split(':').map(|x| x.parse::<u32>());
            let uid = parts
                .next()
                .and_then(|x| x.ok())
                .ok_or_else(|| Error::invalid("user", format!("{u:?} is not UID[:GID]")))?;
            let gid = match parts.next() {
                Some(Ok(g)) => g,
                Some(Err(_)) => {
                    return Err(Error::invalid("user", format!("{u:?} is not UID[:GID]")))
                }
                None => uid,
            };
            p.user_mut().set_uid(uid);
            p.user_mut().set_gid(gid);
        }
        let opts = codex_runtime::ExecOptions {
            process: p,
            detach: false,
            pid_file: None,
            console_socket: None,
            preserve_fds: 0,
            no_stdin: !req.interactive,
            ..Default::default()
        };
        match rt.exec(&rec.id, &opts)? {
            codex_runtime::ExecOutcome::Exited(code) => Ok(code),
            codex_runtime::ExecOutcome::Detached(_) => Ok(0),
        }
    }
}
