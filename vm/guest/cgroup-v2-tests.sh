#!/bin/sh
# The cgroup v2 tests, run by the VM's init inside /sys/fs/cgroup/runner on a pure
# cgroup v2 kernel. Each test runs real containers with codex-oci and prints
# `ok NAME` or `not ok NAME: why`; the last line is the summary
# `CGROUP-V2-TESTS: PASS n/n` or `CGROUP-V2-TESTS: FAIL k/n failed: names`.
# Runtime errors are reported as they are: nothing here works around them.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin:/usr/local/bin

CG=/sys/fs/cgroup
RUNNER=$(sed -n 's/^0:://p' /proc/self/cgroup)
# Each test moves this shell into a fresh cgroup of its own, /t-NAME (so whatever the
# runtime does to its caller's cgroup cannot spill into the next test); containers
# with an empty cgroupsPath go beside it (the runtime never nests in a cgroup that
# holds processes): $CTRDIR/<id>.
CGDIR=$CG$RUNNER
CTRDIR=$(dirname "$CGDIR")
enter() {
  CGDIR=$CG/t-$1
  # The caller's cgroup holds the test shell, so (cgroup v2's no-internal-processes
  # rule) the runtime puts containers beside it, under its parent.
  CTRDIR=$(dirname "$CGDIR")
  mkdir -p "$CGDIR"
  echo $$ > "$CGDIR/cgroup.procs" || echo "# cannot move the test shell into $CGDIR"
}
# what the runtime left in the caller's cgroup, when it is not a plain empty domain
caller_state() {
  t=$(cat "$CGDIR/cgroup.type" 2>&1)
  sc=$(cat "$CGDIR/cgroup.subtree_control" 2>&1)
  [ "$t" = domain ] && [ -z "$sc" ] && return 0
  echo "# after $1: the caller's cgroup $CGDIR is type '$t', subtree_control '$sc'"
}
L=/run/logs
mkdir -p /run/t /run/b $L /run/pause-out

total=0
pass=0
failed=""
ok() { total=$((total + 1)); pass=$((pass + 1)); echo "ok $1"; }
notok() { total=$((total + 1)); failed="$failed $1"; echo "not ok $1: $2"; }

# codex-oci with a state root of its own and a hard time limit.
oci() { timeout -s KILL 60 codex-oci --root /run/t "$@"; }

# bundle ID CONFIG: a bundle directory (config variant + rootfs symlink); prints its path.
bundle() {
  d=/run/b/$1
  rm -rf "$d"
  mkdir -p "$d"
  ln -s /bundle/rootfs "$d/rootfs"
  cp "/configs/$2.json" "$d/config.json"
  echo "$d"
}

# The runtime's stderr for ID, on one line.
err() { tr '\n' ' ' < "$L/$1.err" | sed 's/  */ /g' | cut -c1-600; }

# start ID CONFIG: `run -d` (stdio to files, so no pipe is held open).
start() {
  b=$(bundle "$1" "$2")
  oci run -d --bundle "$b" "$1" </dev/null >"$L/$1.out" 2>"$L/$1.err"
}

# finish ID: delete (killing it), remembering a cgroup directory left behind.
LEFT=""
finish() {
  oci delete --force "$1" >>"$L/$1.del" 2>&1
  [ -d "$CTRDIR/$1" ] && LEFT="$LEFT $1"
}

# first line of a cgroup file of container ID (empty when missing).
cgf() { head -n1 "$CTRDIR/$1/$2" 2>/dev/null; }

# keyed value from a flat-keyed cgroup file: kv ID FILE KEY
kv() { sed -n "s/^$3 //p" "$CTRDIR/$1/$2" 2>/dev/null; }

# wait_for SECONDS CMD...: retries CMD every 0.2 s.
wait_for() {
  n=$(($1 * 5))
  shift
  while [ $n -gt 0 ]; do
    "$@" 2>/dev/null && return 0
    sleep 0.2
    n=$((n - 1))
  done
  return 1
}

