#!/usr/bin/env python3
"""Create + start of a container on an overlay rootfs (from an image: the image's layers
as overlayfs lower dirs, a fresh upper dir) against the same rootfs as a plain directory
(`--rootfs DIR`, no overlay), in one run, interleaved. `create` and `start` are timed
separately; each container is removed (`rm -f`) before the next. Rewrites its section of
docs/benchmarks.md. Run it in a private network namespace (bench/run.sh does)."""

import argparse, os, shutil, statistics, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CTR = os.environ.get("CODEX_CTR") or os.path.join(ROOT, "target/release/codex-ctr")
TAR = os.path.join(ROOT, "rootfs-fixtures/out/busybox/rootfs.tar")
ROOTFS = os.path.join(ROOT, "rootfs-fixtures/out/busybox/rootfs")
SECTION = "## Overlay rootfs against a plain directory (bench/rootfs_bench.py)"


def timed(cmd, env):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr}")
    return dt, p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="codex-rbench-")
    env = dict(os.environ, CODEX_CTR_ROOT=os.path.join(tmp, "ctr"))
    load0 = " ".join(open("/proc/loadavg").read().split()[:3])
    try:
        timed([CTR, "image", "import", TAR, "busybox"], env)
        plain = os.path.join(tmp, "plain")
        # cp -a: device nodes stay nodes (a Python copy would read /dev/zero forever)
        subprocess.run(["cp", "-a", ROOTFS, plain], check=True)
        cases = {
            "overlay (image busybox)": ["busybox", "sleep", "60"],
            "plain dir (--rootfs DIR)": ["--rootfs", plain, "sleep", "60"],
        }
        creates = {k: [] for k in cases}
        starts = {k: [] for k in cases}
        for i in range(a.runs + 2):  # two warm-up rounds
            for k, args in cases.items():
                dc, out = timed([CTR, "create", "--network", "none", *args], env)
                cid = out.strip().splitlines()[-1]
                ds, _ = timed([CTR, "start", cid], env)
                subprocess.run([CTR, "rm", "-f", cid], env=env, stdout=subprocess.DEVNULL)
                if i >= 2:
                    creates[k].append(dc)
                    starts[k].append(ds)
        load1 = " ".join(open("/proc/loadavg").read().split()[:3])
        rows = []
        for k in cases:
            both = [c + s for c, s in zip(creates[k], starts[k])]
            rows.append(f"| {k} | {statistics.median(creates[k]):.1f} ms | {statistics.median(starts[k]):.1f} ms "
                        f"| {statistics.median(both):.1f} ms | {min(both):.1f} ms |")
        text = "\n".join([
            SECTION,
            "",
            f"`codex-ctr create --network none ... sleep 60` then `start` (the container running),",
            f"{a.runs} interleaved runs after two warm-up rounds, medians (and the best create + start);",
            "the overlay row mounts the image's layer as a lower dir with a fresh upper dir, the plain",
            "row uses a copy of the same busybox rootfs as it is. Release build; machine: this 2-core VM,",
            f"load average (1, 5, 15 min) {load0} before the run, {load1} after (other helpers share it).",
            "",
            "| rootfs | create | start | create + start | best |",
            "| --- | ---: | ---: | ---: | ---: |",
            *rows,
            "",
        ])
        print(text)
        if a.out:
            path = os.path.join(ROOT, a.out)
            old = open(path).read() if os.path.exists(path) else ""
            start = old.find(SECTION)
            if start >= 0:
                end = old.find("\n## ", start + 3)
                old = old[:start] + (old[end + 1:] if end >= 0 else "")
            with open(path, "w") as f:
                f.write(old.rstrip() + "\n\n" + text)
    finally:
        left = subprocess.run([CTR, "ps", "-aq"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.split()
        if left:
            subprocess.run([CTR, "rm", "-f", *left], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
