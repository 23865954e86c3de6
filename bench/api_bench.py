#!/usr/bin/env python3
"""Docker API benchmark: `docker run --rm busybox true` through `codex-ctr serve` against
`codex-ctr run --rm` and against podman's API service (`podman system service`) with the
same docker CLI, interleaved in one run; docker-py `containers.run(remove=True)` latency
against both servers likewise. Rewrites the "Docker API" section of docs/benchmarks.md.
Run inside bench/run.sh's wrapper (private mount and network namespaces)."""

import argparse, os, shutil, statistics, subprocess, tempfile, time

from common import replace_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CTR = os.environ.get("CODEX_CTR") or os.path.join(ROOT, "target/release/codex-ctr")
TAR = os.path.join(ROOT, "rootfs-fixtures/out/busybox/rootfs.tar")
# podman's defaults exceed this machine's rlimits (docs/benchmarks.md): both servers get
# the same flags (codex-ctr ignores Ulimits).
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def timed(cmd, env=None):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr}")
    return dt


def wait_socket(path, proc):
    for _ in range(200):
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} ended before listening")
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {path}")


def pyrun(sock, image, runs):
    """Median ms of docker-py containers.run(remove=True) (a fresh process: no warm client)."""
    script = ("import docker,sys,time\n"
              f"c=docker.DockerClient(base_url='unix://{sock}')\n"
              "ts=[]\n"
              "u=[docker.types.Ulimit(name=n,soft=1024,hard=1024) for n in ('nofile','nproc')]\n"
              f"for i in range({runs}+1):\n"
              " t=time.perf_counter()\n"
              f" c.containers.run('{image}','true',remove=True,network_mode='none',ulimits=u)\n"
              " ts.append((time.perf_counter()-t)*1000)\n"
              "print(sorted(ts[1:])[len(ts[1:])//2])\n")
    p = subprocess.run(["python3", "-c", script], capture_output=True, text=True)
    if p.returncode != 0:
        return None
    return float(p.stdout.strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if not shutil.which("docker"):
        raise SystemExit("the docker CLI is missing (make api-clients)")
    tmp = tempfile.mkdtemp(prefix="codex-apibench-")
    env = dict(os.environ, CODEX_CTR_ROOT=os.path.join(tmp, "ctr"))
    timed([CTR, "image", "import", TAR, "busybox"], env)
    procs = []
    sock = os.path.join(tmp, "codex.sock")
    procs.append(subprocess.Popen([CTR, "serve", "--socket", sock], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_socket(sock, procs[-1])
    dcfg = os.path.join(tmp, "docker-config")
    os.makedirs(dcfg)
    denv = lambda s: dict(os.environ, DOCKER_HOST=f"unix://{s}", DOCKER_CONFIG=dcfg)
    run = ["docker", "run", "--rm", "--network", "none", *ULIMITS]
    cmds = {
        "codex-ctr run --rm": ([CTR, "run", "--rm", "--network", "none", "busybox", "true"], env),
        "docker CLI -> codex-ctr serve": (run + ["busybox", "true"], denv(sock)),
    }
    psock = None
    if shutil.which("podman"):
        psock = os.path.join(tmp, "podman.sock")
        base = ["podman", "--root", os.path.join(tmp, "pr"), "--runroot", os.path.join(tmp, "pq"),
                "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--runtime", shutil.which("runc") or "runc"]
        timed(base + ["import", TAR, "localhost/bb:latest"])
        procs.append(subprocess.Popen(base + ["system", "service", "--time", "0", f"unix://{psock}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_socket(psock, procs[-1])
        cmds["docker CLI -> podman system service (runc)"] = (run + ["localhost/bb", "true"], denv(psock))
    walls = {k: [] for k in cmds}
    try:
        for i in range(a.runs + 2):
            for k, (cmd, e) in cmds.items():
                dt = timed(cmd, e)
                if i >= 2:
                    walls[k].append(dt)
        py = {"codex-ctr serve": pyrun(sock, "busybox", a.runs)}
        if psock:
            py["podman system service (runc)"] = pyrun(psock, "localhost/bb", a.runs)
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    base_ms = statistics.median(walls["codex-ctr run --rm"])
    lines = ["| `run --rm busybox true` | median ms | vs `codex-ctr run --rm` |", "| --- | --- | --- |"]
    for k, v in walls.items():
        m = statistics.median(v)
        lines.append(f"| {k} | {m:.1f} | {m / base_ms:.2f}x |")
    pylines = [f"- docker-py `containers.run('busybox', 'true', remove=True)`, median of {a.runs}: "
               + "; ".join(f"{k} {v:.1f} ms" if v is not None else f"{k}: failed" for k, v in py.items()) + "."]
    section = "\n".join([
        "## Docker API: `codex-ctr serve` against podman's API service",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `make bench` (bench/api_bench.py), same wrapper as above, "
        f"{a.runs} interleaved rounds, `--network none`, the same busybox rootfs in both stores, the same "
        "docker CLI for both servers (podman 4.3 with vfs storage, cgroupfs and runc).",
        "",
        *lines,
        "",
        *pylines,
        "",
    ])
    print(section)
    if a.out:
        replace_section(os.path.join(ROOT, a.out), "## Docker API: `codex-ctr serve`", section)


if __name__ == "__main__":
    main()
