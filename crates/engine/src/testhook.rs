//! The test points of the race and crash tests: see [`codex_sys::testhook`].

pub use codex_sys::testhook::{die, pause};
