#!/usr/bin/env python3
"""Scale benchmark (`make bench-scale`, SCALE_N=1000): one root with N running `sleep`
containers. Measures: the start of all N (sequential `run -d`), `ps`, `stats --no-stream`,
single-container create/start/inspect/stop/rm with 1 and with N containers present, the
supervisors' private memory (Private_* of smaps_rollup) and idle CPU, and 50 concurrent
`run -d` against 50 sequential ones. Every container runs with `--network none` (the
engine, not the bridge, is measured). Rewrites the scale section of docs/benchmarks.md."""

import argparse, json, os, resource, shutil, statistics, subprocess, tempfile, time
from concurrent.futures import ThreadPoolExecutor

from common import replace_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAR = os.path.join(ROOT, "rootfs-fixtures/out/busybox/rootfs.tar")
RUN_D = ["run", "-d", "--network", "none", "busybox", "sleep", "3600"]
HZ = os.sysconf("SC_CLK_TCK")


class Ctr:
    def __init__(self, exe, root):
        self.exe, self.env = exe, dict(os.environ, CODEX_CTR_ROOT=root)

    def run(self, *args):
        p = subprocess.run([self.exe, *args], env=self.env, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"codex-ctr {' '.join(args)} failed: {p.stderr}")
        return p.stdout

    def timed(self, *args):
        t0 = time.perf_counter()
        out = self.run(*args)
        return (time.perf_counter() - t0) * 1000, out


def smaps_private_kib(pid):
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, rest = line.partition(":")
                if k in ("Private_Clean", "Private_Dirty"):
                    total += int(rest.split()[0])
    except OSError:
        return None
    return total


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


OPS = ("create", "start", "inspect", "stop", "rm")


def one_round(c):
    """ms of create, start, inspect, stop, rm of one container."""
    t = {}
    t["create"], out = c.timed("create", "--network", "none", "busybox", "sleep", "3600")
    cid = out.strip()
    t["start"] = c.timed("start", cid)[0]
    t["inspect"] = c.timed("inspect", cid)[0]
    t["stop"] = c.timed("stop", "-t", "0", cid)[0]
    t["rm"] = c.timed("rm", cid)[0]
    return t


def single_ops(roots, rounds):
    """Median ms of each op per root, the roots interleaved round by round (so a change
    in the machine's load hits all of them alike)."""
    acc = [{k: [] for k in OPS} for _ in roots]
    for _ in range(rounds):
        for c, a in zip(roots, acc):
            for k, v in one_round(c).items():
                a[k].append(v)
    return [{k: statistics.median(v) for k, v in a.items()} for a in acc]


