#!/bin/sh
# The engine half of `make demo`: codex-ctr imports the busybox image, runs a container
# attached and one detached under its own supervisor, shows its logs, usage and state,
# and removes everything. Uses its own root, so it never touches /var/lib/codex-ctr.
set -eu
CTR="$1"
TAR="$2"
# A private engine root, removed at the end (never /var/lib/codex-ctr).
CODEX_CTR_ROOT="$(mktemp -d /tmp/codex-demo-engine.XXXXXX)"
export CODEX_CTR_ROOT
name="demo-$$"
cleanup() {
    for c in $("$CTR" ps -a -q 2>/dev/null); do "$CTR" rm -f -v "$c" >/dev/null 2>&1 || true; done
    "$CTR" network prune >/dev/null 2>&1 || true
    "$CTR" image rm busybox >/dev/null 2>&1 || true
    rm -rf "$CODEX_CTR_ROOT"
}
trap cleanup EXIT
show() { echo "+ codex-ctr $*" >&2; "$CTR" "$@"; }

show image import "$TAR" busybox >/dev/null
show run --rm --hostname engine-demo busybox sh -c 'echo "attached: PID $$ on $(hostname)"; exit 3' || echo "  (exit code $?, the container's)"
# The shell handles SIGTERM, so `stop` ends it at once (as PID 1 it would otherwise
# ignore it and be killed after the grace period: exit 137).
show run -d --name "$name" --memory 32m --cpus 0.5 -v demo-data:/data busybox \
    sh -c 'trap "exit 0" TERM; echo started; while :; do date +%s > /data/tick; sleep 0.2; done' >/dev/null
show exec "$name" sh -c 'echo "exec sees: $(ls /data)"'
show ps
show stats --no-stream "$name"
show logs "$name"
show stop -t 5 "$name" >/dev/null
"$CTR" inspect "$name" | grep -E '"(status|exit_code)"'
show rm -v "$name" >/dev/null
show volume rm demo-data
# A service on the default bridge network, published on the host's port 8080.
show run -d --name web -p 8080:8080 --health-cmd 'wget -qO- 127.0.0.1:8080/ >/dev/null' \
    --health-interval 1s busybox sh -c 'echo "hello from a container" > /tmp/index.html; exec httpd -f -p 8080 -h /tmp' >/dev/null
show wait --condition healthy --timeout 30s web >/dev/null
show port web
echo "+ busybox wget -qO- http://127.0.0.1:8080/   (from the host side)" >&2
busybox wget -qO- http://127.0.0.1:8080/
show rm -f web >/dev/null
