#!/bin/sh
# The engine half of `make demo`: codex-ctr imports the busybox image, runs a container
# attached and one detached under its own supervisor, shows its logs, usage and state,
# and removes everything. Uses its own root, so it never touches /var/lib/codex-ctr.
set -eu
CTR="$1"
TAR="$2"
export CODEX_CTR_ROOT="${CODEX_CTR_ROOT:-/tmp/codex-demo-engine}"
name="demo-$$"
cleanup() {
    "$CTR" rm -f -v "$name" >/dev/null 2>&1 || true
    "$CTR" image rm busybox >/dev/null 2>&1 || true
}
trap cleanup EXIT
show() { echo "+ codex-ctr $*" >&2; "$CTR" "$@"; }

show image import "$TAR" busybox >/dev/null
show run --rm --hostname engine-demo busybox sh -c 'echo "attached: PID $$ on $(hostname)"; exit 3' || echo "  (exit code $?, the container's)"
show run -d --name "$name" --memory 32m --cpus 0.5 -v demo-data:/data busybox \
    sh -c 'echo started; while :; do date +%s > /data/tick; sleep 0.2; done' >/dev/null
show exec "$name" sh -c 'echo "exec sees: $(ls /data)"'
show ps
show stats --no-stream "$name"
show logs "$name"
show stop -t 1 "$name" >/dev/null
"$CTR" inspect "$name" | grep -E '"(status|exit_code)"'
show rm -v "$name" >/dev/null
show volume rm demo-data
