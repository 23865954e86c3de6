#!/bin/sh
# Stand-in runtime for the mutant check: accepts every call, does nothing, exits 0.
# A test that passes with this as CODEX_OCI does not check that anything happened.
exit 0
