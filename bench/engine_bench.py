#!/usr/bin/env python3
"""Engine benchmarks: `codex-ctr run --rm busybox true` against `podman run --rm` with
runc and with crun (same imported busybox image, --network none, cgroupfs, modest
ulimits), interleaved; `create` and `start` separately; the supervisor's resident
memory; and N idle containers: memory overhead and how long `ps` / `stats` take.
Rewrites the engine section of docs/benchmarks.md."""

import argparse, json, os, shutil, statistics, subprocess, tempfile, time

from common import replace_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CTR = os.path.join(ROOT, "target/release/codex-ctr")
TAR = os.path.join(ROOT, "rootfs-fixtures/out/busybox/rootfs.tar")


def timed(cmd, env=None):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr}")
    return dt, p.stdout


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def smaps_kib(pid):
    """(Pss, Private) of a process in KiB: what it costs on its own, shared pages
    (libc, the binary) counted once across all processes that map them."""
    pss = private = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, rest = line.partition(":")
                if k == "Pss":
                    pss = int(rest.split()[0])
                elif k in ("Private_Clean", "Private_Dirty"):
                    private += int(rest.split()[0])
    except OSError:
        pass
    return pss, private


def conmon_memory(base):
    """(Rss, Pss, Private) KiB of conmon for one idle podman container, or None."""
    try:
        out = subprocess.run(base + ["run", "-d", "--network", "none", "--cgroup-manager", "cgroupfs",
                                     "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                                     "localhost/bb", "sleep", "60"], capture_output=True, text=True, check=True).stdout.strip()
        time.sleep(1)
        pid = int(subprocess.run(base + ["inspect", "--format", "{{.State.ConmonPid}}", out],
                                 capture_output=True, text=True, check=True).stdout.strip())
        pss, private = smaps_kib(pid)
        rss = rss_kib(pid)
        subprocess.run(base + ["rm", "-f", "-t", "0", out], capture_output=True)
        return rss, pss, private
    except (subprocess.CalledProcessError, ValueError):
        return None


def mem_available_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--many", type=int, default=200)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="codex-ebench-")
    env = dict(os.environ, CODEX_CTR_ROOT=os.path.join(tmp, "ctr"))
    timed([CTR, "image", "import", TAR, "busybox"], env)
    pod = {}
    pod_base = None
    if shutil.which("podman"):
        base = pod_base = ["podman", "--root", os.path.join(tmp, "pr"), "--runroot", os.path.join(tmp, "pq"), "--storage-driver", "vfs"]
        timed(base + ["import", TAR, "localhost/bb:latest"])
        common = ["run", "--rm", "--network", "none", "--cgroup-manager", "cgroupfs",
                  "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "localhost/bb", "true"]
        for rt in ("runc", "crun"):
            if shutil.which(rt):
                pod[f"podman + {rt}"] = base + ["--runtime", shutil.which(rt)] + common
    # podman runs with --network none: so does the codex-ctr row it is compared with;
    # the bridge row (the default network) shows what the bridge adds to a start.
    cmds = {"codex-ctr": [CTR, "run", "--rm", "--network", "none", "busybox", "true"],
            "codex-ctr (default bridge)": [CTR, "run", "--rm", "busybox", "true"], **pod}
    walls = {k: [] for k in cmds}
    try:
        for i in range(a.runs + 2):
            for k, cmd in cmds.items():
                dt, _ = timed(cmd, env if k.startswith("codex-ctr") else None)
                if i >= 2:
                    walls[k].append(dt)
        # create and start on their own
        creates, starts = [], []
        for i in range(a.runs):
            dt, out = timed([CTR, "create", "busybox", "sleep", "60"], env)
            cid = out.strip()
            creates.append(dt)
            dt, _ = timed([CTR, "start", cid], env)
            starts.append(dt)
            subprocess.run([CTR, "rm", "-f", cid], env=env, stdout=subprocess.DEVNULL)
        # many idle containers
        before = mem_available_kib()
        ids = []
        t0 = time.perf_counter()
        for i in range(a.many):
            _, out = timed([CTR, "run", "-d", "busybox", "sleep", "3600"], env)
            ids.append(out.strip())
        start_many = (time.perf_counter() - t0) * 1000
        time.sleep(1)
        after = mem_available_kib()
        recs = json.loads(timed([CTR, "ps", "--format", "json"], env)[1])
        sups = [r["supervisor_pid"] for r in recs if r.get("supervisor_pid")]
        sup_rss = statistics.median(rss_kib(p) for p in sups) if sups else 0
        sup_pss = statistics.median(smaps_kib(p)[0] for p in sups) if sups else 0
        sup_private = statistics.median(smaps_kib(p)[1] for p in sups) if sups else 0
        ps_ms = statistics.median(timed([CTR, "ps"], env)[0] for _ in range(5))
        stats_ms, _ = timed([CTR, "stats", "--no-stream"], env)
        conmon = conmon_memory(pod_base) if pod_base else None
        for cid in ids:
            subprocess.run([CTR, "rm", "-f", cid], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        subprocess.run(["umount", "-R", tmp], stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    base_ms = med["codex-ctr"]
    lines = ["| engine | `run --rm busybox true`, median wall (ms) | vs codex-ctr |", "| --- | ---: | ---: |"]
    for k, v in med.items():
        lines.append(f"| {k} | {v:.1f} | {v / base_ms:.2f}x |")
    section = "\n".join([
        "## Engine: `codex-ctr` against podman",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `make bench`, same wrapper as above, {a.runs} interleaved rounds "
        "(podman 4.3 with `--network none --cgroup-manager cgroupfs` and modest ulimits, vfs storage, the same "
        "busybox rootfs imported into both).",
        "",
        *lines,
        "",
        f"- `codex-ctr create`: median {statistics.median(creates):.1f} ms; `codex-ctr start` (supervisor up, container running): "
        f"median {statistics.median(starts):.1f} ms.",
        f"- Supervisor memory per running container (median, `/proc/PID/smaps_rollup`): RSS {sup_rss} KiB, "
        f"PSS {sup_pss} KiB, private {sup_private} KiB"
        + (f"; conmon under podman, same method: RSS {conmon[0]} KiB, PSS {conmon[1]} KiB, private {conmon[2]} KiB."
           if conmon else " (conmon is reported at about 300 KiB RSS).")
        + " RSS counts shared libc pages in full; PSS and private are the per-container cost (docs/supervisor.md).",
        f"- {a.many} idle containers (`sleep 3600`): started in {start_many / 1000:.1f} s; host memory in use grew by "
        f"{(before - after) / 1024:.0f} MiB ({(before - after) / a.many:.0f} KiB per container, supervisor and container together); "
        f"`codex-ctr ps` took {ps_ms:.0f} ms and `codex-ctr stats --no-stream` of all of them {stats_ms:.0f} ms "
        "(stats samples every container, waits one 500 ms window, samples again).",
        "",
    ])
    print(section)
    if a.out:
        replace_section(os.path.join(ROOT, a.out), "## Engine: `codex-ctr`", section)


if __name__ == "__main__":
    main()
