//! `build`: a Dockerfile into the image store, with no daemon and no BuildKit.
//!
//! - [`parse`] splits the file into instructions (directives, comments, continuations,
//!   JSON or text arguments) and [`words`] substitutes variables as Docker does;
//!   [`instr`] turns each into a checked, typed instruction;
//! - [`config`] applies metadata instructions to the image config (also for
//!   `commit --change`).

pub mod config;
pub(crate) mod context;
pub(crate) mod copy;
pub mod exec;
pub mod ignore;
pub mod instr;
pub mod parse;
pub mod plan;
pub mod stdin;
mod step;
pub mod words;

pub use exec::{BuildOptions, BuildResult};
