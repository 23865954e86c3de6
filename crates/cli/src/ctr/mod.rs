//! `codex-ctr`: Docker-like commands over codex-engine. Parse, call, print.

mod args;
mod attach;
mod build;
mod commands;
mod create;
mod dashboard;
mod diff;
mod image;
mod listing;
mod manpages;
mod monflags;
mod monitors;
mod netargs;
mod netflags;
mod network;
mod ops;
mod ports;
mod progress;
mod runparse;
mod schedflags;
mod secflags;
mod serve;
mod template;
mod terminal;

/// Docker's exit codes for a failed command: 126 when the container's program could
/// not be executed, 127 when it was not found (typed by the runtime, carried through the
/// supervisor's report), 125 for every other engine error.
fn exit_code_for(err: &anyhow::Error) -> i32 {
    err.chain()
        .find_map(|e| {
            e.downcast_ref::<codex_engine::error::Error>()
                .and_then(|e| e.exec_code())
                .or_else(|| match e.downcast_ref::<codex_runtime::Error>() {
                    Some(codex_runtime::Error::Exec { code, .. }) => Some(*code),
                    _ => None,
                })
        })
        .unwrap_or(125)
}

/// A reader that goes away (`codex-ctr ps | head -1`) ends the command as it ends other
/// Unix tools: by SIGPIPE (exit 141 in a shell). Rust ignores SIGPIPE, which turns the
/// next `println!` into a panic. Only for commands that hold no container state while
/// writing; the attached `run`/`start -a` handle a closed reader themselves. The
/// supervisor this process may spawn is a fresh exec of a Rust binary, which ignores
/// SIGPIPE again, and containers get default dispositions from the runtime.
fn die_on_closed_stdout() {
    // SAFETY: setting a signal's disposition to the default touches no memory; done
    // before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Docker's `container` group: `container ls` is `ps`, `container X` is `X`.
fn container_group(mut argv: Vec<String>) -> Vec<String> {
    if argv.get(1).map(String::as_str) == Some("container") {
        argv.remove(1);
        if matches!(argv.get(1).map(String::as_str), Some("ls" | "list")) {
            argv[1] = "ps".into();
        }
    }
    argv
}

pub fn main() -> i32 {
    let argv: Vec<String> = container_group(std::env::args().collect());
    codex_engine::trace::phase(if argv.get(1).map(String::as_str) == Some("__supervise") {
        "sup: exec'd"
    } else {
        "cli: main"
    });
    // The supervisor: a hidden mode, started by the engine itself.
    if argv.get(1).map(String::as_str) == Some("__supervise") {
        // The container's init is a fork of this process: run from a read-only view
        // of the binary first (the CVE-2019-5736 class; see codex-runtime selfclone).
        if let Err(e) = codex_runtime::selfclone::ensure_protected_self() {
            eprintln!("codex-ctr: {e}");
            return 1;
        }
        codex_engine::trace::phase("sup: protected self");
        // `--root ROOT ID`, and `--root ROOT ID --finish ...` when codex-shim execs
        // back once the container has exited.
        return codex_engine::supervisor::main(&argv[2..]);
    }
    // One health probe, started by a supervisor (see codex_engine::health::probe).
    if argv.get(1).map(String::as_str) == Some("__health") {
        // A fork of this process enters the container (exec): protected, as above.
        if let Err(e) = codex_runtime::selfclone::ensure_protected_self() {
            eprintln!("codex-ctr: {e}");
            return 2;
        }
        return codex_engine::health::probe::main(&argv[2..]);
    }
    let cli = match runparse::parse(&argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 125 } else { 0 };
        }
    };
    if !cli.command.streams_a_container() {
        die_on_closed_stdout();
    }
    if matches!(cli.command, args::Command::Exec { .. }) {
        if let Err(e) = codex_runtime::selfclone::ensure_protected_self() {
            eprintln!("codex-ctr: {e}");
            return 125;
        }
    }
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("codex-ctr: {e:#}");
            exit_code_for(&e)
        }
    }
}
