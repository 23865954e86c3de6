//! The engine for tokio programs. What waits on a container (its exit, its log) waits
//! on file descriptors registered with tokio (a pidfd of the supervisor, an inotify
//! watch of the log), so thousands of waits cost no threads. The short blocking calls
//! (create, start, stop, remove) run on tokio's blocking pool.
//!
//! `exec` is not offered here: it forks, which needs a single-threaded caller.
//!
//! ```no_run
//! use std::time::Duration;
//! use codex_engine::aio::AsyncEngine;
//! use codex_engine::config::ContainerConfig;
//! use codex_engine::engine::Engine;
//! use codex_engine::logread::LogQuery;
//!
//! # async fn demo() -> codex_engine::Result<()> {
//! let engine = Engine::open("/var/lib/my-app".as_ref(), "/usr/local/bin/codex-ctr".into())?;
//! let eng = AsyncEngine::new(engine);
//! let rec = eng
//!     .create(ContainerConfig {
//!         name: Some("job".into()),
//!         image: Some("busybox".into()),
//!         command: vec!["sh".into(), "-c".into(), "echo hello; exit 3".into()],
//!         ..Default::default()
//!     })
//!     .await?;
//! // Opened before the start with an empty backlog: no line can be missed.
//! let query = LogQuery { tail: Some(0), ..Default::default() };
//! let mut log = eng.follow_logs(&rec.id, query)?;
//! eng.start(&rec.id).await?;
//! while let Some(lines) = log.next().await? {
//!     for l in lines {
//!         println!("{}: {}", l.stream, l.log);
//!     }
//! }
//! assert_eq!(eng.wait(&rec.id).await?, Some(3));
//! eng.remove(&rec.id, false, false).await?;
//! # let _ = Duration::ZERO;
//! # Ok(())
//! # }
//! ```

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use crate::config::ContainerConfig;
use crate::engine::{is_live, Engine};
use crate::error::{Context, Error, Result};
use crate::logread::{Followed, LogFollower, LogQuery};
use crate::registry::ContainerRecord;
use crate::supervisor::logs::LogLine;
use crate::usage::ContainerUsage;

/// Longest sleep between looks at the record, should an fd never wake us.
const RECHECK: Duration = Duration::from_secs(1);

/// An [`Engine`] shared by tasks.
#[derive(Clone)]
pub struct AsyncEngine {
    inner: Arc<Engine>,
}

impl AsyncEngine {
    pub fn new(engine: Engine) -> Self {
        AsyncEngine {
            inner: Arc::new(engine),
        }
    }

