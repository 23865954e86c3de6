//! codex-engine: the user's objects — images, containers, volumes, networks — kept in a
//! JSON registry that survives crashes, and run through codex-runtime by a tiny
//! per-container supervisor. No daemon.
//!
//! The walkthrough is `docs/embedding.md`; the examples below compile with
//! `cargo test --doc -p codex-engine`. Those that need root and a real container are
//! `no_run`.
//!
//! # Opening an engine
//!
//! An engine is a root directory (its registry, images, volumes, logs and events) and
//! the binary whose `__supervise` mode supervises a container: the `codex-ctr` binary.
//! Two programs (or a program and the `codex-ctr` CLI) may use one root at once: every
//! change is a transaction under a lock.
//!
//! ```no_run
//! use codex_engine::engine::Engine;
//! let engine = Engine::open("/var/lib/my-bots".as_ref(), "/usr/local/bin/codex-ctr".into())?;
//! // Images come in as the CLI's `image load` / `image import` / `pull` put them:
//! println!("{} images", engine.images()?.list()?.len());
//! # Ok::<(), codex_engine::Error>(())
//! ```
//!
//! # A container: create, start, wait, logs, remove
//!
//! [`config::ContainerConfig`] is what `codex-ctr create` builds from its flags; every
//! field has a default, and [`engine::Engine::create`] validates it with errors naming
//! the field (checkable without root, as here):
//!
//! ```
//! use codex_engine::config::{parse_memory, ContainerConfig, Isolation, Limits};
//! use codex_engine::health::{HealthCheck, HealthProbe};
//! use codex_engine::restart::RestartPolicy;
//!
//! let mut check = HealthCheck::new(HealthProbe::Tcp { port: 8080 });
//! check.interval_ms = 2_000;
//! let config = ContainerConfig {
//!     name: Some("web".into()),
//!     image: Some("busybox".into()),
//!     command: vec!["httpd".into(), "-f".into(), "-p".into(), "8080".into()],
//!     isolation: Isolation::Standard,
//!     limits: Limits {
//!         memory: Some(parse_memory("memory", "64m")?),
//!         pids: Some(64),
//!         ..Default::default()
//!     },
//!     restart: RestartPolicy::parse("restart", "on-failure:5")?,
//!     health: Some(check),
//!     restart_on_unhealthy: true,
//!     ..Default::default()
//! };
//! config.validate()?;
//!
//! // A bad value is refused naming its field, before anything is made.
//! let bad = ContainerConfig { limits: Limits { pids: Some(0), ..Default::default() }, ..config };
//! let err = bad.validate().unwrap_err();
//! assert!(matches!(err, codex_engine::Error::Invalid { ref field, .. } if field == "limits.pids"));
//! # Ok::<(), codex_engine::Error>(())
//! ```
//!
//! Running it (root; the image must be in the root's store):
//!
//! ```no_run
//! use std::time::Duration;
//! use codex_engine::config::ContainerConfig;
//! use codex_engine::engine::Engine;
//! use codex_engine::logread::LogQuery;
//!
//! let engine = Engine::open("/var/lib/my-bots".as_ref(), "/usr/local/bin/codex-ctr".into())?;
//! let rec = engine.create(ContainerConfig {
//!     name: Some("hello".into()),
//!     image: Some("busybox".into()),
//!     command: vec!["sh".into(), "-c".into(), "echo hi; exit 3".into()],
//!     ..Default::default()
//! })?;
//! // Returns once the container runs, or with the error that kept it from starting
//! // (a missing program is `Error::Runtime` with `exec_code()` 127).
//! engine.start(&rec.id)?;
//! // The exit code; `None` only when it is not known (the record's `error` says why).
//! let code = engine.wait(&rec.id)?;
//! assert_eq!(code, Some(3));
//! for line in engine.logs(&rec.id, &LogQuery::default())? {
//!     println!("{} {}: {}", line.time, line.stream, line.log);
//! }
//! engine.remove(&rec.id, false, false)?;
//! # let _ = Duration::ZERO;
//! # Ok::<(), codex_engine::Error>(())
//! ```
//!
//! # Following a log
//!
//! ```no_run
//! use std::time::Duration;
//! use codex_engine::logread::{Followed, LogQuery};
//! # let engine = codex_engine::engine::Engine::open("/r".as_ref(), "/x".into())?;
//! let mut follow = engine.follow_logs("web", LogQuery { tail: Some(10), ..Default::default() })?;
//! loop {
//!     match follow.poll(Duration::from_secs(1))? {
//!         Followed::Lines(lines) => lines.iter().for_each(|l| println!("{}", l.log)),
//!         Followed::Idle => {} // nothing new; a good moment for other work
//!         Followed::Ended => break, // it stopped and everything it wrote was returned
//!     }
//! }
//! # Ok::<(), codex_engine::Error>(())
//! ```
//!
//! # Usage, stats, exec, stop
//!
//! ```no_run
//! use std::time::Duration;
//! use codex_engine::engine::ExecRequest;
//! # let engine = codex_engine::engine::Engine::open("/r".as_ref(), "/x".into())?;
//! // CPU % needs two samples: one window for every container asked about.
//! for u in engine.usage(&["web".to_string()], Duration::from_millis(500))? {
//!     println!("{}: {:.1}% cpu, {} of {} bytes", u.name, u.cpu_percent, u.memory_usage, u.memory_limit);
//! }
//! // The raw counters, in the runtime's `events --stats` shape.
//! let raw = engine.stats("web")?;
//! println!("{}", raw["pids"]["current"]);
//! // Exec forks this process: call it from a single-threaded program only, after
//! // `codex_runtime::selfclone::ensure_protected_self()` at the top of `main`.
//! let code = engine.exec("web", &ExecRequest { args: vec!["true".into()], ..Default::default() })?;
//! assert_eq!(code, 0);
//! // The stop signal, SIGKILL after 10 s; a user's stop is never undone by the policy.
//! engine.stop("web", Duration::from_secs(10))?;
//! # Ok::<(), codex_engine::Error>(())
//! ```
//!
//! # Waiting for a condition, reading events
//!
//! ```no_run
//! use std::time::Duration;
//! use codex_engine::wait::{WaitCondition, WaitOutcome};
//! # let engine = codex_engine::engine::Engine::open("/r".as_ref(), "/x".into())?;
//! match engine.wait_for("web", WaitCondition::Healthy, Some(Duration::from_secs(60)))? {
//!     WaitOutcome::Reached(_) => println!("web answers"),
//!     WaitOutcome::TimedOut(rec) => println!("still {:?}", rec.map(|r| r.status)),
//! }
//! let mut events = engine.events()?;
//! for e in events.read_new()? {
//!     println!("{} {} {}", e.time, e.name, e.action);
//! }
//! events.wait(Duration::from_secs(5))?; // sleeps until the events file changes
//! # Ok::<(), codex_engine::Error>(())
//! ```
//!
//! For tokio programs: [`aio::AsyncEngine`] and [`aio_events::EventSubscription`].
//!
//! # Threads
//!
//! [`engine::Engine`] is `Send + Sync`. Every call but [`engine::Engine::exec`] may come
//! from any thread: `start` spawns the supervisor with `std::process::Command` (fork and
//! exec, the child calling only the async-signal-safe `setsid` and `dup2` in between,
//! which is safe from a multi-threaded process), and the container itself is made by
//! that supervisor, never in the caller; the other calls work with files, locks,
//! signals, netlink and child processes (`nft`, through `Command` as well), and raw
//! `fork` appears only in the supervisor's and the health probe's own processes.
//! `exec` forks the caller (codex-runtime's exec): it returns
//! `codex_runtime::Error::MultiThreaded` from a process with more than one thread, and
//! `Unprotected` unless the caller runs from a read-only view of its binary
//! (`codex_runtime::selfclone::ensure_protected_self()` first in `main`).
//!
//! ```
//! fn shared<T: Send + Sync>() {}
//! shared::<codex_engine::engine::Engine>();
//! shared::<codex_engine::aio::AsyncEngine>();
//! ```

// Every unsafe block says why it is sound; nothing outside tests panics on a value that
// can be absent at run time (make lint and CI enforce both).
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod aio;
pub mod aio_events;
pub mod attach;
pub mod build;
pub mod check;
pub mod commit_api;
pub mod config;
pub mod copy;
pub mod df;
pub mod diff_api;
pub mod engine;
pub mod error;
pub mod events;
mod exec;
mod follow;
mod forked_start;
pub mod health;
pub mod history;
pub mod image;
mod image_api;
pub mod logread;
pub mod network;
mod parallel;
pub mod plot;
pub mod profile;
pub mod registry;
mod removal;
pub mod restart;
mod restarting;
pub mod run_end;
mod start;
mod stop;
pub mod supervisor;
pub mod testhook;
pub mod top;
pub mod trace;
pub mod update;
pub mod usage;
pub mod volume;
pub mod wait;

pub use error::{Error, Result};
pub use start::PreparedStart;
