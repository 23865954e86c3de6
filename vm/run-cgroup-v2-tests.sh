#!/usr/bin/env bash
# The cgroup v2 VM test tier: boots Debian's kernel in QEMU (software emulation) with an
# initramfs holding codex-oci (and its libraries), busybox, a busybox OCI bundle and the
# tests in vm/guest/, on a pure cgroup v2 hierarchy with every controller. See
# vm/README.md.
#
# Environment:
#   CODEX_OCI            the binary to test (default: target/release/codex-oci)
#   CODEX_CTR            the engine for the engine's Rust tests (default: codex-ctr next
#                        to CODEX_OCI; codex-shim is taken from beside it)
#   VM_TESTS_REQUIRED    when set, a skip (no QEMU or kernel obtainable) is a failure
#                        (so is CODEX_REQUIRE_ALL=1; a skip is recorded in the skip
#                        registry, $CODEX_SKIP_DIR or target/codex-tests/skips, for make test)
#   VM_KERNEL            the kernel to boot (default: the newest /boot/vmlinuz-*)
#   VM_TIMEOUT           seconds before QEMU is stopped (default 900)
#   VM_LOG               where the serial console is written (default: a temp file,
#                        kept and named at the end)
#   VM_KEEP              when set, keep the temp dir (initramfs and its tree)
#   VM_RUST_TESTS        0 leaves the Rust integration tests out (default: built with
#                        cargo and run in the VM, see RUST_PLAN below)
#   VM_RUST_THREADS      libtest --test-threads in the VM (default 2)
#   VM_MEM               the guest's memory in MiB (default 2048)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
codex_oci=${CODEX_OCI:-$repo/target/release/codex-oci}
codex_ctr=${CODEX_CTR:-$(dirname "$codex_oci")/codex-ctr}
timeout_s=${VM_TIMEOUT:-900}
started=$(date +%s)

say() { echo "vm-tests: $*" >&2; }

skip() {
  echo "" >&2
  echo "########################################################################" >&2
  echo "SKIP: cgroup v2 VM tier: $*" >&2
  echo "########################################################################" >&2
  local skips=${CODEX_SKIP_DIR:-$repo/target/codex-tests/skips}
  mkdir -p "$skips" && echo "vm/run-cgroup-v2-tests.sh: $*" >"$skips/vm-$$" || true
  if [ -n "${VM_TESTS_REQUIRED:-}" ] || [ "${CODEX_REQUIRE_ALL:-}" = 1 ]; then
    say "VM_TESTS_REQUIRED or CODEX_REQUIRE_ALL=1 is set: a skipped VM tier is a failure"
    exit 1
  fi
  exit 0
}

fail() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (to install packages, read /boot/vmlinuz and build device nodes)"
[ -x "$codex_oci" ] || fail "$codex_oci not found: build it first (make release)"
# A binary older than a source file it is built from would test old code: refuse it, as
# the harness's assert_fresh (tests/src/fresh.rs) does on the host, over the same dirs
# (an edit in any of them relinks every binary of codex-cli).
assert_fresh() {
  local newer
  newer=$(find "$repo"/crates/{runtime,engine,shim,cli}/src -type f -newer "$1" -print -quit)
  [ -z "$newer" ] || fail "$1 is older than $newer: rebuild it (cargo build -p codex-cli)"
}
assert_fresh "$codex_oci"

# --- What the tier needs from Debian, installed only when missing --------------------

newest_kernel() { ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1 || true; }

