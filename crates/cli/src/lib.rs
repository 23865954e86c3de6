//! The command-line shells over the codex libraries. They parse, call, print.

pub mod ctr;
pub mod oci;