def start_path(c, rounds):
    """`run --rm true`: median wall ms and median CPU ms of the CLI and what it waited for."""
    walls, cpus = [], []
    for i in range(rounds + 2):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        dt, _ = c.timed("run", "--rm", "--network", "none", "busybox", "true")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i >= 2:
            walls.append(dt)
            cpus.append(((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def fifty(c, k):
    """Seconds for k `run -d` one after another, and for k at once (separate processes)."""
    t0 = time.perf_counter()
    ids = [c.run(*RUN_D).strip() for _ in range(k)]
    seq = time.perf_counter() - t0
    remove_all(c, ids)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=k) as pool:
        ids = list(pool.map(lambda _: c.run(*RUN_D).strip(), range(k)))
    conc = time.perf_counter() - t0
    remove_all(c, ids)
    return seq, conc


def remove_all(c, ids):
    for i in range(0, len(ids), 100):
        c.run("rm", "-f", *ids[i:i + 100])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--concurrent", type=int, default=50)
    # The fill: `run -d` from this many CLIs at once (1: one after another).
    ap.add_argument("--fill-jobs", type=int, default=4)
    ap.add_argument("--ctr", default=os.path.join(ROOT, "target/release/codex-ctr"))
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="codex-scale-")
    c = Ctr(a.ctr, os.path.join(tmp, "ctr"))
    empty = Ctr(a.ctr, os.path.join(tmp, "empty"))
    ids = []
    r = {}
    try:
        c.run("image", "import", TAR, "busybox")
        empty.run("image", "import", TAR, "busybox")
        r["path_wall"], r["path_cpu"] = start_path(c, a.rounds * 2)
        r["one"] = single_ops([c], a.rounds)[0]
        r["seq"], r["conc"] = fifty(c, a.concurrent)
        t0 = time.perf_counter()
        if a.fill_jobs > 1:
            with ThreadPoolExecutor(max_workers=a.fill_jobs) as pool:
                ids.extend(pool.map(lambda _: c.run(*RUN_D).strip(), range(a.n)))
        else:
            for i in range(a.n):
                ids.append(c.run(*RUN_D).strip())
        r["start_all"] = time.perf_counter() - t0
        time.sleep(2)
        r["ps"] = statistics.median(c.timed("ps")[0] for _ in range(5))
        r["ps_a_json"] = statistics.median(c.timed("ps", "-a", "--format", "json")[0] for _ in range(3))
        recs = json.loads(c.run("ps", "--format", "json"))
        sups = [x["supervisor_pid"] for x in recs if x.get("supervisor_pid")]
        r["running"] = len(sups)
        privs = [p for p in (smaps_private_kib(s) for s in sups) if p is not None]
        r["priv_median"] = statistics.median(privs) if privs else 0
        r["priv_max"] = max(privs) if privs else 0
        window = 10.0
        t_before = {s: cpu_ticks(s) for s in sups}
        time.sleep(window)
        t_after = {s: cpu_ticks(s) for s in sups}
        ticks = sum(t_after[s] - t_before[s] for s in sups if t_before[s] is not None and t_after[s] is not None)
        r["idle_cpu_pct"] = ticks / HZ / window * 100
        r["stats"] = statistics.median(c.timed("stats", "--no-stream")[0] for _ in range(3))
        r["n_one"], r["e_one"] = single_ops([c, empty], a.rounds)
        try:
            r["check"] = c.timed("system", "check")[0]
        except SystemExit:  # an engine without `system check` (a baseline)
            r["check"] = None
    finally:
        try:
            remove_all(c, ids)
        except SystemExit as e:
            print(e)
        subprocess.run(["umount", "-R", tmp], stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(r, indent=1))
    one, n_one, e_one = r["one"], r["n_one"], r["e_one"]
    rows = [f"| `{k}` of one container | {one[k]:.1f} | {e_one[k]:.1f} | {n_one[k]:.1f} | "
            f"{n_one[k] / e_one[k]:.2f}x | {n_one[k] / one[k]:.2f}x |" for k in OPS]
    section = "\n".join([
        "## Scale (bench/scale_bench.py, `make bench-scale`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')}{(' (' + a.label + ')') if a.label else ''} on this 2-core VM, "
        f"N = {a.n} running containers (`run -d --network none busybox sleep 3600`, started "
        + (f"by {a.fill_jobs} CLIs at once" if a.fill_jobs > 1 else "one after another")
        + f"), medians of {a.rounds} rounds for the single-container commands.",
        "",
        "Single-container commands: in the root before the fill (\"alone\"); then, after the fill, "
        "round by round in the full root and in a second, empty root (same moment, same load, same "
        "kernel).",
        "",
        "| command | alone, before the fill (ms) | empty root, after (ms) | root with N (ms) | N vs empty root | N vs alone |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"- `run --rm --network none busybox true`: median wall {r['path_wall']:.1f} ms, CPU {r['path_cpu']:.1f} ms "
        "(the CLI and what it waited for; the detached supervisor's CPU is not counted): "
        f"wall/CPU {r['path_wall'] / max(r['path_cpu'], 0.001):.2f}.",
        f"- All {a.n} started in {r['start_all']:.1f} s ({r['start_all'] / a.n * 1000:.1f} ms each); "
        f"{r['running']} running at the end.",
        f"- With N running: `ps` {r['ps']:.1f} ms, `ps -a --format json` {r['ps_a_json']:.1f} ms, "
        f"`stats --no-stream` of all {r['stats']:.0f} ms (one 500 ms window), `system check` "
        + (f"{r['check']:.0f} ms." if r["check"] is not None else "n/a."),
        f"- Supervisor private memory (Private_Clean + Private_Dirty, smaps_rollup): median {r['priv_median']} KiB, "
        f"max {r['priv_max']} KiB; idle CPU of all {r['running']} supervisors together over 10 s: "
        f"{r['idle_cpu_pct']:.2f} % of one core.",
        f"- {a.concurrent} `run -d` one after another: {r['seq']:.2f} s ({a.concurrent / r['seq']:.1f}/s); "
        f"{a.concurrent} at once from separate processes: {r['conc']:.2f} s ({a.concurrent / r['conc']:.1f}/s); "
        f"concurrent/sequential throughput {r['seq'] / r['conc']:.2f}x.",
        "",
    ])
    print(section)
    if a.out:
        replace_section(os.path.join(ROOT, a.out), "## Scale (bench/scale_bench.py", section)


if __name__ == "__main__":
    main()
