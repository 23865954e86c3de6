#!/bin/sh
# The Rust integration tests (tests/tests/*.rs, harness tests/src/) on the VM's pure
# cgroup v2 hierarchy. Run by init2 after the shell tests. /rust-tests/plan, written by
# vm/run-cgroup-v2-tests.sh, has one line per test binary: `NAME EXPECTED ARGS...`
# (EXPECTED = how many tests the host's `NAME --list ARGS` named). Each binary runs with
# its own libtest output on the console, then `RUST-TEST-BIN: NAME passed=P failed=F
# expected=E`; the last line is `RUST-TESTS: PASS p/e` or `RUST-TESTS: FAIL why`.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin:/usr/local/bin
CG=/sys/fs/cgroup
D=/rust-tests
L=/run/rust-logs
mkdir -p $L /run/skips /root

# The harness's environment: the runtime under test, the prebuilt fixture (the VM has
# no bash to build one), skips recorded and, with CODEX_REQUIRE_ALL=1, failing: every
# test the plan names must really run here (the ones that cannot are left out by name,
# on the host, with the reason).
export CODEX_OCI=/usr/local/bin/codex-oci CODEX_FIXTURE=/bundle CODEX_SKIP_DIR=/run/skips
# the engine under test (its supervisor execs codex-shim from beside it)
export CODEX_CTR=/usr/local/bin/codex-ctr
export CODEX_REQUIRE_ALL=1 HOME=/root TMPDIR=/tmp RUST_BACKTRACE=1
threads=$(cat $D/threads 2>/dev/null || echo 2)
# the engine mounts each container's rootfs as an overlay (a module in Debian's kernel)
if [ -e /lib/modules/overlay.ko ] && ! grep -qw overlay /proc/filesystems; then
  insmod /lib/modules/overlay.ko || echo "# cannot load the overlay module: the engine's tests will fail"
fi
# a block device (an 8 MiB RAM disk, /dev/ram0) for the engine's io.max test
if [ -e /lib/modules/brd.ko ] && [ ! -e /dev/ram0 ]; then
  insmod /lib/modules/brd.ko rd_nr=1 rd_size=8192 || echo "# cannot load brd: the io.max test will skip and fail"
fi

# A cgroup of its own for this runner (as the shell tests' /t-NAME): the tests see
# themselves in /rust/runner, and the runtime puts containers beside that, under /rust.
mkdir -p $CG/rust/runner
echo $$ > $CG/rust/runner/cgroup.procs || echo "# cannot move the Rust test runner into $CG/rust/runner"
echo "# rust tests: runner in $(sed -n 's/^0:://p' /proc/self/cgroup), --test-threads=$threads"

total=0
want=0
bad=""
while read -r name expected args; do
  [ -n "$name" ] || continue
  want=$((want + expected))
  echo "# rust-tests: $name $args"
  start=$(cut -d' ' -f1 /proc/uptime)
  # shellcheck disable=SC2086 # the plan's args are words (filters, --skip NAME)
  "$D/$name" --test-threads="$threads" $args </dev/null 2>&1 | tee "$L/$name.log"
  end=$(cut -d' ' -f1 /proc/uptime)
  res=$(grep '^test result: ' "$L/$name.log" | tail -n1)
  passed=$(echo "$res" | sed -n 's/.* \([0-9][0-9]*\) passed.*/\1/p')
  failed=$(echo "$res" | sed -n 's/.* \([0-9][0-9]*\) failed.*/\1/p')
  passed=${passed:-0}
  failed=${failed:-0}
  echo "RUST-TEST-BIN: $name passed=$passed failed=$failed expected=$expected seconds=$(awk "BEGIN { printf \"%d\", $end - $start }")"
  total=$((total + passed))
  if [ -z "$res" ]; then
    bad="$bad $name(no libtest summary: crashed or killed)"
  elif [ "$failed" != 0 ] || [ "$passed" != "$expected" ]; then
    bad="$bad $name($passed/$expected passed, $failed failed)"
  fi
done < $D/plan

for f in /run/skips/*; do [ -e "$f" ] && echo "# rust-tests skip: $(cat "$f")"; done
# every container's cgroup (the runtime's and the engine's go beside the runner) must be
# gone once its test ended: one left behind is a failure
left=$(cd $CG/rust && ls -d */ 2>/dev/null | grep -v '^runner/$' | tr '\n' ' ')
echo "# rust-tests: cgroups left under /rust: $left"
echo "# rust-tests: the cgroup tree, two levels: $(cd $CG && find . -mindepth 1 -maxdepth 2 -type d | sort | tr '\n' ' ')"
[ -z "$left" ] || bad="$bad cgroups-left-under-/rust($left)"
if [ "$want" -eq 0 ]; then
  echo "RUST-TESTS: FAIL the plan names no tests"
elif [ -z "$bad" ] && [ "$total" -eq "$want" ]; then
  echo "RUST-TESTS: PASS $total/$want"
else
  echo "RUST-TESTS: FAIL $total/$want passed:$bad"
fi
