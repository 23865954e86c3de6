#!/usr/bin/env bash
# make bench-scale: N running containers in one root (bench/scale_bench.py), in a private
# mount and network namespace like `make bench` (every container has --network none).
set -euo pipefail
cd "$(dirname "$0")/.."
exec unshare -m -n --propagation private bash -c '
  ip link set lo up
  python3 bench/scale_bench.py --n '"${SCALE_N:-1000}"' --rounds '"${SCALE_ROUNDS:-10}"' ${SCALE_ARGS:-} --out docs/benchmarks.md
'
