#!/usr/bin/env python3
"""Times `RUNTIME run` of /bin/true on one busybox bundle (create + start + wait +
delete, no terminal) for codex-oci, runc and crun, interleaved round by round so that
machine noise hits all of them alike. Reports medians of wall and CPU time (user+sys
of the runtime and everything it forked) and ratios, and the peak RSS of each runtime
process, then rewrites the runtime section of docs/benchmarks.md."""

import argparse, json, os, platform, random, resource, shutil, statistics, subprocess, sys, tempfile, time

from common import drop_page_cache, replace_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "rootfs-fixtures/out/busybox")


def make_bundle(tmp):
    with open(os.path.join(FIXTURE, "config.json")) as f:
        c = json.load(f)
    c["ociVersion"] = "1.0.2"  # crun 1.8 rejects newer versions
    c["process"]["args"] = ["/bin/true"]
    c["process"]["terminal"] = False
    c["root"] = {"path": os.path.join(FIXTURE, "rootfs"), "readonly": True}
    os.makedirs(tmp, exist_ok=True)
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(c, f)
    return tmp


def make_limited_bundle(tmp):
    """The same bundle with a memory + cpu + pids limit."""
    d = make_bundle(tmp)
    path = os.path.join(d, "config.json")
    with open(path) as f:
        c = json.load(f)
    c.setdefault("linux", {})["resources"] = {
        "memory": {"limit": 256 * 1024 * 1024},
        "cpu": {"quota": 100000, "period": 100000, "shares": 512},
        "pids": {"limit": 100},
    }
    with open(path, "w") as f:
        json.dump(c, f)
    return d


def make_seccomp_bundle(tmp, codex_oci):
    """The bundle with the capabilities and seccomp profile `codex-oci spec
    --seccomp-default` writes: the Docker-like default profile the engine gives every
    container (~300 rules)."""
    d = make_bundle(tmp)
    gen = os.path.join(tmp, "generated")
    os.makedirs(gen, exist_ok=True)
    subprocess.run([codex_oci, "spec", "--seccomp-default", "--bundle", gen], check=True)
    with open(os.path.join(gen, "config.json")) as f:
        g = json.load(f)
    path = os.path.join(d, "config.json")
    with open(path) as f:
        c = json.load(f)
    c["process"]["capabilities"] = g["process"]["capabilities"]
    c.setdefault("linux", {})["seccomp"] = g["linux"]["seccomp"]
    with open(path, "w") as f:
        json.dump(c, f)
    return d


def seccomp_rows(runtimes, tmp, plain, runs):
    """`run` of the seccomp bundle, interleaved round by round: codex-oci with its
    compiled-program cache emptied before every run (cold: libseccomp compiles the
    profile, as every run did before the cache) and kept (warm), runc and crun (which
    compile on every run), and codex-oci without a profile for reference."""
    bundle = make_seccomp_bundle(os.path.join(tmp, "seccomp"), runtimes["codex-oci"])
    rows = {"codex-oci, no profile": (runtimes["codex-oci"], plain, None),
            "codex-oci, cache cold": (runtimes["codex-oci"], bundle, "cold"),
            "codex-oci, cache warm": (runtimes["codex-oci"], bundle, "warm")}
    rows |= {k: (v, bundle, None) for k, v in runtimes.items() if k != "codex-oci"}
    out = {k: {"wall": [], "cpu": []} for k in rows}
    for i in range(runs + 3):
        for n, (name, (exe, b, cache)) in enumerate(rows.items()):
            root = os.path.join(tmp, "state-seccomp-" + name.split(",")[0] + ("-" + cache if cache else ""))
            if cache == "cold":
                shutil.rmtree(os.path.join(root, "@seccomp-bpf"), ignore_errors=True)
            cid = f"bench-{os.getpid()}-sc{i}-{n}"
            wall, cpu, _ = one_run([exe, "--root", root, "run", "--bundle", b, cid])
            if i >= 3:
                out[name]["wall"].append(wall * 1000)
                out[name]["cpu"].append(cpu * 1000)
    if not os.listdir(os.path.join(tmp, "state-seccomp-codex-oci-warm", "@seccomp-bpf")):
        raise SystemExit("the warm codex-oci runs left no cache entry")
    return {k: {m: statistics.median(v[m]) for m in v} for k, v in out.items()}