    /// The synchronous engine, for calls that do not wait (get, list, inspect...).
    pub fn engine(&self) -> &Engine {
        &self.inner
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let engine = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&engine))
            .await
            .map_err(|e| Error::Io {
                context: "running an engine call".into(),
                cause: std::io::Error::other(e.to_string()),
            })?
    }

    pub async fn create(&self, config: ContainerConfig) -> Result<ContainerRecord> {
        self.blocking(move |e| e.create(config)).await
    }

    /// Returns once the container runs (or with the error that kept it from starting).
    pub async fn start(&self, reference: &str) -> Result<ContainerRecord> {
        let r = reference.to_string();
        self.blocking(move |e| e.start(&r)).await
    }

    pub async fn stop(&self, reference: &str, timeout: Duration) -> Result<ContainerRecord> {
        let r = reference.to_string();
        self.blocking(move |e| e.stop(&r, timeout)).await
    }

    pub async fn remove(&self, reference: &str, force: bool, volumes: bool) -> Result<()> {
        let r = reference.to_string();
        self.blocking(move |e| e.remove(&r, force, volumes)).await
    }

    /// Sends `signal` to every process of a running container (see [`Engine::kill`]).
    pub async fn kill(&self, reference: &str, signal: i32) -> Result<()> {
        let r = reference.to_string();
        self.blocking(move |e| e.kill(&r, signal)).await
    }

    /// Stops (if running) and starts again, counting a restart (see [`Engine::restart`]).
    pub async fn restart(&self, reference: &str, timeout: Duration) -> Result<ContainerRecord> {
        let r = reference.to_string();
        self.blocking(move |e| e.restart(&r, timeout)).await
    }

    /// Waits until the container meets `cond` or `timeout` passes (see
    /// [`Engine::wait_for`]). The wait sleeps in `poll(2)` on tokio's blocking pool:
    /// one pool thread per wait under way (tokio's pool has 512 by default); for
    /// thousands of concurrent waits on exits, use [`AsyncEngine::wait`].
    pub async fn wait_for(
        &self,
        reference: &str,
        cond: crate::wait::WaitCondition,
        timeout: Option<Duration>,
    ) -> Result<crate::wait::WaitOutcome> {
        let r = reference.to_string();
        self.blocking(move |e| e.wait_for(&r, cond, timeout)).await
    }

    /// The lines of a container's log that `query` selects (see [`Engine::logs`]).
    pub async fn logs(&self, reference: &str, query: LogQuery) -> Result<Vec<LogLine>> {
        let r = reference.to_string();
        self.blocking(move |e| e.logs(&r, &query)).await
    }

    /// CPU %, memory, pids and block I/O over `window` (see [`Engine::usage`]); the
    /// window is slept on the blocking pool, not on the caller's task.
    pub async fn usage(
        &self,
        references: Vec<String>,
        window: Duration,
    ) -> Result<Vec<ContainerUsage>> {
        self.blocking(move |e| e.usage(&references, window)).await
    }

    /// Waits until the container is no longer running; its exit code, `None` when it
    /// is not known (see [`Engine::wait`]).
    pub async fn wait(&self, reference: &str) -> Result<Option<i32>> {
        loop {
            let rec = self.inner.get(reference)?;
            if !is_live(rec.status) {
                return Ok(rec.exit_code);
            }
            match supervisor_pidfd(&rec) {
                Some(fd) => wait_readable(fd).await?,
                // Between supervisors: look again shortly.
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// Follows a container's log (see [`Engine::follow_logs`]).
    pub fn follow_logs(&self, reference: &str, query: LogQuery) -> Result<AsyncLogFollow> {
        let rec = self.inner.get(reference)?;
        let max_files = serde_json::from_value::<ContainerConfig>(rec.config.clone())
            .unwrap_or_default()
            .log_rotation()
            .max_files;
        let follower = LogFollower::open(
            &self.inner.container_dir(&rec.id)?,
            crate::engine::LOG_FILE,
            max_files,
            query,
        )?;
        let wake = follower
            .wake_fd()
            .try_clone_to_owned()
            .ctx(|| "duplicating the inotify fd")?;
        Ok(AsyncLogFollow {
            engine: self.inner.clone(),
            id: rec.id,
            follower,
            wake: register(wake)?,
        })
    }
}

fn supervisor_pidfd(rec: &ContainerRecord) -> Option<OwnedFd> {
    rec.supervisor_pidfd()
}

/// Registers an owned fd with tokio's reactor, for readability.
fn register(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open and the same for the
    // AsyncFd's whole life, and OwnedFd::as_raw_fd always returns it.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.map_err(|e| {
        Error::Io {
            context: "registering an fd with the tokio reactor".into(),
            cause: e.into_parts().1,
        }
    })
}

/// Waits until `fd` is readable (a pidfd: the process exited), or [`RECHECK`].
async fn wait_readable(fd: OwnedFd) -> Result<()> {
    let afd = register(fd)?;
    let _ = tokio::time::timeout(RECHECK, afd.readable()).await;
    Ok(())
}

/// A container's log as it grows, for async callers.
pub struct AsyncLogFollow {
    engine: Arc<Engine>,
    id: String,
    follower: LogFollower,
    wake: AsyncFd<OwnedFd>,
}

impl AsyncLogFollow {
    /// The next lines (the backlog first), or `None` once the container has stopped
    /// and everything it wrote was returned.
    pub async fn next(&mut self) -> Result<Option<Vec<LogLine>>> {
        loop {
            let mut pidfd = None;
            let (engine, id) = (&self.engine, self.id.as_str());
            let got = self.follower.poll(Duration::ZERO, || {
                let rec = match engine.get(id) {
                    Ok(r) => r,
                    Err(Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                };
                if !is_live(rec.status) {
                    return Ok(None);
                }
                pidfd = supervisor_pidfd(&rec);
                // The pidfd is awaited below rather than polled inside.
                Ok(Some(None))
            })?;
            match got {
                Followed::Lines(l) => return Ok(Some(l)),
                Followed::Ended => return Ok(None),
                Followed::Idle => {}
            }
            let exited = async {
                match pidfd {
                    Some(fd) => wait_readable(fd).await,
                    None => {
                        tokio::time::sleep(RECHECK).await;
                        Ok(())
                    }
                }
            };
            tokio::select! {
                ready = self.wake.readable() => {
                    if let Ok(mut guard) = ready {
                        guard.clear_ready();
                    }
                }
                r = exited => r?,
            }
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}
