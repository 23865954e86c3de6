//! The start path's timing trace (`CODEX_TRACE`), shared with the runtime: see
//! [`codex_sys::trace`]. The image store writes a few lines too (a layer unpacked, waited
//! for or reused, a blob requested, waited for or reused: docs/images.md) so concurrency
//! can be checked.

pub use codex_sys::trace::{enabled, phase};
