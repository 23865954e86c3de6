#!/usr/bin/env python3
"""Cost of monitoring (docs/monitors.md): CPU of a container's supervisor while the
container idles with a 1 s health check and with usage sampling, and the supervisors'
private memory.

CPU: the shim's own time (utime+stime, /proc/PID/stat fields 14-15) and the time of
the children it reaped (every `__health` process and the helpers below it, and the
`--threshold` event writers: cutime+cstime, fields 16-17), over a window, as % of one
core. Memory: the anonymous memory of each supervisor (smaps_rollup), its own.
Prints markdown; with --out, rewrites the "Monitors" section of that file.
"""
import argparse, json, os, statistics, subprocess, tempfile, time

from common import replace_section

TICK = os.sysconf("SC_CLK_TCK")


def ctr(binary, root, *args):
    out = subprocess.run([binary, "--root", root, *args], check=True,
                         capture_output=True, text=True)
    return out.stdout


def ticks(pid):
    """(own, reaped children) CPU ticks of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After ")": field 3 is fields[0]; utime=14, stime=15, cutime=16, cstime=17.
    return (int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]))


def run_ns(pid):
    """The nanoseconds a (single-threaded) process has run (schedstat: exact, where
    the tick counts of /proc/PID/stat step by 10 ms)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def cpu_ticks(pid):
    own, children = ticks(pid)
    return own + children


def private_kib(pid):
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            # Anonymous: what is this process's own. Private_Clean would count the
            # binary's and libc's file pages whenever no other process maps them.
            if line.startswith("Anonymous:"):
                total += int(line.split()[1])
    return total


def supervisor(binary, root, name):
    return json.loads(ctr(binary, root, "inspect", name))["supervisor_pid"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/codex-ctr")
    ap.add_argument("--rootfs-tar", default="rootfs-fixtures/out/busybox/rootfs.tar")
    ap.add_argument("--window", type=float, default=30.0)
    ap.add_argument("--many", type=int, default=20)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    with tempfile.TemporaryDirectory(prefix="codex-monitors-bench-") as tmp:
        root = os.path.join(tmp, "root")
        ctr(binary, root, "image", "import", a.rootfs_tar, "busybox")
        probes = {
            "no check": [],
            "--health-cmd true": ["--health-cmd", "true"],
            "--health-tcp": ["--health-tcp", "8080"],
            "--health-http": ["--health-http", "8080/"],
        }
        serve = "mkdir -p /w; echo ok > /w/index.html; exec httpd -f -p 8080 -h /w"
        rows = []
        for label, flags in probes.items():
            name = "cpu-" + str(len(rows))
            ctr(binary, root, "run", "-d", "--network", "none", "--name", name,
                *flags, *(["--health-interval", "1s"] if flags else []),
                "busybox", "sh", "-c", serve)
            time.sleep(2)
            pid = supervisor(binary, root, name)
            t0, c0 = time.monotonic(), cpu_ticks(pid)
            time.sleep(a.window)
            t1, c1 = time.monotonic(), cpu_ticks(pid)
            pct = 100.0 * (c1 - c0) / TICK / (t1 - t0)
            health = json.loads(ctr(binary, root, "inspect", name)).get("health") or {}
            rows.append((label, pct, private_kib(pid), health.get("status", "-")))
            ctr(binary, root, "rm", "-f", name)
        lines = [
            f"| probe (interval 1 s, one container, {a.window:.0f} s window) | supervisor CPU,"
            " % of a core (shim + checks) | shim anonymous KiB | health |",
            "| --- | ---: | ---: | --- |",
        ]
        for label, pct, kib, status in rows:
            lines.append(f"| {label} | {pct:.2f} | {kib} | {status} |")
        print("\n".join(lines))
        # Many idle containers at once, per configuration: the shim's own CPU (what the
        # goal of < 0.1 % of a core is about) and with its reaped children (the checks).
        groups = {
            "no check, history sampled every 10 s (the default)": [],
            "usage sampled every 1 s (`--warn-memory 1g`)": ["--warn-memory", "1g"],
            "1 s `--health-tcp` check, 1 s sampling": [
                "--health-tcp", "8080", "--health-interval", "1s", "--warn-memory", "1g"],
            "1 s `--health-cmd true` check, 1 s sampling": [
                "--health-cmd", "true", "--health-interval", "1s", "--warn-memory", "1g"],
        }
        many = [
            "",
            f"{a.many} idle containers (`httpd`) per row, measured together over {a.window:.0f} s,"
            " per container (median; max in brackets):",
            "",
            "| configuration | shim's own CPU, % of a core (schedstat) | shim's own, ticks | with its checks, ticks | shim anonymous KiB |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for gi, (label, flags) in enumerate(groups.items()):
            names = [f"g{gi}-{i}" for i in range(a.many)]
            for n in names:
                ctr(binary, root, "run", "-d", "--network", "none", "--name", n, *flags,
                    "busybox", "sh", "-c", serve)
            time.sleep(3)
            pids = [supervisor(binary, root, n) for n in names]
            t0 = time.monotonic()
            before = [ticks(p) for p in pids]
            ns0 = [run_ns(p) for p in pids]
            time.sleep(a.window)
            ns1 = [run_ns(p) for p in pids]
            after = [ticks(p) for p in pids]
            dt = time.monotonic() - t0
            exact = [100.0 * (b - a0) / 1e9 / dt for a0, b in zip(ns0, ns1)]
            own = [100.0 * (b[0] - a0[0]) / TICK / dt for a0, b in zip(before, after)]
            total = [100.0 * (sum(b) - sum(a0)) / TICK / dt for a0, b in zip(before, after)]
            kib = [private_kib(p) for p in pids]
            many.append(
                f"| {label} | {statistics.median(exact):.4f} ({max(exact):.4f}) |"
                f" {statistics.median(own):.3f} ({max(own):.3f}) |"
                f" {statistics.median(total):.2f} ({max(total):.2f}) |"
                f" {statistics.median(kib):.0f} ({max(kib)}) |")
            ctr(binary, root, "rm", "-f", *names)
        print("\n".join(many))
        if a.out:
            write_section(a.out, lines + many, a)


def write_section(out, body, a):
    section = "\n".join([
        "## Monitors: what a supervisor costs (bench/monitors_bench.py)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `make bench` (release build, this 2-core VM"
        " shared with other jobs). CPU from `/proc/PID/stat` of each container's supervisor (the"
        " shim): utime+stime is its own, cutime+cstime what the processes it started and reaped"
        " used (health checks, threshold event writers); both count in ticks of 10 ms, so a"
        f" figure of {100.0 / a.window / TICK:.3f} % is one tick in the window. The shim's own"
        " time is also read exactly from `/proc/PID/schedstat` (ns on the CPU). Anonymous"
        " memory from `smaps_rollup`. See docs/monitors.md.",
        "",
        *body,
        "",
    ])
    replace_section(out, "## Monitors: what a supervisor costs", section)


if __name__ == "__main__":
    main()
