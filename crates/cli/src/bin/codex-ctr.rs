//! codex-ctr: the engine's command line.

fn main() {
    std::process::exit(codex_cli::ctr::main());
}