# predicates for wait_for (they read the file on every try)
oom_killed() { v=$(kv "$1" memory.events oom_kill); [ "${v:-0}" -ge 1 ]; }
fork_failed() { v=$(kv "$1" pids.events max); [ "${v:-0}" -ge 1 ]; }

usage_usec() { kv "$1" cpu.stat usage_usec; }
uptime_cs() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }

echo "# codex-oci: $(codex-oci --version 2>&1 | head -n1)"
echo "# init's cgroup: $RUNNER; tests run in /t-NAME, containers go to /t-NAME/<id>"

# (g) a plain container runs, and with a cgroup namespace sees itself at the root.
t_plain() {
  enter plain
  b=$(bundle plain plain-cgroupns)
  oci run --bundle "$b" plain </dev/null >"$L/plain.out" 2>"$L/plain.err"
  st=$?
  out=$(tr '\n' ' ' < "$L/plain.out")
  if [ $st -ne 0 ]; then
    notok plain-cgroupns "run exited $st; stderr: $(err plain)"
  elif [ "$out" != "0::/ " ]; then
    notok plain-cgroupns "/proc/self/cgroup inside is '$out', want '0::/'"
  else
    ok plain-cgroupns
  fi
  [ -d "$CTRDIR/plain" ] && LEFT="$LEFT plain"
  oci delete --force plain >/dev/null 2>&1
}

# (a) memory: OOM-killed with status 137, the limit in `events --stats`, oom_kill counted.
t_memory() {
  enter memory
  b=$(bundle mem-oom mem-oom)
  oci run --bundle "$b" mem-oom </dev/null >"$L/mem-oom.out" 2>"$L/mem-oom.err"
  st=$?
  if [ $st -eq 137 ]; then
    ok memory-oom-exit-137
  else
    notok memory-oom-exit-137 "run exited $st, want 137; stderr: $(err mem-oom)"
  fi
  [ -d "$CTRDIR/mem-oom" ] && LEFT="$LEFT mem-oom"
  oci delete --force mem-oom >/dev/null 2>&1

  if start mem-sleep mem-sleep; then
    max=$(cgf mem-sleep memory.max)
    oci events --stats mem-sleep >"$L/mem-sleep.stats" 2>>"$L/mem-sleep.err"
    st=$?
    if [ "$max" != 33554432 ]; then
      notok memory-limit "memory.max is '$max', want 33554432"
    elif [ $st -ne 0 ]; then
      notok memory-limit "events --stats exited $st: $(err mem-sleep)"
    elif ! grep -q '"limit": *33554432' "$L/mem-sleep.stats"; then
      notok memory-limit "events --stats shows no memory limit 33554432: $(head -c 400 "$L/mem-sleep.stats")"
    else
      ok memory-limit
    fi
  else
    notok memory-limit "run -d failed: $(err mem-sleep)"
  fi
  finish mem-sleep

  if start mem-late mem-oom-late; then
    timeout -s KILL 30 codex-oci --root /run/t events mem-late >"$L/mem-late.events" 2>&1 &
    evpid=$!
    if wait_for 40 oom_killed mem-late; then
      ok memory-oom-kill-counted
    else
      notok memory-oom-kill-counted "memory.events: $(tr '\n' ' ' < "$CTRDIR/mem-late/memory.events" 2>&1)"
    fi
    wait_for 10 grep -q '"type": *"oom"' "$L/mem-late.events"
    kill $evpid 2>/dev/null
    if grep -q '"type": *"oom"' "$L/mem-late.events"; then
      ok memory-oom-event
    else
      notok memory-oom-event "no {\"type\":\"oom\"} from \`events\` within 10 s of oom_kill; it printed: $(head -c 200 "$L/mem-late.events" | tr '\n' ' ')"
    fi
  else
    notok memory-oom-kill-counted "run -d failed: $(err mem-late)"
    notok memory-oom-event "run -d failed"
  fi
  finish mem-late
}

