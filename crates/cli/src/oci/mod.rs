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
    reexec_early();
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

/// The commands that fork container processes first re-execute from a read-only view
/// of this binary (`codex_runtime::selfclone`, the CVE-2019-5736 defence). Doing it
/// before the arguments are parsed spares the first image the parsing and the logger
/// it would redo after the exec (measured: 0.3 ms of CPU and 75 page faults of each
/// `run`). A guess from argv alone: a wrong yes (an option value spelled `run`) costs
/// one needless re-exec; a wrong no, or a failure here, is met again by `dispatch`,
/// which re-executes, or reports the error, before anything forks.
///
/// A foreground `run` is left alone: its init usually qualifies for the exec
/// trampoline (`codex_runtime::trampoline`), which protects the binary without the
/// re-exec; `dispatch` re-executes when its config does not.
fn reexec_early() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let has = |word: &str| args.iter().any(|a| a == word);
    let forks = has("create") || has("exec") || (has("run") && (has("-d") || has("--detach")));
    if forks {
        let _ = codex_runtime::selfclone::ensure_protected_self();
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
