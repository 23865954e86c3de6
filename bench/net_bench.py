#!/usr/bin/env python3
"""Networking benchmarks: container start with `--network none` against the default
bridge, for codex-ctr and for podman (its bridge: CNI here), interleaved; and an HTTP
server in a container reached at its address directly against through a published port
(codex-ctr: nft DNAT; podman: CNI portmap), latency of one small GET and throughput of
one large one. Each engine runs in a network namespace of its own (made here, inside
the private one `make bench` runs in), so neither's bridge or rules meet the other's.
Rewrites the networking section of docs/benchmarks.md."""

import argparse, json, os, random, shutil, statistics, subprocess, tempfile, time

from common import replace_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CTR = os.environ.get("BENCH_CTR") or os.path.join(ROOT, "target/release/codex-ctr")
TAR = os.path.join(ROOT, "rootfs-fixtures/out/busybox/rootfs.tar")
SECTION = "## Networking: bridge and published ports"
BIG_MIB = 64

# Runs inside a namespace: GETs of /small (latency) and /big (throughput), printing JSON.
CLIENT = r"""
import json, socket, statistics, sys, time

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def get(path):
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(f"GET /{path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    got = 0
    while True:
        b = s.recv(1 << 16)
        if not b:
            break
        got += len(b)
    s.close()
    return got
deadline = time.time() + 20
while True:
    try:
        get("small"); break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.1)
lat = []
for _ in range(n):
    t0 = time.perf_counter(); get("small"); lat.append((time.perf_counter() - t0) * 1000)
rates = []
for _ in range(3):
    t0 = time.perf_counter(); got = get("big"); dt = time.perf_counter() - t0
    rates.append(got / dt / (1 << 20))
print(json.dumps({"latency_ms": statistics.median(lat), "mib_s": statistics.median(rates)}))
"""

SERVE = (f"mkdir -p /tmp/w && echo ok > /tmp/w/small && "
         f"dd if=/dev/zero of=/tmp/w/big bs=1M count={BIG_MIB} 2>/dev/null && "
         "exec httpd -f -p 8080 -h /tmp/w")


class Netns:
    """A network namespace held by a `sleep`, entered with nsenter."""

    def __init__(self):
        self.holder = subprocess.Popen(["unshare", "-n", "sleep", "infinity"])
        path = f"/proc/{self.holder.pid}/ns/net"
        deadline = time.time() + 5
        while os.readlink(path) == os.readlink("/proc/self/ns/net"):
            if time.time() > deadline:
                raise SystemExit("the namespace holder did not unshare")
            time.sleep(0.01)
        self.prefix = ["nsenter", f"--net={path}"]
        self.run(["ip", "link", "set", "lo", "up"])

    def run(self, cmd, env=None, check=True):
        t0 = time.perf_counter()
        p = subprocess.run(self.prefix + cmd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        dt = (time.perf_counter() - t0) * 1000
        if check and p.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr}")
        return dt, p.stdout

    def close(self):
        self.holder.kill()
        self.holder.wait()


