//! What `build` and `commit --change` decide from a Dockerfile's text: directives,
//! continuations, instructions and flags, variable substitution, the config changes of
//! metadata instructions, stages, and `.dockerignore`/wildcard patterns. Properties
//! (asserted in `codex_engine::build::fuzz_dockerfile`): no panic; only known keywords
//! (never ONBUILD) are accepted; an instruction's joined text parses back to the same
//! keyword; every resolved metadata instruction applies to a config.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    codex_engine::build::fuzz_dockerfile(data);
});
