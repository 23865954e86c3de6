//! The engine's test points: [`codex_sys::testhook`], shared with the runtime.

pub use codex_sys::testhook::{die, pause};
