#!/usr/bin/env bash
# The mutant check: runs the runtime test suite (tests/tests/*.rs except the codex-ctr
# engine files ctr*.rs) with CODEX_OCI pointing at each stand-in runtime in this directory
# and reports the tests that PASS. A stand-in crashes (panics.sh) or does nothing (noop.sh),
# so every test should fail against it; a test that passes proves nothing about the runtime.
#
# usage: tests/mutants/run.sh [TEST-BINARY...]
#   with no arguments the test binaries are built with `cargo test -p codex-tests --no-run`.
# env:   MUTANTS="panics noop" (which stand-ins), MUTANT_MAX_PASS=N (exit 1 when any
#        stand-in lets more than N tests pass; unset = report only), MUTANT_ENGINE=1 (also
#        run the engine's tests, ctr*.rs, with CODEX_CTR pointing at each stand-in).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ws="$(cd "$here/../.." && pwd)"
cd "$ws"

# the integration test binaries of codex-tests: "runtime" (CODEX_OCI) or "engine" (ctr*.rs,
# CODEX_CTR); library.rs drives codex-runtime in-process, where no stand-in reaches
test_binaries() {
  cargo test -p codex-tests --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
want_engine = sys.argv[1] == "engine"
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    t = m.get("target") or {}
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and "test" in t.get("kind", []) and t.get("name") != "codex_tests" \
            and t.get("name") != "library" \
            and t.get("name", "").startswith("ctr") == want_engine:
        print(m["executable"])
' "$1"
}

bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
  mapfile -t bins < <(test_binaries runtime)
fi
[ ${#bins[@]} -gt 0 ] || { echo "mutants: no test binaries found" >&2; exit 1; }
engine_bins=()
if [ "${MUTANT_ENGINE:-}" = 1 ]; then
  mapfile -t engine_bins < <(test_binaries engine)
fi

out="$ws/target/codex-tests/mutants"
mkdir -p "$out"
worst=0
# run_suite KIND VAR BINARY...: every binary once per stand-in, with VAR=stand-in
run_suite() {
  local kind=$1 var=$2; shift 2
  local m stand_in log skips b total n t
  for m in ${MUTANTS:-panics noop}; do
    stand_in="$here/$m.sh"
    log="$out/$kind-$m.log"
    skips="$out/$kind-$m.skips"
    rm -rf "$skips" && mkdir -p "$skips"
    : >"$log"
    for b in "$@"; do
      # each binary gets an overall bound on top of the harness's per-command timeouts
      env "$var=$stand_in" CODEX_SKIP_DIR="$skips" CODEX_REQUIRE_ALL= \
        CODEX_CLEANUP_FAILURES=warn \
        timeout --kill-after=30 1800 "$b" --test-threads=2 >>"$log" 2>&1 || true
    done
    total=$(grep -acE '^test .* \.\.\. (ok|FAILED|ignored)$' "$log" || true)
    mapfile -t passed < <(grep -aE '^test .* \.\.\. ok$' "$log" | sed -E 's/^test (.*) \.\.\. ok$/\1/' | sort)
    n=${#passed[@]}
    [ "$n" -gt "$worst" ] && worst=$n
    echo "mutant $m: $n of $total $kind tests PASS (should be 0)"
    for t in "${passed[@]}"; do
      if grep -rqs -- "^$t:" "$skips"; then
        echo "  $t   (skipped: $(grep -rhs -- "^$t:" "$skips" | head -1 | cut -d: -f2-))"
      else
        echo "  $t"
      fi
    done
  done
}
run_suite runtime CODEX_OCI "${bins[@]}"
if [ ${#engine_bins[@]} -gt 0 ]; then
  run_suite engine CODEX_CTR "${engine_bins[@]}"
fi
echo "(logs: $out/)"
if [ -n "${MUTANT_MAX_PASS:-}" ] && [ "$worst" -gt "$MUTANT_MAX_PASS" ]; then
  echo "mutants: $worst tests pass against a broken runtime (allowed: $MUTANT_MAX_PASS)" >&2
  exit 1
fi
