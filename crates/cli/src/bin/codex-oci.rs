//! codex-oci: runc's command line over codex-runtime.

fn main() {
    std::process::exit(codex_cli::oci::main());
}
