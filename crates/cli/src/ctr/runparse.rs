//! `run`'s command line parsed on its own. clap's derive builds every subcommand of
//! [`Cli`] before it looks at the arguments: for the most frequent command, the one on
//! the start path, that was about a third of the CLI's own CPU before it did anything
//! (`perf`, issue 19). This parser knows `run` alone, so its help, usage and errors
//! are the same text (a test compares them); any other command line goes to [`Cli`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::args::{Cli, Command, RunArgs, RUN_EXAMPLES};

#[derive(Debug, Parser)]
#[command(name = "codex-ctr", about = "Containers without a daemon", version)]
struct RunCli {
    /// Engine root (default $CODEX_CTR_ROOT or /var/lib/codex-ctr).
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: RunOnly,
}

#[derive(Debug, Subcommand)]
enum RunOnly {
    /// Create and start a container (attached unless -d).
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
}

/// Parses `argv` as [`Cli`] would: with `run`'s parser alone when `run` is the command.
pub(super) fn parse(argv: &[String]) -> Result<Cli, clap::Error> {
    if argv.get(1).map(String::as_str) != Some("run") {
        return Cli::try_parse_from(argv);
    }
    let RunCli { root, command } = RunCli::try_parse_from(argv)?;
    let RunOnly::Run(run) = command;
    Ok(Cli {
        root,
        command: Command::Run(run),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    /// `run`'s help, and every argument of it, are the same in both parsers.
    #[test]
    fn run_alone_is_run_as_the_whole_command_line_defines_it() {
        let mut whole = Cli::command();
        let mut alone = RunCli::command();
        let help = |c: &mut clap::Command| {
            c.build();
            c.find_subcommand_mut("run")
                .expect("run")
                .render_long_help()
                .to_string()
        };
        assert_eq!(help(&mut whole), help(&mut alone));
        for line in [
            "codex-ctr run --rm -d --name x -e A=1 --network none busybox sh -c true",
            "codex-ctr run --root /r -it busybox",
            "codex-ctr run busybox",
        ] {
            let fast = format!("{:?}", parse(&argv(line)).expect(line));
            let full = format!("{:?}", Cli::try_parse_from(argv(line)).expect(line));
            assert_eq!(fast, full, "{line}");
        }
    }

    /// A bad `run` gets the error the whole parser gives, and so does `--help`.
    #[test]
    fn a_bad_run_line_fails_as_the_whole_parser_fails_it() {
        for line in [
            "codex-ctr run",
            "codex-ctr run --no-such-flag busybox",
            "codex-ctr run --help",
        ] {
            let fast = parse(&argv(line)).expect_err(line);
            let full = Cli::try_parse_from(argv(line)).expect_err(line);
            assert_eq!(fast.kind(), full.kind(), "{line}");
            assert_eq!(fast.to_string(), full.to_string(), "{line}");
        }
    }
}
