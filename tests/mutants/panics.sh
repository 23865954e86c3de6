#!/bin/sh
# Stand-in runtime for the mutant check: crashes like a Rust binary on every call.
# A test that passes with this as CODEX_OCI does not need a working runtime to pass.
echo "thread 'main' panicked at crates/cli/src/bin/codex-oci.rs:1:1:" >&2
echo "called \`Option::unwrap()\` on a \`None\` value (mutant stand-in, args: $*)" >&2
echo "note: run with \`RUST_BACKTRACE=1\` environment variable to display a backtrace" >&2
exit 101
