#!/usr/bin/env bash
# Runs each fuzz target (all, or those named) for FUZZ_SECONDS (default 60) with
# libFuzzer through cargo-fuzz, then prints one summary line per target.
#
# cargo-fuzz passes -Z flags (ASan, sanitizer coverage) that need a nightly rustc; this
# machine has only stable, so RUSTC_BOOTSTRAP=1 lets the stable compiler accept them.
# New inputs go to work/<target> (not committed); the seeds in corpus/<target> are only
# read. A crash is saved in artifacts/<target>/ and makes this script exit non-zero.
set -uo pipefail
cd "$(dirname "$0")"

secs=${FUZZ_SECONDS:-60}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(oci_config layer_unpack registry_record cli_parsers image_documents dockerfile)
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2 || exit 1
fi

failed=()
for t in "${targets[@]}"; do
    mkdir -p "work/$t"
    echo "== $t: ${secs}s"
    # -timeout: a single input that takes 10 s is a hang; -rss_limit_mb: decompression
    # bombs are bounded by the input size (-max_len), this catches the rest.
    if ! cargo fuzz run "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        >"work/$t.log" 2>&1; then
        failed+=("$t")
        tail -n 40 "work/$t.log"
    fi
done

printf '%-16s %12s %8s %8s %10s %s\n' target executions cov ft corpus result
for t in "${targets[@]}"; do
    log="work/$t.log"
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    last=$(grep -E '^#[0-9]+.*(cov|DONE)' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*$')
    ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*$')
    corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' <<<"$last" | cut -d' ' -f2)
    res=ok
    [[ " ${failed[*]} " == *" $t "* ]] && res="CRASH (see fuzz/artifacts/$t)"
    printf '%-16s %12s %8s %8s %10s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$res"
done
[ ${#failed[@]} -eq 0 ]
