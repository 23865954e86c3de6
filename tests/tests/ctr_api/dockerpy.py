"""docker-py flows real programs use, against codex-ctr serve (DOCKER_HOST is set by the
test). Each check prints 'ok NAME'; the first failure raises (non-zero exit)."""
import sys
import time

import docker

tag = sys.argv[1]  # unique per run: names, labels, networks
c = docker.from_env(timeout=60)
assert c.ping() is True
assert c.version()["ApiVersion"] == "1.47", c.version()
print("ok ping+version")

out = c.containers.run("busybox", ["sh", "-c", "echo hi-from-run"], remove=True)
assert out == b"hi-from-run\n", out
print("ok run(remove=True) returns the output")

d = c.containers.run(
    "busybox", ["sh", "-c", "echo started; sleep 300"], detach=True, name=f"py-{tag}",
    labels={"suite": tag}, environment={"GREETING": "hello"}, mem_limit="64m",
    network_mode="none",
)
d.reload()
assert d.status == "running", d.status
assert d.attrs["HostConfig"]["Memory"] == 64 << 20, d.attrs["HostConfig"]
assert d.labels["suite"] == tag
assert "GREETING=hello" in d.attrs["Config"]["Env"], d.attrs["Config"]["Env"]
print("ok run(detach=True, labels, environment, mem_limit)")

code, output = d.exec_run(["sh", "-c", "echo $GREETING; echo oops >&2; exit 4"])
assert code == 4, code
assert b"hello" in output and b"oops" in output, output
print("ok exec_run exit code and output")

deadline = time.time() + 20
while b"started" not in d.logs() and time.time() < deadline:
    time.sleep(0.1)
assert d.logs() == b"started\n", d.logs()
print("ok logs")

s = d.stats(stream=False)
cpu = s["cpu_stats"]["cpu_usage"]["total_usage"] - s["precpu_stats"]["cpu_usage"]["total_usage"]
system = s["cpu_stats"]["system_cpu_usage"] - s["precpu_stats"]["system_cpu_usage"]
assert system > 0 and cpu >= 0, s
assert 0 < s["memory_stats"]["usage"] <= s["memory_stats"]["limit"] == 64 << 20, s["memory_stats"]
print("ok stats(stream=False)", round(cpu / system * s["cpu_stats"]["online_cpus"] * 100, 2), "%")

listed = c.containers.list(filters={"label": f"suite={tag}"})
assert [x.id for x in listed] == [d.id], listed
assert c.containers.list(filters={"label": f"suite={tag}-none"}) == []
print("ok list(filters=label)")

try:
    c.containers.run("busybox", "true", name=f"py-{tag}", detach=True)
    raise AssertionError("a second container with the same name was created")
except docker.errors.APIError as e:
    assert e.status_code == 409, e
print("ok 409 on a name in use")

try:
    c.containers.get(f"missing-{tag}")
    raise AssertionError("a missing container was found")
except docker.errors.NotFound as e:
    assert "No such container" in str(e), e
print("ok 404 on a missing container")

d.kill()
r = d.wait(timeout=30)
assert r["StatusCode"] == 137, r
d.remove()
print("ok kill, wait, remove")

n = c.networks.create(f"pynet{tag}", internal=True, labels={"suite": tag})
n.reload()
assert n.attrs["Internal"] is True and n.attrs["Labels"]["suite"] == tag, n.attrs
n.remove()
print("ok networks.create(internal=True)")

v = c.volumes.create(f"pyvol{tag}")
assert v.attrs["Mountpoint"], v.attrs
v.remove()
print("ok volumes")
print("ALL OK")
