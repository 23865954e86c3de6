//! A create whose start goes over a channel only the creating process holds: what a
//! foreground `run` does between its create and its wait, for a library caller that
//! needs the two apart (the engine's supervisor plugs the network in between).
//!
//! Nothing but this process can start such a container (it has no start socket), and
//! its init exits when this process goes before the start. That is what lets it run
//! from a writable binary as a foreground `run` may: when the init qualifies, it execs
//! its program through the exec trampoline (see [`crate::trampoline`]), and `exec`
//! refuses to join it until its program runs. Otherwise an unprotected caller gets
//! [`Error::Unprotected`] naming why, before anything is made.

use std::os::fd::OwnedFd;

use super::create::{CreateOptions, Created};
use super::{Container, Runtime};
use crate::error::{Context, Error, Result};
use crate::process::sync::Msg;

/// A created container whose init waits for [`Runtime::start_attached`].
pub struct Attached {
    created: Created,
    sync_record: bool,
}

impl Attached {
    /// The container as its create recorded it.
    pub fn container(&self) -> &Container {
        &self.created.container
    }
}

impl Runtime {
    /// `create`, started by [`Runtime::start_attached`] of this process only.
    pub fn create_attached(&self, id: &str, opts: &CreateOptions) -> Result<Attached> {
        let bundle = crate::spec::Bundle::load(&opts.bundle)?;
        Ok(Attached {
            created: self.create_inner(id, opts, bundle, Some("create_attached"), None)?,
            sync_record: !opts.unsynced_state,
        })
    }

    /// [`Runtime::create_attached`] with `console` in place of `--console-socket`, as
    /// [`Runtime::create_with_console`].
    pub fn create_attached_with_console(
        &self,
        id: &str,
        opts: &CreateOptions,
        console: OwnedFd,
    ) -> Result<Attached> {
        let bundle = crate::spec::Bundle::load(&opts.bundle)?;
        Ok(Attached {
            created: self.create_inner(id, opts, bundle, Some("create_attached"), Some(console))?,
            sync_record: !opts.unsynced_state,
        })
    }

    /// Starts a container of [`Runtime::create_attached`]. Returns once its program
    /// runs (or with why it could not), after the poststart hooks.
    pub fn start_attached(&self, attached: Attached) -> Result<Container> {
        let Attached {
            created,
            sync_record,
        } = attached;
        start_over_channel(self, &created, sync_record)?;
        codex_sys::trace::phase("rt: started");
        self.poststart(&created.container.state, &created.container.dir);
        Ok(created.container)
    }
}

/// Sends the init its start and waits until its program runs: the channel's end (it
/// is close-on-exec) or the error that kept the program from running.
pub(super) fn start_over_channel(rt: &Runtime, created: &Created, sync_record: bool) -> Result<()> {
    let c = &created.container;
    created
        .channel
        .send(&Msg::Start)
        .ctx(|| "starting the container")?;
    if sync_record {
        // The record went into place unsynced before `Committed` (a rename: a runtime
        // killed from then on leaves it whole). Its fsync, a journal commit on a
        // disk-backed root, runs here, while the init drops its privileges and execs,
        // instead of before `Committed` on the start path. A host crash before it may
        // leave the record unwritten, as a crash during any create may leave the
        // create-in-progress record; the container dies with the host either way.
        if let Err(e) = crate::state::ContainerState::sync(&c.dir) {
            rt.warn(&e.to_string());
        }
    }
    match created.channel.recv() {
        Ok(None) => Ok(()),
        Ok(Some(m @ (Msg::Error(_) | Msg::ExecFailed { .. }))) => Err(m
            .into_error()
            .unwrap_or_else(|| Error::Other("failed".into()))),
        Ok(Some(Msg::ProgramExecFailed(errno))) => Err(program_exec_failed(c, errno)),
        Ok(Some(m)) => Err(Error::Other(format!(
            "unexpected message from the container: {m:?}"
        ))),
        Err(e) => Err(e).ctx(|| "waiting for the container to start"),
    }
}

/// The error of a program the exec trampoline could not exec, as a direct exec would
/// have reported it (see `Program::exec`).
fn program_exec_failed(c: &Container, errno: i32) -> Error {
    let errno = nix::errno::Errno::from_raw(errno);
    let program = c
        .state
        .config
        .process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .and_then(|a| a.first().cloned())
        .unwrap_or_default();
    Error::Exec {
        code: if errno == nix::errno::Errno::ENOENT {
            127
        } else {
            126
        },
        message: format!("exec {program:?}: {}", errno.desc()),
    }
}
