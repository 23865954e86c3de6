"""docker-py: cpu_shares/cpuset_cpus/memswap_limit, update, diff and commit against
codex-ctr serve (DOCKER_HOST is set by the test). Each check prints 'ok NAME'; the first
failure raises (non-zero exit)."""
import sys

import docker

tag, cgv = sys.argv[1], sys.argv[2]
c = docker.from_env(timeout=60)


def shares_file(s):
    return str(s) if cgv == "v1" else str(1 + ((s - 2) * 9999) // 262142)


def cgroup(d, v1, v2):
    """A limit file as the container sees it in its own cgroup namespace."""
    code, out = d.exec_run(["cat", v1 if cgv == "v1" else v2])
    assert code == 0, out
    return out.decode().strip()


d = c.containers.run(
    "busybox", ["sleep", "300"], detach=True, name=f"pyres-{tag}", network_mode="none",
    cpu_shares=512, cpuset_cpus="0", mem_limit="64m", memswap_limit="128m",
)
d.reload()
hc = d.attrs["HostConfig"]
assert (hc["CpuShares"], hc["CpusetCpus"], hc["MemorySwap"]) == (512, "0", 128 << 20), hc
assert cgroup(d, "/sys/fs/cgroup/cpu/cpu.shares", "/sys/fs/cgroup/cpu.weight") == shares_file(512)
assert cgroup(d, "/sys/fs/cgroup/cpuset/cpuset.cpus", "/sys/fs/cgroup/cpuset.cpus") == "0"
if cgv == "v1":
    assert cgroup(d, "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", "") == str(128 << 20)
print("ok run(cpu_shares, cpuset_cpus, memswap_limit)")

d.update(cpu_shares=256, cpuset_cpus="1")
d.reload()
assert (d.attrs["HostConfig"]["CpuShares"], d.attrs["HostConfig"]["CpusetCpus"]) == (256, "1")
assert cgroup(d, "/sys/fs/cgroup/cpu/cpu.shares", "/sys/fs/cgroup/cpu.weight") == shares_file(256)
assert cgroup(d, "/sys/fs/cgroup/cpuset/cpuset.cpus", "/sys/fs/cgroup/cpuset.cpus") == "1"
print("ok update(cpu_shares, cpuset_cpus)")

try:
    c.containers.run("busybox", "true", remove=True, network_mode="none", blkio_weight=300)
    raise AssertionError("blkio_weight was accepted")
except docker.errors.APIError as e:
    assert e.status_code == 400 and "BlkioWeight" in str(e), e
print("ok blkio_weight refused by name")

assert d.diff() == [], d.diff()
code, out = d.exec_run(["sh", "-c", "echo hi > /new; rm /etc/group"])
assert code == 0, out
changes = d.diff()
assert changes == [
    {"Path": "/etc", "Kind": 0},
    {"Path": "/etc/group", "Kind": 2},
    {"Path": "/new", "Kind": 1},
], changes
print("ok diff")

img = d.commit(repository=f"pysnap{tag}", tag="v1", message="py note", author="py",
               changes=["ENV FROM_PY=1", "LABEL made=by-py"])
assert img.attrs["Author"] == "py", img.attrs["Author"]
assert img.labels.get("made") == "by-py", img.labels
assert f"pysnap{tag}:v1" in img.tags, img.tags
out = c.containers.run(f"pysnap{tag}:v1", ["sh", "-c", "cat /new; echo $FROM_PY; test -e /etc/group || echo gone"],
                       remove=True, network_mode="none")
assert out == b"hi\n1\ngone\n", out
print("ok commit")

d.remove(force=True)
print("ALL OK")