def measure(ns, host, port, n):
    _, out = ns.run(["python3", "-c", CLIENT, host, str(port), str(n)])
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--gets", type=int, default=200)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    load0 = os.getloadavg()[0]
    tmp = tempfile.mkdtemp(prefix="cnb-", dir="/tmp")  # short: podman wants a short runroot
    env = dict(os.environ, CODEX_CTR_ROOT=os.path.join(tmp, "ctr"))
    cns, pns = Netns(), Netns()
    pod = None
    if shutil.which("podman") and shutil.which("runc"):
        pod = ["podman", "--root", os.path.join(tmp, "pr"), "--runroot", os.path.join(tmp, "pq"),
               "--storage-driver", "vfs", "--runtime", shutil.which("runc")]
    popts = ["--cgroup-manager", "cgroupfs", "--ulimit", "nofile=1024:1024",
             "--ulimit", "nproc=1024:1024"]
    starts = {}
    traffic = {}
    try:
        cns.run([CTR, "image", "import", TAR, "busybox"], env)
        cmds = {
            "codex-ctr, --network none": (cns, [CTR, "run", "--rm", "--network", "none", "busybox", "true"]),
            "codex-ctr, default bridge": (cns, [CTR, "run", "--rm", "busybox", "true"]),
        }
        if pod:
            pns.run(pod + ["import", TAR, "localhost/bb:latest"])
            cmds["podman, --network none"] = (pns, pod + ["run", "--rm", "--network", "none"] + popts + ["localhost/bb", "true"])
            cmds["podman, default bridge"] = (pns, pod + ["run", "--rm"] + popts + ["localhost/bb", "true"])
        walls = {k: [] for k in cmds}
        for i in range(a.runs + 2):
            # A shuffled order each round: in a fixed one, podman's bridge teardown (its
            # network namespace and CNI cleanup, after the command returns) landed on the
            # next round's first row, codex-ctr's `--network none`.
            order = list(cmds.items())
            random.shuffle(order)
            for k, (ns, cmd) in order:
                dt, _ = ns.run(cmd, env)
                if i >= 2:
                    walls[k].append(dt)
        starts = {k: statistics.median(v) for k, v in walls.items()}

        cns.run([CTR, "run", "-d", "--name", "web", "-p", "18080:8080", "busybox", "sh", "-c", SERVE], env)
        ip = json.loads(cns.run([CTR, "inspect", "web"], env)[1])["networks"]["bridge"]["ip"]
        traffic["codex-ctr"] = {"direct": measure(cns, ip, 8080, a.gets),
                                "published": measure(cns, "127.0.0.1", 18080, a.gets)}
        cns.run([CTR, "rm", "-f", "web"], env)
        if pod:
            pns.run(pod + ["run", "-d", "--name", "web", "-p", "18080:8080"] + popts
                    + ["localhost/bb", "sh", "-c", SERVE])
            ip = pns.run(pod + ["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"])[1].strip()
            traffic["podman"] = {"direct": measure(pns, ip, 8080, a.gets),
                                 "published": measure(pns, "127.0.0.1", 18080, a.gets)}
            pns.run(pod + ["rm", "-f", "-t", "0", "web"])
    finally:
        if pod:
            pns.run(pod + ["rm", "-af", "-t", "0"], check=False)
        subprocess.run(["umount", "-R", tmp], stderr=subprocess.DEVNULL)
        cns.close()
        pns.close()
        shutil.rmtree(tmp, ignore_errors=True)

    base = starts["codex-ctr, --network none"]
    rows = ["| start (`run --rm busybox true`) | median wall (ms) | vs codex-ctr none |", "| --- | ---: | ---: |"]
    for k, v in starts.items():
        rows.append(f"| {k} | {v:.1f} | {v / base:.2f}x |")
    added = [f"codex-ctr's bridge adds {starts['codex-ctr, default bridge'] - base:+.1f} ms to a start"]
    if "podman, default bridge" in starts:
        pn = starts["podman, --network none"]
        added.append(f"podman's adds {starts['podman, default bridge'] - pn:+.1f} ms")
    trows = ["| engine | path | GET of 3 bytes, median (ms) | vs direct | GET of "
             f"{BIG_MIB} MiB (MiB/s) | vs direct |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for eng, t in traffic.items():
        d = t["direct"]
        for path, m in t.items():
            trows.append(f"| {eng} | {'container address' if path == 'direct' else 'published, 127.0.0.1'} | "
                         f"{m['latency_ms']:.2f} | {m['latency_ms'] / d['latency_ms']:.2f}x | "
                         f"{m['mib_s']:.0f} | {m['mib_s'] / d['mib_s']:.2f}x |")
    section = "\n".join([
        SECTION,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `make bench` (bench/net_bench.py), {a.runs} interleaved rounds (each in a shuffled order); "
        "each engine in a network namespace of its own. podman 4.3 with runc, its default network (CNI bridge "
        "and portmap here), `--cgroup-manager cgroupfs` and modest ulimits, vfs storage, the same busybox "
        f"rootfs. Load average (1 min) {load0:.1f} before and {os.getloadavg()[0]:.1f} after, on "
        f"{os.cpu_count()} CPUs: with other work on the machine, differences of a few tens of ms "
        "between start rows are noise. The issue's goal: a bridge adds under 10 ms to a start.",
        "",
        *rows,
        "",
        "- " + "; ".join(added) + ".",
        "",
        f"Busybox `httpd` in the container; the client is Python in the engine's namespace, {a.gets} GETs "
        "of a 3-byte file (connect, request, read to the end: one connection each) and 3 of the large one.",
        "",
        *trows,
        "",
    ])
    print(section)
    if a.out:
        replace_section(os.path.join(ROOT, a.out), SECTION, section)


if __name__ == "__main__":
    main()