# (b) pids: a fork loop under pids.limit=20 cannot exceed 20 processes.
t_pids() {
  enter pids
  if start pids pids; then
    wait_for 40 fork_failed pids
    cur=$(cgf pids pids.current)
    max=$(cgf pids pids.max)
    fails=$(kv pids pids.events max)
    if [ "$max" != 20 ]; then
      notok pids-limit "pids.max is '$max', want 20"
    elif [ -z "$fails" ] || [ "$fails" -lt 1 ]; then
      notok pids-limit "no fork failed (pids.events max '$fails', pids.current '$cur')"
    elif [ "$cur" -gt 20 ] || [ "$cur" -lt 10 ]; then
      notok pids-limit "pids.current is $cur"
    else
      ok pids-limit
      echo "# pids.current $cur, failed forks $fails"
    fi
  else
    notok pids-limit "run -d failed: $(err pids)"
  fi
  finish pids
}

# (c) cpu: cpu.max and cpu.weight as runc writes them, and the quota holds.
t_cpu() {
  enter cpu
  if start cpu cpu; then
    cmax=$(cgf cpu cpu.max)
    w=$(cgf cpu cpu.weight)
    if [ "$cmax" = "50000 100000" ] && [ "$w" = 39 ]; then
      ok cpu-max-and-weight
    else
      notok cpu-max-and-weight "cpu.max '$cmax' (want '50000 100000'), cpu.weight '$w' (want 39)"
    fi
    sleep 1
    u0=$(usage_usec cpu)
    t0=$(uptime_cs)
    sleep 3
    u1=$(usage_usec cpu)
    t1=$(uptime_cs)
    if [ -n "$u0" ] && [ -n "$u1" ] && [ "$t1" -gt "$t0" ]; then
      # CPUs used, in thousandths: usage (us) / wall (cs * 10000 us)
      milli=$(((u1 - u0) / ((t1 - t0) * 10)))
      if [ $milli -ge 350 ] && [ $milli -le 650 ]; then
        ok cpu-quota-enforced
        echo "# busy loop under a 0.5-CPU quota used $milli/1000 CPU over $((t1 - t0)) cs"
      else
        notok cpu-quota-enforced "busy loop used $milli/1000 CPU, want 500 +- 150"
      fi
    else
      notok cpu-quota-enforced "no cpu.stat usage_usec to read"
    fi
  else
    notok cpu-max-and-weight "run -d failed: $(err cpu)"
    notok cpu-quota-enforced "run -d failed"
  fi
  finish cpu
}

# (d) pause/resume: cgroup.freeze, state `paused`, a counter stops and goes on.
t_pause() {
  enter pause
  rm -f /run/pause-out/count
  if ! start pause pause; then
    notok pause-resume "run -d failed: $(err pause)"
    finish pause
    return
  fi
  wait_for 20 test -s /run/pause-out/count
  if ! oci pause pause >>"$L/pause.err" 2>&1; then
    notok pause-resume "pause failed: $(err pause)"
    finish pause
    return
  fi
  fz=$(cgf pause cgroup.freeze)
  oci state pause >"$L/pause.state" 2>>"$L/pause.err"
  c0=$(cat /run/pause-out/count)
  sleep 1.5
  c1=$(cat /run/pause-out/count)
  why=""
  [ "$fz" = 1 ] || why="$why cgroup.freeze is '$fz' while paused;"
  grep -q '"status": *"paused"' "$L/pause.state" || why="$why state is not paused ($(tr '\n' ' ' < "$L/pause.state" | cut -c1-200));"
  [ "$c0" = "$c1" ] || why="$why counter advanced while paused ($c0 -> $c1);"
  if ! oci resume pause >>"$L/pause.err" 2>&1; then
    why="$why resume failed: $(err pause);"
  else
    sleep 1.5
    c2=$(cat /run/pause-out/count)
    [ "$c2" -gt "$c1" ] || why="$why counter did not advance after resume ($c1 -> $c2);"
    fz=$(cgf pause cgroup.freeze)
    [ "$fz" = 0 ] || why="$why cgroup.freeze is '$fz' after resume;"
    oci state pause >"$L/pause.state" 2>>"$L/pause.err"
    grep -q '"status": *"running"' "$L/pause.state" || why="$why state after resume is not running;"
  fi
  if [ -z "$why" ]; then ok pause-resume; else notok pause-resume "$why"; fi
  finish pause
}

