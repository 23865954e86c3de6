#!/usr/bin/env python3
"""Writes the config.json variants the cgroup v2 VM tests run.

Usage: make-configs.py BASE_CONFIG OUTDIR

BASE_CONFIG is the busybox bundle's minimal runc-style spec (it has a cgroup
namespace). Each variant is that spec with other process args, resources, mounts or
cgroupsPath; the VM's test script copies one into a bundle directory next to a
`rootfs` symlink. Generating them here (not with sed inside the VM) keeps the JSON
valid and the test script short.
"""
import copy
import json
import os
import sys

MIB = 1024 * 1024


def main():
    base_path, out = sys.argv[1], sys.argv[2]
    with open(base_path) as f:
        base = json.load(f)
    os.makedirs(out, exist_ok=True)

    def variant(name, args, resources=None, mounts=(), cgroups_path=None):
        c = copy.deepcopy(base)
        c["process"]["args"] = args
        c["process"]["terminal"] = False
        c["root"] = {"path": "rootfs", "readonly": True}
        linux = c.setdefault("linux", {})
        linux.pop("resources", None)
        linux.pop("cgroupsPath", None)
        if resources is not None:
            linux["resources"] = resources
        if cgroups_path is not None:
            linux["cgroupsPath"] = cgroups_path
        c["mounts"] = list(c.get("mounts", [])) + list(mounts)
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump(c, f, indent=1)

    mem32 = {"memory": {"limit": 32 * MIB}}
    sleep = ["sleep", "1000"]

    # (g) a plain container; the base spec has a cgroup namespace.
    variant("plain-cgroupns", ["cat", "/proc/self/cgroup"])
    variant("plain-sleep", sleep)
    # (a) memory
    variant("mem-oom", ["tail", "/dev/zero"], mem32)
    variant("mem-sleep", sleep, mem32)
    # Grows after 3 s, so an `events` stream started after `run -d` sees the OOM.
    variant("mem-oom-late", ["sh", "-c", "sleep 3; exec tail /dev/zero"], mem32)
    # (b) pids: the inner shell forks sleepers until fork fails (ash then exits), the
    # outer one execs (no fork) so the container stays up with what it got.
    variant(
        "pids",
        ["sh", "-c",
         'sh -c \'i=0; while [ $i -lt 40 ]; do sleep 1000 & i=$((i+1)); done\' 2>/dev/null;'
         ' exec sleep 1000'],
        {"pids": {"limit": 20}},
    )
    # (c) cpu: half a CPU, shares 1024 (cpu.weight 39), and a busy loop to measure it.
    variant(
        "cpu",
        ["sh", "-c", "while :; do :; done"],
        {"cpu": {"shares": 1024, "quota": 50000, "period": 100000}},
    )
    # (d) pause: a counter written to a host directory every 0.2 s.
    variant(
        "pause",
        ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done"],
        None,
        [{"destination": "/tmp", "type": "bind", "source": "/run/pause-out",
          "options": ["rbind", "rw"]}],
    )
    # (e) update: starts at 32 MiB / 20 pids.
    variant("update", sleep, {"memory": {"limit": 32 * MIB}, "pids": {"limit": 20}})
    # Extra: an absolute cgroupsPath (a sibling of the runner's cgroup, which has no
    # processes of its own), to tell placement problems from resource-writing ones.
    variant("mem-abs", sleep, mem32, cgroups_path="/codex-vm/mem-abs")
    # Extra: the device rules containerd and podman send on every create (deny all,
    # then the runtime's default allow list) must work on v2 too (eBPF program).
    variant(
        "devices",
        ["sh", "-c", "echo x > /dev/null && head -c1 /dev/zero >/dev/null && echo devices-ok"],
        {"devices": [{"allow": False, "access": "rwm"}]},
    )
    # Extra: device rules changed by `update` on a running container (the eBPF program is
    # replaced); CAP_MKNOD so the probe (mknod of /dev/kmsg's numbers, 1:11, in no default
    # list) is stopped by the device rules only.
    variant("devices-update", sleep, {"devices": [{"allow": False, "access": "rwm"}]})
    path = os.path.join(out, "devices-update.json")
    with open(path) as f:
        c = json.load(f)
    caps = ["CAP_MKNOD", "CAP_KILL"]
    c["process"]["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
    with open(path, "w") as f:
        json.dump(c, f, indent=1)
    deny = {"allow": False, "access": "rwm"}
    kmsg = {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "m"}
    for name, devices in (("res-devices-same", [deny]), ("res-devices-kmsg", [deny, kmsg])):
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump({"memory": {"limit": 64 * MIB}, "devices": devices}, f)


if __name__ == "__main__":
    main()
