#!/usr/bin/env python3
"""Cost of health checks (docs/monitors.md): CPU of a container's supervisor while the
container idles with a 1 s health check, and the supervisors' private memory.

CPU: the shim's own time plus the time of the children it reaped (every `__health`
process and the helpers below it: /proc/PID/stat fields 14-17), over a window, as %
of one core. Memory: the anonymous memory of each supervisor (smaps_rollup), its own.
Prints a markdown table; `--many N` starts N containers with a check for the memory.
"""
import argparse, json, os, statistics, subprocess, tempfile, time

TICK = os.sysconf("SC_CLK_TCK")


def ctr(binary, root, *args):
    out = subprocess.run([binary, "--root", root, *args], check=True,
                         capture_output=True, text=True)
    return out.stdout


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After ")": field 3 is fields[0]; utime=14, stime=15, cutime=16, cstime=17.
    return sum(int(fields[i]) for i in (11, 12, 13, 14))


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
        print(f"| probe (interval 1 s, {a.window:.0f} s window) | supervisor CPU, % of a core"
              " (shim + checks) | shim anonymous KiB | health |")
        print("| --- | ---: | ---: | --- |")
        for label, pct, kib, status in rows:
            print(f"| {label} | {pct:.2f} | {kib} | {status} |")
        names = [f"many-{i}" for i in range(a.many)]
        for n in names:
            ctr(binary, root, "run", "-d", "--network", "none", "--name", n,
                "--health-cmd", "true", "--health-interval", "1s", "busybox", "sleep", "3600")
        time.sleep(3)
        kib = [private_kib(supervisor(binary, root, n)) for n in names]
        print(f"\n{a.many} containers with a 1 s `--health-cmd true`: supervisor anonymous memory"
              f" median {statistics.median(kib)} KiB, max {max(kib)} KiB")
        ctr(binary, root, "rm", "-f", *names)


if __name__ == "__main__":
    main()
