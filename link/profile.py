#!/usr/bin/env python3
"""Writes link/codex-oci.order: the functions a `codex-oci run` and a container's
lifecycle touch, for link/ordered-link to lay out first (make link-order; root).

How a touched function is found, exactly and without instrumenting the code:

- The binary is a profiling build whose every function starts on a page of its own
  (LLVM's -align-all-functions=12), so a page of text belongs to one function.
- It runs from an ext4 file system on a loop device with readahead off, after its page
  cache was dropped. A page fault then reads only the page it needs (the 64 KiB that
  the kernel maps around a fault are mapped only from pages already cached), so after
  the scenario the file's cached pages (mincore) are exactly the pages some process of
  it touched: the runtime, its forked children, the container's init before its exec.
- Each cached page of text names its function; the profile lists them by demangled
  name without hash (see ordered-link), the scenario that matters most first.

The C library's functions are not aligned (they come compiled, from libc.a): a cached
page there names every function on it, a little more than was touched.
"""

import argparse, ctypes, json, os, shutil, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from common import drop_page_cache  # noqa: E402  (the benchmarks' helper, shared)
FIXTURE = os.path.join(ROOT, "rootfs-fixtures/out/busybox")
PAGE = 4096

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def cached_pages(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        addr = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap {path}")
        vec = (ctypes.c_ubyte * ((size + PAGE - 1) // PAGE))()
        try:
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore {path}")
        finally:
            libc.munmap(addr, size)
        return {i for i, v in enumerate(vec) if v & 1}
    finally:
        os.close(fd)


class Functions:
    """The binary's functions in .text, by file page."""

    def __init__(self, binary):
        text = None
        for line in run(["readelf", "-S", "-W", binary], capture_output=True, text=True).stdout.splitlines():
            fields = line.split("]", 1)[-1].split()
            if fields and fields[0] == ".text":
                text = (int(fields[2], 16), int(fields[3], 16), int(fields[4], 16))
        if text is None:
            raise SystemExit(f"{binary}: no .text section")
        addr, offset, size = text
        mangled = run(["nm", "-p", "-S", "--defined-only", binary], capture_output=True, text=True).stdout.splitlines()
        demangled = run(["nm", "-p", "-j", "-C", "--defined-only", binary], capture_output=True, text=True).stdout.splitlines()
        if len(mangled) != len(demangled):
            raise SystemExit(f"{binary}: nm listed {len(mangled)} symbols mangled and {len(demangled)} demangled")
        self.functions = []  # (first page, last page, demangled name)
        for m, d in zip(mangled, demangled):
            fields = m.split()
            if len(fields) != 4 or fields[2] not in "tTwW":
                continue
            start, length = int(fields[0], 16), int(fields[1], 16)
            if length == 0 or not addr <= start < addr + size:
                continue
            first = (start - addr + offset) // PAGE
            last = (start + length - 1 - addr + offset) // PAGE
            self.functions.append((first, last, d))
        self.functions.sort()

    def touched(self, pages):
        return [name for first, last, name in self.functions if any(p in pages for p in range(first, last + 1))]


def scenario(binaries, commands, env=None):
    """The file pages of each of `binaries` touched by `commands` (argv lists, in order)."""
    for b in binaries:
        drop_page_cache(b)
        if cached_pages(b):
            raise SystemExit(f"{b}: pages still cached after POSIX_FADV_DONTNEED")
    for cmd in commands:
        run(cmd, stdout=subprocess.DEVNULL, env=env)
    return [cached_pages(b) for b in binaries]


def oci_scenarios(bindir, work):
    oci = os.path.join(bindir, "codex-oci")
    with open(os.path.join(FIXTURE, "config.json")) as f:
        config = json.load(f)
    config["root"] = {"path": os.path.join(FIXTURE, "rootfs"), "readonly": True}
    config["process"]["terminal"] = False

    def bundle(name, args):
        path = os.path.join(work, name)
        os.makedirs(path)
        c = json.loads(json.dumps(config))
        c["process"]["args"] = args
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(c, f)
        return path

    root = os.path.join(work, "state")
    true = bundle("true", ["/bin/true"])
    sleep = bundle("sleep", ["/bin/sleep", "30"])
    o = [oci, "--root", root]
    cid = f"link-order-{os.getpid()}"
    yield "run of /bin/true (create, start, wait, delete)", [o + ["run", "--bundle", true, cid + "-run"]], None
    yield "a container's lifecycle as podman and containerd drive it", [
        o + ["create", "--bundle", sleep, "--pid-file", os.path.join(work, "pid"), cid],
        o + ["start", cid],
        o + ["state", cid],
        o + ["exec", cid, "/bin/true"],
        o + ["ps", cid],
        o + ["list"],
        o + ["pause", cid],
        o + ["resume", cid],
        o + ["events", "--stats", cid],
        o + ["update", "--pids-limit", "100", cid],
        o + ["kill", cid, "KILL"],
        o + ["delete", "--force", cid],
        o + ["features"],
        o + ["--version"],
    ], None


def ctr_scenarios(bindir, work):
    ctr = os.path.join(bindir, "codex-ctr")
    env = dict(os.environ, CODEX_CTR_ROOT=os.path.join(work, "engine"))
    # The image is imported before the profile starts: what matters is the start path.
    run([ctr, "image", "import", os.path.join(FIXTURE, "rootfs.tar"), "busybox"], stdout=subprocess.DEVNULL, env=env)
    name = f"link-order-{os.getpid()}"
    yield "run --rm of true (the CLI, its supervisor, the shim)", [
        [ctr, "run", "--rm", "--network", "none", "busybox", "true"],
    ], env
    yield "run --rm on the default bridge network", [[ctr, "run", "--rm", "busybox", "true"]], env
    yield "a detached container's life", [
        [ctr, "run", "-d", "--name", name, "busybox", "sh", "-c", "echo started; sleep 30"],
        [ctr, "ps"],
        [ctr, "ps", "-a"],
        [ctr, "inspect", name],
        [ctr, "logs", name],
        [ctr, "exec", name, "true"],
        [ctr, "stats", "--no-stream"],
        [ctr, "stop", "-t", "1", name],
        [ctr, "start", name],
        [ctr, "rm", "-f", name],
        [ctr, "images"],
        [ctr, "--version"],
    ], env


# A suite runs its binaries from the build directory; each watched binary gets a profile.
SUITES = {
    "codex-oci": (["codex-oci"], oci_scenarios),
    # codex-ctr starts the supervisor from itself and the shim from next to itself.
    "codex-ctr": (["codex-ctr", "codex-shim"], ctr_scenarios),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite", choices=SUITES)
    ap.add_argument("bindir", help="the profiling build's directory (functions page-aligned, not stripped)")
    ap.add_argument("--out", default=os.path.join(ROOT, "link"), help="where NAME.order goes")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("link-order: needs root (a loop device, and containers to profile)")
    names, scenarios = SUITES[a.suite]
    functions = {n: Functions(os.path.join(a.bindir, n)) for n in names}
    work = tempfile.mkdtemp(prefix="codex-link-order-")
    image, mnt, loop = os.path.join(work, "fs.img"), os.path.join(work, "mnt"), None
    lines = {n: [] for n in names}
    seen = {n: set() for n in names}
    try:
        with open(image, "wb") as f:
            f.truncate(sum(os.path.getsize(os.path.join(a.bindir, n)) for n in names) * 2 + (64 << 20))
        run(["mkfs.ext4", "-q", "-F", image])
        loop = run(["losetup", "--find", "--show", image], capture_output=True, text=True).stdout.strip()
        os.makedirs(mnt)
        run(["mount", loop, mnt])
        # No readahead: a fault reads its own page only (see the module's comment).
        with open(f"/sys/class/block/{os.path.basename(loop)}/queue/read_ahead_kb", "w") as f:
            f.write("0")
        for n in names:
            shutil.copy(os.path.join(a.bindir, n), os.path.join(mnt, n))
        binaries = [os.path.join(mnt, n) for n in names]
        for title, commands, env in scenarios(mnt, work):
            for n, pages in zip(names, scenario(binaries, commands, env)):
                touched = functions[n].touched(pages)
                new = [f for f in dict.fromkeys(touched) if f not in seen[n]]
                seen[n].update(new)
                lines[n] += [f"# {title}: {len(new)} more functions", *new]
                print(f"link-order: {n}: {title}: {len(touched)} functions touched, {len(new)} new", file=sys.stderr)
    finally:
        if loop:
            subprocess.run(["umount", "--lazy", mnt])
            subprocess.run(["losetup", "-d", loop])
        shutil.rmtree(work, ignore_errors=True)
    for n in names:
        out = os.path.join(a.out, f"{n}.order")
        header = [
            f"# Functions of {n} that a profile run touched, in the order link/ordered-link",
            "# lays them out. Generated by `make link-order` (link/profile.py); do not edit.",
        ]
        with open(out + ".tmp", "w") as f:
            f.write("\n".join(header + lines[n]) + "\n")
        os.replace(out + ".tmp", out)
        print(f"link-order: wrote {out} ({len(seen[n])} functions)", file=sys.stderr)


if __name__ == "__main__":
    main()
