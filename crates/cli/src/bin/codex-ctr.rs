//! codex-ctr: the engine's command line.

// Every unsafe block says why it is sound; nothing outside tests panics on a value that
// can be absent at run time (make lint and CI enforce both).
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

fn main() {
    std::process::exit(codex_cli::ctr::main());
}