# (e) update: memory and pids limits of a running container change.
t_update() {
  enter update
  if ! start update update; then
    notok update-limits "run -d failed: $(err update)"
    finish update
    return
  fi
  m0=$(cgf update memory.max)
  p0=$(cgf update pids.max)
  if ! oci update --memory 67108864 --pids-limit 30 update >>"$L/update.err" 2>&1; then
    notok update-limits "update failed: $(err update)"
  else
    m1=$(cgf update memory.max)
    p1=$(cgf update pids.max)
    if [ "$m0" = 33554432 ] && [ "$p0" = 20 ] && [ "$m1" = 67108864 ] && [ "$p1" = 30 ]; then
      ok update-limits
    else
      notok update-limits "memory.max $m0 -> $m1 (want 33554432 -> 67108864), pids.max $p0 -> $p1 (want 20 -> 30)"
    fi
  fi
  finish update
}

# (f) cleanup: delete removes the cgroup directory (and the others left none).
t_cleanup() {
  enter cleanup
  if start clean plain-sleep; then
    if [ ! -d "$CTRDIR/clean" ]; then
      notok cleanup "no cgroup directory $CTRDIR/clean while running"
    else
      oci delete --force clean >"$L/clean.del" 2>&1
      st=$?
      if [ $st -ne 0 ]; then
        notok cleanup "delete --force exited $st: $(tr '\n' ' ' < "$L/clean.del")"
      elif [ -d "$CTRDIR/clean" ]; then
        notok cleanup "$CTRDIR/clean still there after delete"
      elif [ -n "$LEFT" ]; then
        notok cleanup "cgroup directories left behind by:$LEFT"
      else
        ok cleanup
      fi
    fi
  else
    notok cleanup "run -d failed: $(err clean)"
  fi
  oci delete --force clean >/dev/null 2>&1
}

# Extra: an absolute cgroupsPath whose parents hold no processes.
t_abs() {
  enter abs
  if start mem-abs mem-abs; then
    max=$(head -n1 $CG/codex-vm/mem-abs/memory.max 2>&1)
    if [ "$max" = 33554432 ]; then ok abs-cgroupspath-memory; else notok abs-cgroupspath-memory "memory.max is '$max'"; fi
  else
    notok abs-cgroupspath-memory "run -d failed: $(err mem-abs)"
  fi
  oci delete --force mem-abs >/dev/null 2>&1
  if [ -d $CG/codex-vm/mem-abs ]; then echo "# $CG/codex-vm/mem-abs left behind"; fi
}

# Extra: the device rules every engine sends (deny all + defaults) work on v2.
t_devices() {
  enter devices
  b=$(bundle devices devices)
  oci run --bundle "$b" devices </dev/null >"$L/devices.out" 2>"$L/devices.err"
  st=$?
  if [ $st -eq 0 ] && grep -q devices-ok "$L/devices.out"; then
    ok devices-default-rules
  else
    notok devices-default-rules "run exited $st: $(err devices)"
  fi
  oci delete --force devices >/dev/null 2>&1
}

