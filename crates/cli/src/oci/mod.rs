//! `codex-oci`: the runc command line, so containerd, podman and Kubernetes can use
//! codex-runtime in place of runc.

mod args;
pub(crate) mod commands;
mod log;

use clap::Parser;

pub use args::Cli;

/// `events --interval`'s parser, for the fuzz target in `fuzz/`.
#[doc(hidden)]
pub use commands::parse_duration as parse_interval;

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let argv: Vec<String> = std::env::args().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    if cli.version {
        print!("{}", version_text());
        return 0;
    }
    let logger = log::Logger::new(cli.log.clone(), cli.log_format.clone(), cli.debug);
    log::install(logger.clone());
    logger.debug(&format!("invoked as {argv:?}"));
    match commands::dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            logger.error(&msg);
            1
        }
    }
}

pub fn version_text() -> String {
    format!(
        "codex-oci version {}\ncommit: {}\nspec: {}\n",
        env!("CARGO_PKG_VERSION"),
        option_env!("CODEX_GIT_COMMIT").unwrap_or("unknown"),
        codex_runtime::spec::OCI_VERSION
    )
}
