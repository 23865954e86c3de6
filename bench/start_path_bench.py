#!/usr/bin/env python3
"""The engine's start path against the bare runtime (issue 19): `codex-ctr run --rm
--network none busybox true` interleaved with `codex-oci run` of the same busybox rootfs,
once with `codex-oci spec`'s default config and once with the very config the engine
generates for that container (its default seccomp profile, masked paths, devices...).
Wall time, the CPU of the command and what it waited for, and the whole machine's CPU
during the run (from /proc/stat: the detached supervisor and the kernel's work included,
so it is only meaningful on a quiet machine). Then the engine run's phases from
CODEX_TRACE, medians. Rewrites its section of docs/benchmarks.md."""

import argparse, collections, json, os, random, resource, shutil, statistics, subprocess, tempfile, time

from common import replace_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target/release")
CTR = os.path.join(REL, "codex-ctr")
OCI = os.path.join(REL, "codex-oci")
TAR = os.path.join(ROOT, "rootfs-fixtures/out/busybox/rootfs.tar")
HEADING = "## Engine start against the bare runtime (bench/start_path_bench.py)"


def machine_cpu_ms():
    """User + nice + system + irq + softirq of all CPUs, in ms (idle and iowait excluded)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (v[0] + v[1] + v[2] + v[5] + v[6]) * 1000 / hz


def run(cmd, env=None, cwd=None):
    """(wall ms, CPU ms of the command and its waited-for children, machine CPU ms)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m0 = machine_cpu_ms()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = (time.perf_counter() - t0) * 1000
    m1 = machine_cpu_ms()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr}")
    cpu = ((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) * 1000
    return wall, cpu, m1 - m0


def bundle(dir_, config):
    os.makedirs(dir_)
    json.dump(config, open(os.path.join(dir_, "config.json"), "w"))
    return dir_


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="codex-spbench-")
    env = dict(os.environ, CODEX_CTR_ROOT=os.path.join(tmp, "ctr"))
    rows = {}
    phases = collections.defaultdict(list)
    try:
        subprocess.run([CTR, "image", "import", TAR, "busybox"], env=env, check=True, stdout=subprocess.DEVNULL)
        rootfs = os.path.join(tmp, "rootfs")
        os.makedirs(rootfs)
        subprocess.run(["tar", "-C", rootfs, "-xf", TAR], check=True)
        # codex-oci spec's default, running `true`.
        subprocess.run([OCI, "spec", "--bundle", tmp], check=True)
        spec = json.load(open(os.path.join(tmp, "config.json")))
        os.remove(os.path.join(tmp, "config.json"))
        spec["process"]["args"] = ["true"]
        spec["process"]["terminal"] = False
        spec["root"] = {"path": rootfs, "readonly": False}
        plain = bundle(os.path.join(tmp, "plain"), spec)
        # The engine's own config for the same container, on the same rootfs dir; the
        # binds of its per-container files (hosts, resolv.conf...) are left out.
        cid = subprocess.run([CTR, "create", "--network", "none", "busybox", "true"], env=env,
                             check=True, capture_output=True, text=True).stdout.strip()
        espec = json.loads(subprocess.run([CTR, "inspect", "--spec", cid], env=env, check=True,
                                          capture_output=True, text=True).stdout)
        subprocess.run([CTR, "rm", "-f", cid], env=env, check=True, stdout=subprocess.DEVNULL)
        espec["root"] = {"path": rootfs, "readonly": False}
        espec["mounts"] = [m for m in espec["mounts"] if not m.get("source", "").startswith(tmp)]
        espec.get("linux", {}).pop("cgroupsPath", None)
        engine_cfg = bundle(os.path.join(tmp, "engine"), espec)
        cmds = {
            "codex-ctr run --rm": ([CTR, "run", "--rm", "--network", "none", "busybox", "true"], None),
            "codex-oci run, `codex-oci spec` config": ([OCI, "run", "--bundle", plain], plain),
            "codex-oci run, the engine's config": ([OCI, "run", "--bundle", engine_cfg], engine_cfg),
        }
        samples = {k: [] for k in cmds}
        trace = os.path.join(tmp, "trace")
        rng = random.Random(19)
        for i in range(a.runs + 3):
            # A shuffled order each round: a run's asynchronous teardown (network
            # namespace, cgroups) lands on whichever command follows it.
            order = list(cmds.items())
            rng.shuffle(order)
            for k, (cmd, cwd) in order:
                if cwd:
                    cmd = cmd + [f"sp{i}-{len(samples[k])}"]
                s = run(cmd, env, cwd)
                if i >= 3:
                    samples[k].append(s)
            # A traced engine run after each round (not timed: the trace writes a file).
            if i >= 3:
                tenv = dict(env, CODEX_TRACE=trace)
                subprocess.run(cmds["codex-ctr run --rm"][0], env=tenv, check=True, stdout=subprocess.DEVNULL)
                per = collections.defaultdict(float)
                with open(trace) as f:
                    events = sorted((float(p[2]), p[4].strip()) for p in (l.split(maxsplit=4) for l in f))
                for (t0, _), (t1, name) in zip(events, events[1:]):
                    per[name] += t1 - t0
                per["total"] = events[-1][0] - events[0][0]
                for k, v in per.items():
                    phases[k].append(v)
                os.remove(trace)
        for k, v in samples.items():
            # /proc/stat counts in ticks (10 ms): a single run's machine CPU is 0, 10 or
            # 20 ms; the mean over all runs is what it measures.
            rows[k] = (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v),
                       statistics.mean(x[2] for x in v))
    finally:
        subprocess.run(["umount", "-R", tmp], stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows["codex-ctr run --rm"]
    # Paired too: each round's engine run against the same round's run of this command,
    # the median of those ratios (a slow spell of the machine hits both sides of a pair).
    engine = [x[0] for x in samples["codex-ctr run --rm"]]
    paired = {k: statistics.median(e / x[0] for e, x in zip(engine, v)) for k, v in samples.items()}
    lines = ["| command | median wall (ms) | CPU of it and its children, median (ms) | machine CPU, mean (ms) | "
             "codex-ctr's wall vs this | the same, median of per-round ratios | wall / machine CPU |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for k, (w, c, m) in rows.items():
        lines.append(f"| {k} | {w:.1f} | {c:.1f} | {m:.1f} | {base[0] / w:.2f}x | {paired[k]:.2f}x | "
                     f"{w / max(m, 0.001):.2f} |")
    plines = ["| phase (process) | median (ms) |", "| --- | ---: |"]
    for k, v in phases.items():
        plines.append(f"| {k} | {statistics.median(v):.2f} |")
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    section = "\n".join([
        HEADING,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} (release build, load average {load} at the end), {a.runs} "
        "interleaved rounds (each in a shuffled order), in `make bench`'s wrapper. The same busybox rootfs for all: imported into the "
        "engine (an overlay of its layer) and extracted into a directory for the runtime. \"Machine CPU\" is "
        "the whole machine's busy time during the command (/proc/stat): with the engine it includes the "
        "detached supervisor, the container and the kernel's work; it is only meaningful on a quiet machine.",
        "",
        *lines,
        "",
        f"Where a traced `codex-ctr run --rm` spends its time (CODEX_TRACE, {a.runs} runs, medians of each "
        "phase: the time since the previous event in any process; a phase that occurs in two processes "
        "is summed):",
        "",
        *plines,
        "",
    ])
    print(section)
    if a.out:
        replace_section(os.path.join(ROOT, a.out), HEADING, section)


if __name__ == "__main__":
    main()