def seccomp_section(med, runs):
    base = med["codex-oci, cache warm"]
    lines = ["| runtime | median wall (ms) | median CPU (ms) | wall vs codex-oci warm | CPU vs codex-oci warm |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for k, m in med.items():
        lines.append(f"| {k} | {m['wall']:.2f} | {m['cpu']:.2f} | {m['wall'] / base['wall']:.2f}x | {m['cpu'] / base['cpu']:.2f}x |")
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join([
        "## `run` of /bin/true with the default seccomp profile",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()} (Linux {platform.release()}, "
        f"{os.cpu_count()} cores, load average {load} at the end), {runs} interleaved rounds after 3 "
        "warm-up rounds, same wrapper as above. The bundle carries the capabilities and profile of "
        "`codex-oci spec --seccomp-default` (the engine's default, ~300 rules). codex-oci keeps the "
        "BPF libseccomp compiles in `<root>/@seccomp-bpf` (docs/seccomp.md): *cold* empties it before "
        "every run, so libseccomp compiles the profile each time as every run did before the cache; "
        "*warm* loads the stored program. runc and crun compile on every run.",
        "",
        *lines,
        "",
    ])


def events_latency(runtimes, tmp, bundle_dir, runs):
    """Median wall time of `RUNTIME events --stats ID` on a running container."""
    out = {}
    with open(os.path.join(bundle_dir, "config.json")) as f:
        c = json.load(f)
    c["process"]["args"] = ["sleep", "600"]
    sleeper = os.path.join(tmp, "sleeper")
    os.makedirs(sleeper, exist_ok=True)
    with open(os.path.join(sleeper, "config.json"), "w") as f:
        json.dump(c, f)
    for name, exe in runtimes.items():
        if name == "crun":
            continue  # crun has no `events`
        root = os.path.join(tmp, "state-events-" + name)
        cid = f"bench-{os.getpid()}-{name}-events"
        subprocess.run([exe, "--root", root, "run", "-d", "--bundle", sleeper, cid], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            times = []
            for i in range(runs + 3):
                t0 = time.perf_counter()
                subprocess.run([exe, "--root", root, "events", "--stats", cid], check=True, stdout=subprocess.DEVNULL)
                if i >= 3:
                    times.append((time.perf_counter() - t0) * 1000)
            out[name] = statistics.median(times)
        finally:
            subprocess.run([exe, "--root", root, "delete", "--force", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


def pair_rounds(runtimes, tmp, bundle, runs, rng):
    """codex-oci and crun alone, interleaved in a shuffled order each round (issue 19's
    runtime target compares these two): no third runtime's teardown lands on either.
    Medians, and the median of each round's codex-oci / crun ratio (a paired statistic:
    a slow moment slows both sides of one round)."""
    if "crun" not in runtimes:
        return None
    two = [("codex-oci", runtimes["codex-oci"]), ("crun", runtimes["crun"])]
    out = {"codex-oci": {"wall": [], "cpu": []}, "crun": {"wall": [], "cpu": []}}
    ratios = {"wall": [], "cpu": []}
    for i in range(runs + 3):
        order = list(two)
        rng.shuffle(order)
        got = {}
        for name, exe in order:
            cid = f"bench-{os.getpid()}-{name}-pair{i}"
            wall, cpu, _ = one_run([exe, "--root", os.path.join(tmp, "state-" + name), "run", "--bundle", bundle, cid])
            got[name] = (wall * 1000, cpu * 1000)
        if i >= 3:
            for n, (w, c) in got.items():
                out[n]["wall"].append(w)
                out[n]["cpu"].append(c)
            ratios["wall"].append(got["codex-oci"][0] / got["crun"][0])
            ratios["cpu"].append(got["codex-oci"][1] / got["crun"][1])
    med = {n: {m: statistics.median(v) for m, v in d.items()} for n, d in out.items()}
    return med, {m: statistics.median(v) for m, v in ratios.items()}


def pair_section(pair, runs):
    if pair is None:
        return ""
    med, ratio = pair
    c, r = med["codex-oci"], med["crun"]
    return "\n".join([
        "",
        "### codex-oci against crun alone",
        "",
        f"Same wrapper and machine, {runs} rounds of the two alone, each round in a shuffled order "
        "(no runc in the loop, whose teardown lands on whichever runtime follows it). Issue 19's "
        "target for the runtime is 0.80x crun or less, in wall and CPU time.",
        "",
        "| | codex-oci (ms) | crun (ms) | ratio of the medians | median of per-round ratios |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| wall | {c['wall']:.2f} | {r['wall']:.2f} | {c['wall'] / r['wall']:.2f}x | {ratio['wall']:.2f}x |",
        f"| CPU | {c['cpu']:.2f} | {r['cpu']:.2f} | {c['cpu'] / r['cpu']:.2f}x | {ratio['cpu']:.2f}x |",
        "",
    ])


def one_run(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {err}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--out", default=None)
    ap.add_argument("--cold-runs", type=int, default=10)
    ap.add_argument("--only-seccomp", action="store_true",
                    help="only the default-profile rows (and only their section of --out)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="codex-bench-")
    bundle = make_bundle(os.path.join(tmp, "bundle"))
    runtimes = {
        "codex-oci": os.path.join(ROOT, "target/release/codex-oci"),
        "runc": shutil.which("runc"),
        "crun": shutil.which("crun"),
    }
    runtimes = {k: v for k, v in runtimes.items() if v}
    # Every binary's page cache dropped: each is then read back by its first (warm-up)
    # exec, as a binary that has been on disk a while is. A binary the linker has just
    # written ran 0.6-0.8 ms faster per `run` than the same bytes read back
    # (docs/benchmarks.md, "Static runtime binaries").
    for exe in runtimes.values():
        drop_page_cache(exe)
    sc_heading = "## `run` of /bin/true with the default seccomp profile"
    if a.only_seccomp:
        try:
            sc = seccomp_section(seccomp_rows(runtimes, tmp, bundle, a.runs), a.runs)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(sc)
        if a.out:
            replace_section(os.path.join(ROOT, a.out), sc_heading, sc)
        return
    results = {k: {"wall": [], "cpu": [], "rss": []} for k in runtimes}
    limited = make_limited_bundle(os.path.join(tmp, "limited"))
    limited_wall = {k: [] for k in runtimes}
    try:
        # Each round in a shuffled order (seeded: reproducible): in a fixed order the
        # runtime after another one was measured 0.2-0.3 ms of CPU and up to 4 ms of
        # wall off (the previous one's teardown still running).
        rng = random.Random(19)
        for i in range(a.runs + 3):
            order = list(runtimes.items())
            rng.shuffle(order)
            for name, exe in order:
                cid = f"bench-{os.getpid()}-{name}-{i}"
                cmd = [exe, "--root", os.path.join(tmp, "state-" + name), "run", "--bundle", bundle, cid]
                wall, cpu, _ = one_run(cmd)
                if i >= 3:  # warm-up rounds are not counted
                    r = results[name]
                    r["wall"].append(wall * 1000)
                    r["cpu"].append(cpu * 1000)
        # `run` with memory + cpu + pids limits.
        for i in range(a.runs // 2 + 3):
            order = list(runtimes.items())
            rng.shuffle(order)
            for name, exe in order:
                cid = f"bench-{os.getpid()}-{name}-lim{i}"
                cmd = [exe, "--root", os.path.join(tmp, "state-" + name), "run", "--bundle", limited, cid]
                wall = one_run(cmd)[0]
                if i >= 3:
                    limited_wall[name].append(wall * 1000)
        pair = pair_rounds(runtimes, tmp, bundle, a.runs, rng)
        events = events_latency(runtimes, tmp, bundle, a.runs // 2)
        sc = seccomp_section(seccomp_rows(runtimes, tmp, bundle, a.runs // 2), a.runs // 2)
        # Cold runs: after half a second of idle, as a single `run` on a quiet machine
        # sees it (kernel caches such as the cgroup RCU sync state have gone cold).
        for i in range(a.cold_runs):
            for name, exe in runtimes.items():
                time.sleep(0.5)
                cid = f"bench-{os.getpid()}-{name}-cold{i}"
                cmd = [exe, "--root", os.path.join(tmp, "state-" + name), "run", "--bundle", bundle, cid]
                results[name].setdefault("cold", []).append(one_run(cmd)[0] * 1000)
        # Peak RSS in separate, untimed runs under GNU time: a child forked from
        # Python would start with Python's own high-water mark.
        for name, exe in runtimes.items():
            for i in range(5):
                cid = f"bench-{os.getpid()}-{name}-rss{i}"
                cmd = ["/usr/bin/time", "-f", "%M", exe, "--root", os.path.join(tmp, "state-" + name), "run", "--bundle", bundle, cid]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                results[name]["rss"].append(int(out.stderr.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: {m: statistics.median(v[m]) for m in ("wall", "cpu", "cold")} | {"rss": max(v["rss"])} for k, v in results.items()}
    base = med["codex-oci"]
    lines = [
        "| runtime | median wall (ms) | median CPU (ms) | wall vs codex-oci | CPU vs codex-oci | cold wall (ms) | cold vs codex-oci | peak RSS (KiB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for k, m in med.items():
        lines.append(
            f"| {k} | {m['wall']:.2f} | {m['cpu']:.2f} | {m['wall'] / base['wall']:.2f}x | {m['cpu'] / base['cpu']:.2f}x "
            f"| {m['cold']:.2f} | {m['cold'] / base['cold']:.2f}x | {m['rss']} |"
        )
    versions = {}
    for k, exe in runtimes.items():
        try:
            versions[k] = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        except Exception:  # noqa: BLE001
            versions[k] = "?"
    section = "\n".join(
        [
            "## `run` of /bin/true (create + start + wait + delete)",
            "",
            f"Measured {time.strftime('%Y-%m-%d')} by `make bench` on {platform.node()} (Linux {platform.release()}, "
            f"{os.cpu_count()} cores), {a.runs} interleaved rounds (each in a shuffled order) after 3 warm-up rounds, "
            "all runtimes in the same wrapper (private mount namespace, /sys/fs/cgroup/unified unmounted, "
            "because crun 1.8 refuses hybrid hosts). Ratios above 1 mean slower than codex-oci. "
            "CPU is user+sys of the runtime and every process it forked and waited for; peak RSS is "
            "the largest resident set of the runtime process (ru_maxrss, KiB, over 5 separate runs). "
            f"Cold wall is the median of {a.cold_runs} runs each made after 0.5 s of idle.",
            "",
            *lines,
            "",
            "Versions: " + "; ".join(f"{k}: {v}" for k, v in versions.items()),
            pair_section(pair, a.runs),
        ]
    )
    lim = {k: statistics.median(v) for k, v in limited_wall.items()}
    lines2 = ["| runtime | `run` with memory+cpu+pids limits, median wall (ms) | vs codex-oci | `events --stats`, median (ms) | vs codex-oci |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for k in runtimes:
        ev = events.get(k)
        ev_s = f"{ev:.2f} | {ev / events['codex-oci']:.2f}x" if ev is not None else "n/a (no `events`) | —"
        lines2.append(f"| {k} | {lim[k]:.2f} | {lim[k] / lim['codex-oci']:.2f}x | {ev_s} |")
    section += "\n".join(["", "### With resource limits, and stats latency", "",
                          f"Same wrapper and machine, {a.runs // 2} interleaved rounds of `run` with "
                          "memory 256 MiB, cpu quota 1 CPU + shares 512, pids 100; `events --stats` on a running "
                          f"container, {a.runs // 2} calls each.", "", *lines2, "", ""])
    print(section)
    print(sc)
    if a.out:
        path = os.path.join(ROOT, a.out)
        replace_section(path, "## `run` of /bin/true (create", section)
        replace_section(path, sc_heading, sc)


if __name__ == "__main__":
    main()
