//! codex-bot-executor: an example of embedding codex-engine. It reads a file of bots,
//! runs each in a container on an engine root, lets the engine heal them (restart
//! policies, `restart_on_unhealthy`, a memory ceiling as `--stop-on-memory`), shows a
//! live status line per bot, and on SIGINT or SIGTERM stops and removes everything it
//! created. See docs/embedding.md.

// Nothing outside tests panics on a value that can be absent at run time.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod args;
mod bots;
mod executor;
mod fleet;
mod status;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match args::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("codex-bot-executor: {e:#}");
            return ExitCode::from(2);
        }
    };
    // One thread runs the loop; the engine's short blocking calls go to tokio's
    // blocking pool. Nothing here forks this process (no exec), so threads are fine.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("codex-bot-executor: starting the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(executor::run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("codex-bot-executor: {e:#}");
            ExitCode::FAILURE
        }
    }
}
