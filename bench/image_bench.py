#!/usr/bin/env python3
"""Image benchmarks, in one run on the same input: loading a multi-layer OCI image with
`codex-ctr image load` against `skopeo copy oci:... oci:...` + `umoci unpack` and against
`podman load` (vfs storage); pulling it from a local `docker-registry` with
`codex-ctr pull` against `podman pull`. Each measurement starts from an empty store.
Rewrites the images section of docs/benchmarks.md."""

import argparse, os, random, shutil, socket, statistics, subprocess, time
from common import replace_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CTR = os.environ.get("CODEX_CTR") or os.path.join(ROOT, "target/release/codex-ctr")
ROOTFS = os.path.join(ROOT, "rootfs-fixtures/out/busybox/rootfs")


def sh(cmd, **kw):
    p = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed: {p.stderr}")
    return p.stdout


def timed(cmd):
    t0 = time.perf_counter()
    sh(cmd)
    return time.perf_counter() - t0


def build(d, layers, mib):
    """busybox plus `layers` layers of `mib` MiB of incompressible files each."""
    sh(f"cd {d} && umoci init --layout oci && umoci new --image oci:b && umoci unpack --image oci:b b >/dev/null")
    sh(f"cp -a {ROOTFS}/. {d}/b/rootfs/ && cd {d} && umoci repack --image oci:b b")
    rnd = random.Random(1)
    for i in range(layers):
        sh(f"cd {d} && rm -rf b && umoci unpack --image oci:b b >/dev/null")
        os.makedirs(f"{d}/b/rootfs/data{i}")
        for j in range(mib):
            with open(f"{d}/b/rootfs/data{i}/f{j}", "wb") as f:
                f.write(rnd.randbytes(1 << 20))
        sh(f"cd {d} && umoci repack --image oci:b b")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--mib", type=int, default=16)
    ap.add_argument("--out")
    a = ap.parse_args()
    # short: podman wants a runroot under 50 characters; lower-case letters and digits
    # only: podman parses the layout path as an image name (mkdtemp's '_' breaks it)
    base = f"/tmp/cib-{os.getpid()}-{random.randrange(1 << 30):x}"
    os.makedirs(base, mode=0o700)
    reg = None
    try:
        build(base, a.layers, a.mib)
        size = int(sh(f"du -sk {base}/oci").split()[0]) // 1024
        port = free_port()
        with open(f"{base}/reg.yml", "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {base}/regdata\nhttp:\n  addr: 127.0.0.1:{port}\n")
        reg = subprocess.Popen(["docker-registry", "serve", f"{base}/reg.yml"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        ref = f"127.0.0.1:{port}/bench:x"
        sh(f"skopeo copy -q --dest-tls-verify=false oci:{base}/oci:b docker://{ref}")
        pod = lambda r: f"podman --root {r} --runroot {r}-run --storage-driver vfs --cgroup-manager cgroupfs"
        # Pushes start from a store that has the image, to a repository the registry
        # does not have yet (every blob uploaded).
        sh(f"{CTR} --root {base}/pushsrc image load -q -i {base}/oci")
        src_id = sh(f"{CTR} --root {base}/pushsrc image ls -q").split()[0]
        push_ref = lambda r: f"127.0.0.1:{port}/push-{os.path.basename(r)}:x"
        cases = {
            "codex-ctr image load": lambda r: f"{CTR} --root {r} image load -q -i {base}/oci",
            "skopeo copy + umoci unpack": lambda r: f"skopeo copy -q oci:{base}/oci:b oci:{r}/o:b && umoci unpack --image {r}/o:b {r}/bundle",
            "podman load (vfs)": lambda r: f"{pod(r)} load -q -i {base}/oci",
            "codex-ctr pull": lambda r: f"{CTR} --root {r} pull -q --insecure {ref}",
            "podman pull (vfs)": lambda r: f"{pod(r)} pull -q --tls-verify=false {ref}",
            "codex-ctr push": lambda r: f"{CTR} --root {base}/pushsrc push -q --insecure {src_id} {push_ref(r)}",
            "skopeo copy oci: to the registry": lambda r: f"skopeo copy -q --dest-tls-verify=false oci:{base}/oci:b docker://{push_ref(r)}-s",
        }
        times = {k: [] for k in cases}
        for i in range(a.runs):
            for j, (k, cmd) in enumerate(cases.items()):  # interleaved
                r = f"{base}/{i}-{j}"
                os.makedirs(r)
                times[k].append(timed(cmd(r)))
                sh(f"rm -rf {r} {r}-run")
        rows = [f"| {k} | {statistics.median(v):.2f} s | {min(v):.2f} s |" for k, v in times.items()]
        text = "\n".join([
            "## Images (bench/image_bench.py)",
            "",
            f"A busybox image plus {a.layers} layers of {a.mib} MiB of random files ({size} MiB as an OCI layout, gzip),",
            f"each tool from an empty store, {a.runs} interleaved runs, median and best. Pulls from Debian's",
            "docker-registry on 127.0.0.1 (plain HTTP); pushes of the same image to a new repository\nthere (every blob uploaded). podman uses vfs storage (no overlay mounts to undo),\nwhich copies the lower layers into each layer it applies: with its default overlay driver it\nwould do less work; codex-ctr and umoci unpack each layer once. Machine: this 2-core VM.",
            "",
            "| what | median | best |",
            "| --- | ---: | ---: |",
            *rows,
            "",
        ])
        print(text)
        if a.out:
            replace_section(os.path.join(ROOT, a.out), "## Images (bench/image_bench.py)", text)
    finally:
        if reg:
            os.killpg(reg.pid, 15)
            reg.wait()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
