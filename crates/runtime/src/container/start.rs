//! `start`: releases a created container's init to run the user's program.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use super::Runtime;
use crate::error::{Context, Error, Result};
use crate::hooks::{self, HookKind};
use crate::process::sync::{Channel, Msg};
use crate::state::{Status, START_SOCKET};

impl Runtime {
    /// Starts a created container. Returns once the program runs (or failed to, with
    /// the init's error), then runs the poststart hooks.
    pub fn start(&self, id: &str) -> Result<()> {
        self.start_created(&self.load(id)?)
    }

    /// [`Runtime::start`] of the container a [`Runtime::create`] of this process
    /// returned (or a [`Runtime::load`]): its state is not read again.
    pub fn start_created(&self, c: &super::Container) -> Result<()> {
        let id = c.state.id.as_str();
        if c.status() != Status::Created {
            return Err(c.wrong_state("start", "needs a created container"));
        }
        let dir = crate::rootfs::mount::open_path(&c.dir).ctx(|| "opening the state directory")?;
        let path = PathBuf::from(format!("/proc/self/fd/{}/{START_SOCKET}", dir.as_raw_fd()));
        let ch = Channel::connect(&path).ctx(|| format!("connecting to container {id}"))?;
        // The init closes the connection by exec'ing (close-on-exec) or reports why not.
        match ch.recv() {
            Ok(None) => {}
            Ok(Some(m @ (Msg::Error(_) | Msg::ExecFailed { .. }))) => {
                return Err(m
                    .into_error()
                    .unwrap_or_else(|| Error::Other("failed".into())))
            }
            Ok(Some(m)) => {
                return Err(Error::Other(format!(
                    "unexpected message from the container: {m:?}"
                )))
            }
            Err(e) => return Err(e).ctx(|| "waiting for the container to start"),
        }
        codex_sys::trace::phase("rt: started");
        self.poststart(&c.state, &c.dir);
        Ok(())
    }

    pub(super) fn poststart(&self, state: &crate::state::ContainerState, dir: &std::path::Path) {
        if let Some(h) = state.config.hooks().as_ref() {
            // The hook is about the program that was just started: it sees it running
            // with its pid even if it has already exited by the time the hook runs.
            let mut st = state.oci_state(dir);
            st["status"] = "running".into();
            st["pid"] = state.pid.into();
            // The spec: a failing poststart hook is a warning; the other hooks still
            // run and the container runs on.
            for e in hooks::run_all(HookKind::Poststart, h, &st) {
                self.warn(&e.to_string());
            }
        }
    }
}
