//! codex-api: the Docker Engine API over codex-engine, so the docker CLI and Docker's
//! SDKs drive codex-ctr unchanged (`codex-ctr serve`). A thin layer: every request is
//! answered from the engine's own state (the registry, the image store, the events
//! file), so the CLI and the API see the same objects and containers outlive the
//! server. The only things kept in memory are Docker's exec instances, which Docker too
//! keeps in memory only. See docs/docker-api.md.

// Every unsafe block says why it is sound; nothing outside tests panics on a value that
// can be absent at run time (make lint and CI enforce both).
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
// Docker's inspect document is one large `json!`.
#![recursion_limit = "256"]

mod archive;
mod attach;
mod body;
mod build;
mod commit;
mod containers;
mod create;
mod error;
mod events;
mod exec;
mod filters;
mod images;
mod inspect;
mod logs;
mod networks;
mod query;
mod resources;
mod router;
mod security;
mod server;
mod stats;
mod system;
mod tarstream;
pub mod tls;
mod top;
mod update;
mod volumes;
mod wait;

pub use server::{serve, ServeOptions};

/// The API version this server speaks (what `/version` and `/_ping` announce).
pub const API_VERSION: &str = "1.47";
/// The oldest API version a client may ask for.
pub const MIN_API_VERSION: &str = "1.24";
