//! codex-runtime: turns an OCI runtime bundle (config.json + rootfs) into an isolated
//! Linux process and manages it through the lifecycle of the OCI runtime spec.
//!
//! ```no_run
//! use codex_runtime::{CreateOptions, Runtime};
//! codex_runtime::selfclone::ensure_protected_self()?; // re-executes once, if needed
//! let rt = Runtime::new("/run/codex-oci");
//! let opts = CreateOptions { bundle: "/path/to/bundle".into(), ..Default::default() };
//! let code = rt.run("demo", &opts)?;
//! # Ok::<(), codex_runtime::Error>(())
//! ```
//!
//! The process calling `create`, `run` or `exec` must be single-threaded (they fork)
//! and must run from a binary a container cannot write: call
//! [`selfclone::ensure_protected_self`] at the start of `main`. Both are checked, and a
//! caller that breaks either gets an error saying so. A foreground `run` whose init no
//! container process can see before its exec needs no protected binary: it execs the
//! program through [`trampoline`].

// Every unsafe block says why it is sound; nothing outside tests panics on a value that
// can be absent at run time (make lint and CI enforce both).
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cgroups;
pub mod container;
pub mod error;
pub mod features;
pub mod hooks;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod seccomp_bpf;
pub mod seccomp_cache;
pub mod seccomp_default;
pub mod seccomp_notify;
pub mod security;
pub mod selfclone;
pub mod spec;
pub mod state;
pub mod sys;
pub mod terminal;
pub mod trampoline;

pub use container::exec::ExecOutcome;
pub use container::kill::parse_signal;
pub use container::{Attached, Container, CreateOptions, ExecOptions, ListEntry, Runtime};
pub use error::{Error, Result};
pub use state::Status;
