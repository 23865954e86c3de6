//! The container lifecycle of the OCI runtime spec, one operation per file, as methods
//! of [`Runtime`] (a state root such as `/run/codex-oci`).

mod attached;
pub(crate) mod console;
mod create;
mod delete;
mod events;
pub mod exec;
mod foreground;
pub mod kill;
mod list;
mod pause;
mod start;
mod update;

use std::path::{Path, PathBuf};

pub use attached::Attached;
pub use create::CreateOptions;
pub use exec::ExecOptions;
pub use list::ListEntry;

use crate::error::{Context, Error, Result};
use crate::state::{validate_id, ContainerState, Status};

/// A state root and the operations on the containers in it.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
    warn: Option<fn(&str)>,
}

/// A loaded container: its state and its directory.
pub struct Container {
    pub state: ContainerState,
    pub dir: PathBuf,
}

impl Container {
    pub fn status(&self) -> Status {
        self.state.status(&self.dir)
    }

    fn wrong_state(&self, op: &'static str, needs: &'static str) -> Error {
        Error::WrongState {
            id: self.state.id.clone(),
            status: self.status().to_string(),
            op,
            needs,
        }
    }
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime {
            root: root.into(),
            warn: None,
        }
    }

    /// Where warnings go (failing poststart/poststop hooks, which the spec says must
    /// not fail the operation). Without a handler they are dropped.
    pub fn with_warnings(mut self, f: fn(&str)) -> Runtime {
        self.warn = Some(f);
        self
    }

    pub(crate) fn warn(&self, msg: &str) {
        if let Some(f) = self.warn {
            f(msg);
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn container_dir(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        Ok(self.root.join(id))
    }

    /// Loads a container's state.
    pub fn load(&self, id: &str) -> Result<Container> {
        let dir = self.container_dir(id)?;
        let state = ContainerState::load(&dir, id)?;
        Ok(Container { state, dir })
    }

    /// The OCI state JSON of a container.
    pub fn state(&self, id: &str) -> Result<serde_json::Value> {
        let c = self.load(id)?;
        Ok(c.state.oci_state(&c.dir))
    }

    /// The pids of every process in the container's cgroup.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let c = self.load(id)?;
        Ok(c.state.cgroups.pids())
    }

    /// `linux.seccomp` made ready to load, using the compiled-program cache in the
    /// state root ([`crate::seccomp_cache`]).
    fn prepare_seccomp(
        &self,
        linux: Option<&oci_spec::runtime::Linux>,
    ) -> Result<Option<crate::seccomp::Prepared>> {
        let Some(s) = linux.and_then(|l| l.seccomp().as_ref()) else {
            return Ok(None);
        };
        crate::seccomp::prepare(s, Some(&self.root), &|m| self.warn(m)).map(Some)
    }

    fn ensure_root(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)
            .ctx(|| format!("creating state root {}", self.root.display()))
    }
}