busybox_static() {
  [ -x /bin/busybox ] && { file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' \
    || ldd /bin/busybox 2>&1 | grep -q 'not a dynamic'; }
}

apt_updated=""
apt_install() { # apt_install [apt-get options] PACKAGE...
  if [ -z "$apt_updated" ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || return 1
    apt_updated=1
  fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# bookworm-backports on the mirror of the existing Debian source (Debian 12's own
# qemu-system-x86 conflicts with the preinstalled backports qemu-utils).
add_backports() {
  if grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return 0
  fi
  local mirror
  mirror=$(awk '
    /^URIs:/ { uri = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") found = uri }
    /^$/ { uri = "" }
    END { print found }' /etc/apt/sources.list.d/*.sources 2>/dev/null)
  if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  fi
  [ -n "$mirror" ] || { say "no Debian bookworm source found to add backports next to"; return 1; }
  say "adding bookworm-backports from $mirror to apt's sources"
  cat > /etc/apt/sources.list.d/bookworm-backports.sources <<EOF
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt_updated="" # the new suite needs an update
}

installed=()
if ! command -v qemu-system-x86_64 >/dev/null; then
  add_backports || skip "cannot add bookworm-backports to apt's sources"
  apt_install -t bookworm-backports qemu-system-x86 \
    || skip "cannot install qemu-system-x86 from bookworm-backports (no network?)"
  installed+=("qemu-system-x86 (bookworm-backports)")
fi
kernel=${VM_KERNEL:-$(newest_kernel)}
if [ -z "$kernel" ]; then
  apt_install linux-image-amd64 || skip "cannot install linux-image-amd64 (no network?)"
  installed+=(linux-image-amd64)
  kernel=$(newest_kernel)
fi
[ -r "$kernel" ] || skip "no kernel to boot (${kernel:-/boot/vmlinuz-* missing})"
missing=()
busybox_static || missing+=(busybox-static)
command -v cpio >/dev/null || missing+=(cpio)
command -v python3 >/dev/null || missing+=(python3)
command -v file >/dev/null || missing+=(file)
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}" || skip "cannot install ${missing[*]} (no network?)"
  installed+=("${missing[@]}")
fi
busybox_static || skip "/bin/busybox is not the static busybox (busybox-static)"
[ ${#installed[@]} -eq 0 ] || say "installed: ${installed[*]}"

# --- The initramfs ---------------------------------------------------------------------

tmp=$(mktemp -d /tmp/codex-vm.XXXXXX)
if [ -z "${VM_KEEP:-}" ]; then trap 'rm -rf "$tmp"' EXIT; fi
root=$tmp/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,proc,sys,dev,run,tmp,root,tests,configs}
chmod 1777 "$root/tmp"

# busybox with one link per applet
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list-full); do
  [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
mknod -m 600 "$root/dev/console" c 5 1
mknod -m 666 "$root/dev/null" c 1 3

# codex-oci with every library ldd lists and the dynamic loader, at the same paths
add_libs() { # add_libs BINARY: its libraries (ldd) and the loader, at the same paths
  local l
  l=$(ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
  [ -n "$l" ] || fail "ldd listed no libraries for $1"
  for lib in $l; do
    [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
  done
  echo $l
}
cp "$codex_oci" "$root/usr/local/bin/codex-oci"
say "codex-oci libraries: $(add_libs "$codex_oci")"

# the busybox bundle (minimal runc-style spec) and the config variants of the tests
env -u CODEX_OCI "$repo/rootfs-fixtures/make-busybox-bundle.sh" "$tmp/bundle" >/dev/null
mkdir -p "$root/bundle"
cp -a "$tmp/bundle/rootfs" "$root/bundle/rootfs"
cp "$tmp/bundle/config.json" "$root/bundle/config.json"
python3 "$here/make-configs.py" "$tmp/bundle/config.json" "$root/configs"

cp "$tmp/bundle/rootfs.tar" "$root/bundle/rootfs.tar" # the harness's CODEX_FIXTURE needs it

# init (stage 1 and 2) and the tests
install -m 755 "$here/guest/init" "$root/init"
install -m 755 "$here/guest/init2" "$root/init2"
install -m 755 "$here/guest/cgroup-v2-tests.sh" "$root/tests/cgroup-v2-tests.sh"
install -m 755 "$here/guest/rust-tests.sh" "$root/tests/rust-tests.sh"
# the guest's watchdog ends the tests (with a summary line) before QEMU's timeout does
echo $((timeout_s > 60 ? timeout_s - 30 : timeout_s)) > "$root/tests/watchdog-seconds"

# --- The Rust integration tests, on pure v2 ----------------------------------------------
#
# The test binaries of tests/tests/*.rs that exercise cgroups, each with the libtest
# arguments it runs with in the VM (filters, --skip NAME). The VM has no disk, no network
# beyond loopback, no runc/containerd/podman and no codex-ctr, and TCG is slow: only
# codex-oci's tests that touch cgroups go in.
RUST_PLAN=(
  # placement, nesting under the caller, cleanup by delete and by a foreground run
  "cgroups"
  # memory (OOM 137 + oom event + oom_kill), pids, cpu quota, device rules (eBPF on v2),
  # pause/resume (cgroup.freeze), update, refused resources. Left out:
  #   write_throttle_on_the_backing_device_is_enforced: the VM's root is a tmpfs, no
  #   block device to throttle (on the host it runs)
  "resources --skip write_throttle_on_the_backing_device_is_enforced"
  # the lifecycle tests that go through the cgroup: kill --all and delete --force
  # (cgroup.kill), ps (cgroup.procs), a killed create's cgroup cleaned by delete, run's
  # exit statuses and removal. The rest of lifecycle.rs (argument and state errors, list,
  # pid files) has no cgroup behaviour of its own and took 2 of its 2.7 minutes here.
  "lifecycle kill_all delete_force codex_killed_create ps_format_json run_exits foreground_run create_start_kill_delete many_containers"
  # exec joins the container's cgroup and its namespaces (cgroup included); the other
  # exec tests check process settings, not cgroups
  "exec exec_process_runs_in_the_containers_cgroup exec_joins_every_namespace"
  # kill --all and delete --force against a container that forks while it is killed
  # (cgroup.kill on v2; freeze and pidfds where it is missing)
  "hardening kill_all_reaches delete_force_leaves_no_process"
  # the cgroup mount (cgroup2 inside), default and linux.devices (device cgroup rules)
  "mounts cgroup_mount default_devices linux_devices"
  # the cgroup namespace
  "namespaces cgroup_namespace"
  # The engine (codex-ctr, its per-container supervisor and codex-shim) on pure v2, every
  # container with `--network none` or `--isolation minimal` (the host's network): the
  # VM has no bridge, veth or nftables (their kernel modules are not in the initramfs).
  # --memory read back inside, `stats` (memory limit, pids), exec, pause/unpause (the
  # freezer), restart with the limit kept; a minimal (host program) container's
  # memory.max in its own cgroup; `info` says v2
  "ctr exec_pause_unpause_restart_and_stats_work_on_a_running_container minimal_isolation_runs_a_host_script_with_a_memory_limit version_and_info_describe_the_engine_and_host"
  # `top NAME` (the container's cgroup.procs), `update -m/--pids-limit` of a running
  # container and after its restart, a refused update
  "ctr_cli top_update_system_df_and_the_container_group"
  # `stats --no-stream` of busy/idle/exited containers (cpu %, memory usage and limit,
  # the host's memory without one), --pids-limit enforced inside, --device-read-bps and
  # --device-write-bps as io.max (on /dev/ram0: the guest loads brd)
  "ctr_flags stats_json_shows_a_busy_loops_cpu pids_limit_caps_the_number device_read_and_write_bps_reach"
  # the supervisor's OOM detection (memory.events oom_kill: inspect's oom_killed, the
  # oom event, a positive control first), --cpus as cpu.max and its update of a running
  # container, stop/kill/rm -f of a paused (frozen) container
  "ctr_cgroup"
  # a killed supervisor and init of a minimal container: rm -f kills what is left in
  # the container's cgroup
  "ctr_recovery killed_supervisor_and_init_of_a_minimal_container"
)
# The leftover/skip lists of other test files, and why none of them run here:
#   compat, shim_calls, clients, cri*: runc, crun, containerd, podman (absent in the VM)
#   the rest of ctr*, the engine's tests: their containers use the default bridge
#     network (no bridge/veth/nftables in the VM), registries, builds, tmux (ctr_top),
#     terminals, or no cgroup behaviour of their own (images, volumes, logs, flags)
#   ctr_flags stats_without_no_stream: the bridge network, and the same numbers as
#     stats_json; cpus_sets_a_cfs_quota: the bridge network, and ctr_cgroup's update
#     test checks the same --cpus 0.5 -> cpu.max first; the rest: no cgroup behaviour
#     (flags, logs, volumes)
#   ctr_cli init_runs_in_front: --init needs tini-static, not in the VM
#   errors, hooks, process, seccomp*, security*, console, newer_fields, library: no
#     cgroup behaviour of their own beyond what lifecycle checks
threads=${VM_RUST_THREADS:-2}
rust_expected=0
if [ "${VM_RUST_TESTS:-1}" = 0 ]; then
  say "VM_RUST_TESTS=0: the Rust integration tests are left out of this run"
else
  command -v cargo >/dev/null || fail "cargo not found: the Rust tests cannot be built (VM_RUST_TESTS=0 leaves them out)"
  mkdir -p "$root/rust-tests"
  # The engine's tests: codex-ctr, codex-shim beside it (the supervisor execs it from
  # there) and the overlay module (the engine's rootfs is an overlay; the guest insmods
  # it) of the kernel booted
  for b in "$codex_ctr" "$(dirname "$codex_ctr")/codex-shim"; do
    [ -x "$b" ] || fail "$b not found: build it first (cargo build -p codex-cli)"
    assert_fresh "$b"
    strip --strip-debug -o "$root/usr/local/bin/$(basename "$b")" "$b" 2>/dev/null \
      || cp "$b" "$root/usr/local/bin/"
    add_libs "$b" >/dev/null
  done
  kver=$(basename "$kernel" | sed 's/^vmlinuz-//')
  ovl=/lib/modules/$kver/kernel/fs/overlayfs/overlay.ko
  [ -r "$ovl" ] || fail "$ovl not found: the engine's tests need the overlay module of $kernel"
  mkdir -p "$root/lib/modules"
  cp "$ovl" "$root/lib/modules/overlay.ko"
  # and brd (RAM disks): a block device for the engine's --device-read/write-bps (io.max)
  brd=/lib/modules/$kver/kernel/drivers/block/brd.ko
  [ -r "$brd" ] || fail "$brd not found: the engine's io.max test needs a block device"
  cp "$brd" "$root/lib/modules/brd.ko"
  echo "$threads" > "$root/rust-tests/threads"
  tests=()
  for entry in "${RUST_PLAN[@]}"; do tests+=(--test "${entry%% *}"); done
  say "building the Rust test binaries: cargo test -p codex-tests --no-run ${tests[*]}"
  (cd "$repo" && cargo test -q -p codex-tests --no-run --message-format=json "${tests[@]}") \
    > "$tmp/cargo.json" || fail "cargo test --no-run failed"
  for entry in "${RUST_PLAN[@]}"; do
    name=${entry%% *}
    args=""
    [ "$name" = "$entry" ] || args=${entry#* }
    # the test binary of tests/tests/NAME.rs, from cargo's own report
    bin=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    t = m.get("target") or {}
    if m.get("reason") == "compiler-artifact" and t.get("kind") == ["test"] \
            and t.get("name") == sys.argv[2] and m.get("executable"):
        print(m["executable"])
' "$tmp/cargo.json" "$name" | tail -n1)
    [ -n "$bin" ] && [ -x "$bin" ] || fail "cargo built no test binary for tests/tests/$name.rs"
    # how many tests these arguments select, as the host's libtest lists them
    # shellcheck disable=SC2086
    n=$("$bin" --list $args 2>/dev/null | grep -c ': test$' || true)
    [ "$n" -gt 0 ] || fail "$name $args selects no test"
    rust_expected=$((rust_expected + n))
    # debug info is not needed to run (symbols stay for backtraces): 4x smaller
    strip --strip-debug -o "$root/rust-tests/$name" "$bin" 2>/dev/null || cp "$bin" "$root/rust-tests/$name"
    echo "$name $n $args" >> "$root/rust-tests/plan"
    for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
      [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
    done
  done
  say "Rust tests in the VM: $rust_expected tests from ${#RUST_PLAN[@]} binaries, --test-threads=$threads"
fi

initrd=$tmp/initrd.cpio.gz
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$initrd"
say "initramfs $(du -h "$initrd" | cut -f1), kernel $kernel"

# --- Boot ------------------------------------------------------------------------------

log=${VM_LOG:-$(mktemp /tmp/codex-vm-log.XXXXXX)}
say "booting (TCG, timeout ${timeout_s}s); serial console -> $log"
boot_start=$(date +%s)
set +e
timeout -k 10 "$timeout_s" qemu-system-x86_64 -accel tcg -m "${VM_MEM:-2048}" -smp 2 -nographic -no-reboot \
  -nic none -kernel "$kernel" -initrd "$initrd" \
  -append 'console=ttyS0 panic=-1 quiet' </dev/null >"$log" 2>&1
qrc=$?
set -e
end=$(date +%s)

# the guest's lines (tests, diagnostics, summaries), without the console's CRs; libtest's
# own lines of the Rust tests (its failure reports in full are in the log)
clean=$tmp/console.txt
tr -d '\r' < "$log" > "$clean"
grep -E '^(ok |not ok |# |CGROUP-V2-TESTS: |test .* \.\.\. |test result: |RUST-TEST-BIN: |RUST-TESTS: )' "$clean" || true
say "QEMU exited $qrc after $((end - boot_start)) s (whole tier $((end - started)) s); full log: $log"
if [ $qrc -eq 124 ] || [ $qrc -eq 137 ]; then
  say "QEMU was stopped after ${timeout_s}s"
fi
rc=0
if ! grep -q '^CGROUP-V2-TESTS: PASS ' "$clean" || grep -q '^CGROUP-V2-TESTS: FAIL' "$clean"; then
  say "FAIL: the shell tests did not pass"
  rc=1
fi
if [ "${VM_RUST_TESTS:-1}" != 0 ]; then
  # the guest's count must be the host's: every test the plan selected ran and passed
  got=$(sed -n 's/^RUST-TESTS: PASS \([0-9]*\)\/\([0-9]*\)$/\1 \2/p' "$clean" | tail -n1)
  if [ "$got" != "$rust_expected $rust_expected" ]; then
    say "FAIL: Rust tests in the VM: $(grep '^RUST-TESTS: ' "$clean" | tail -n1 || echo 'no summary line'), expected $rust_expected passed"
    sed -n '/^failures:$/,/^test result: /p' "$clean" | head -n 200 >&2
    rc=1
  else
    say "Rust tests in the VM: $rust_expected/$rust_expected passed"
  fi
fi
if ! grep -q '^\(CGROUP-V2-TESTS\|RUST-TESTS\): ' "$clean"; then
  say "no summary line from the VM; last lines of the console:"
  tail -n 30 "$clean" >&2
fi
exit $rc
