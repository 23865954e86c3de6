#!/usr/bin/env bash
# make bench: codex-oci side by side with runc and crun, in one run, same bundle.
# crun 1.8 refuses hybrid cgroup hosts, so every runtime runs in the same wrapper:
# a private mount namespace with /sys/fs/cgroup/unified unmounted.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
for tool in runc crun time; do
  command -v $tool >/dev/null && [ "$tool" != time -o -x /usr/bin/time ] || apt-get install -y -qq $tool >/dev/null
done
runs=${BENCH_RUNS:-60}
# A private network namespace too: codex-ctr's standard containers go on a bridge network
# by default, whose bridge, veths and nft table must not be made in the host's namespace.
exec unshare -m -n --propagation private bash -c '
  ip link set lo up
  if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
  python3 bench/oci_bench.py --runs '"$runs"' --out docs/benchmarks.md
  python3 bench/start_path_bench.py --runs '"${START_RUNS:-40}"' --out docs/benchmarks.md
  python3 bench/engine_bench.py --runs '"${ENGINE_RUNS:-20}"' --many '"${ENGINE_MANY:-200}"' --out docs/benchmarks.md
  python3 bench/net_bench.py --runs '"${NET_RUNS:-20}"' --out docs/benchmarks.md
  python3 bench/image_bench.py --runs '"${IMAGE_RUNS:-3}"' --out docs/benchmarks.md
  python3 bench/rootfs_bench.py --runs '"${ROOTFS_RUNS:-20}"' --out docs/benchmarks.md
  python3 bench/build_bench.py --runs '"${BUILD_RUNS:-3}"' --out docs/benchmarks.md
  python3 bench/monitors_bench.py --many '"${MONITORS_MANY:-20}"' --out docs/benchmarks.md
  python3 bench/api_bench.py --runs '"${API_RUNS:-20}"' --out docs/benchmarks.md
  # a pod through containerd'"'"'s CRI plugin, codex-oci against runc (tests/tests/cri_bench.rs)
  CODEX_OCI="$PWD/target/release/codex-oci" CRI_BENCH_RUNS='"${CRI_RUNS:-10}"' \
    CRI_BENCH_OUT=docs/benchmarks.md cargo test -q -p codex-tests --test cri_bench -- --ignored --nocapture
'
