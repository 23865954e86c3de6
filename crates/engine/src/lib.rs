//! codex-engine: the user's objects — images, containers, volumes, networks — kept in a
//! JSON registry that survives crashes, and run through codex-runtime by a tiny
//! per-container supervisor. No daemon.

// Every unsafe block says why it is sound; nothing outside tests panics on a value that
// can be absent at run time (make lint and CI enforce both).
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod aio;
pub mod check;
pub mod config;
pub mod copy;
pub mod engine;
pub mod error;
pub mod events;
mod exec;
pub mod health;
pub mod image;
mod image_api;
pub mod logread;
pub mod network;
pub mod profile;
pub mod registry;
mod removal;
pub mod restart;
mod restarting;
mod stop;
pub mod supervisor;
pub mod testhook;
pub mod trace;
pub mod usage;
pub mod volume;
pub mod wait;

pub use error::{Error, Result};