# Extra: `update` with the device rules in force (containerd's shim resends them on every
# UpdateContainerResources) applies the rest; new rules replace the eBPF program: a
# widened rule works (so the old program is gone), a narrowed one holds again.
t_devices_update() {
  enter devupd
  if ! start devupd devices-update; then
    notok devices-update "run -d failed: $(err devupd)"
    finish devupd
    return
  fi
  mk() { oci exec --cap CAP_MKNOD devupd mknod "/dev/k$1" c 1 11 >>"$L/devupd.err" 2>&1; }
  upd() { oci update --resources "/configs/res-devices-$1.json" devupd >>"$L/devupd.err" 2>&1; }
  why=""
  mk 0 && why="$why mknod 1:11 allowed under deny-all;"
  upd same || why="$why update with the unchanged rules failed;"
  [ "$(cgf devupd memory.max)" = 67108864 ] || why="$why memory.max is '$(cgf devupd memory.max)' after update;"
  upd kmsg || why="$why update with a new rule failed;"
  mk 1 || why="$why mknod 1:11 refused after the rule allowing it;"
  upd same || why="$why update back to deny-all failed;"
  mk 2 && why="$why mknod 1:11 still allowed after the rule went;"
  if [ -z "$why" ]; then ok devices-update; else notok devices-update "$why $(err devupd)"; fi
  finish devupd
}

# The caller's cgroup: a container with resources, started from a cgroup that holds
# processes, must not change that cgroup (a threaded controller such as pids written to
# its cgroup.subtree_control makes it a thread root, and every later container below
# it "domain invalid"); a plain container must still run from there afterwards.
t_caller_intact() {
  enter caller
  start caller-pids pids
  echo "# caller-pids: run -d exited $?: $(err caller-pids)"
  oci delete --force caller-pids >/dev/null 2>&1
  t=$(cat "$CGDIR/cgroup.type")
  sc=$(cat "$CGDIR/cgroup.subtree_control")
  b=$(bundle caller-plain plain-cgroupns)
  oci run --bundle "$b" caller-plain </dev/null >"$L/caller-plain.out" 2>"$L/caller-plain.err"
  st=$?
  oci delete --force caller-plain >/dev/null 2>&1
  if [ "$t" = domain ] && [ -z "$sc" ] && [ $st -eq 0 ]; then
    ok caller-cgroup-intact
  else
    notok caller-cgroup-intact "after a pids-limited container, the caller's cgroup is type '$t' with subtree_control '$sc'; a plain container then exited $st: $(err caller-plain)"
  fi
}

# The init is cloned straight into its cgroup (clone3 with CLONE_INTO_CGROUP), never
# moved there by a cgroup.procs write, which waits an RCU grace period: the runtime's
# trace (CODEX_TRACE) names the way it went, and the container sees its own cgroup.
t_cloned() {
  enter cloned
  b=$(bundle cloned plain-cgroupns)
  CODEX_TRACE=/run/trace-cloned oci run --bundle "$b" cloned </dev/null >"$L/cloned.out" 2>"$L/cloned.err"
  st=$?
  out=$(tr '\n' ' ' < "$L/cloned.out")
  trace=$(tr '\n' ';' < /run/trace-cloned 2>&1 | cut -c1-600)
  oci delete --force cloned >/dev/null 2>&1
  if [ $st -eq 0 ] && [ "$out" = "0::/ " ] && grep -q "rt: init cloned into its cgroup" /run/trace-cloned; then
    ok init-cloned-into-cgroup
  else
    notok init-cloned-into-cgroup "run exited $st, /proc/self/cgroup inside '$out'; trace: $trace; stderr: $(err cloned)"
  fi
}

for t in plain cloned memory pids cpu pause update abs devices devices_update cleanup; do
  "t_$t"
  caller_state "$t"
done
t_caller_intact

echo "# cgroups left: $(cd $CG && ls -d t-*/*/ 2>/dev/null | tr '\n' ' ')"
echo "# cgroups at the root: $(cd $CG && ls -d */ 2>/dev/null | tr '\n' ' ')"
echo "# containers left: $(oci list -q 2>/dev/null | tr '\n' ' ')"
if [ -z "$failed" ]; then
  echo "CGROUP-V2-TESTS: PASS $pass/$total"
else
  echo "CGROUP-V2-TESTS: FAIL $((total - pass))/$total failed:$failed"
fi
