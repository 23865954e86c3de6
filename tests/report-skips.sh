#!/usr/bin/env bash
# Prints the skip registry that `make test` collected: one line per test that could not run
# here (codex_tests::skip, the engine tests, the VM tier), as "N skipped: ...". A skip is
# not a pass; CI runs with CODEX_REQUIRE_ALL=1, where every skip already failed its test.
# usage: tests/report-skips.sh [DIR]   (default: $CODEX_SKIP_DIR or target/codex-tests/skips)
set -euo pipefail
ws="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-${CODEX_SKIP_DIR:-$ws/target/codex-tests/skips}}"
shopt -s nullglob
files=("$dir"/*)
if [ ${#files[@]} -eq 0 ]; then
  echo "0 skipped"
  exit 0
fi
# the same test may skip in several runs (e.g. cargo test twice): count distinct lines
mapfile -t lines < <(cat "${files[@]}" | sort -u)
echo "${#lines[@]} skipped:"
for l in "${lines[@]}"; do echo "  $l"; done
