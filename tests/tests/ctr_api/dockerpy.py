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

since = int(time.time()) - 1
w = c.containers.run(
    "busybox", ["sh", "-c", "echo a; sleep 0.3; echo b; sleep 300"], detach=True,
    nano_cpus=500_000_000, ports={"80/tcp": ("127.0.0.1", None)},
    healthcheck={"test": ["CMD-SHELL", "true"], "interval": 200_000_000, "retries": 1},
)
stream = w.logs(stream=True, follow=True)
got = b""
for chunk in stream:
    got += chunk
    if b"b\n" in got:
        break
assert got.startswith(b"a\n") and b"b\n" in got, got
print("ok logs(stream=True, follow=True)")
deadline = time.time() + 30
while time.time() < deadline:
    w.reload()
    if w.attrs["State"].get("Health", {}).get("Status") == "healthy":
        break
    time.sleep(0.2)
assert w.attrs["State"]["Health"]["Status"] == "healthy", w.attrs["State"]
assert w.attrs["HostConfig"]["NanoCpus"] == 500_000_000, w.attrs["HostConfig"]
binding = w.ports["80/tcp"][0]
assert binding["HostIp"] == "127.0.0.1" and int(binding["HostPort"]) > 0, w.ports
print("ok nano_cpus, ports, healthcheck")

import io
import tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    data = b"put-by-docker-py\n"
    info = tarfile.TarInfo("put.txt")
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))
assert w.put_archive("/tmp", buf.getvalue()) is True
code, out = w.exec_run(["cat", "/tmp/put.txt"])
assert (code, out) == (0, b"put-by-docker-py\n"), (code, out)
bits, stat = w.get_archive("/tmp/put.txt")
with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as t:
    assert t.extractfile("put.txt").read() == b"put-by-docker-py\n"
assert stat["name"] == "put.txt" and stat["size"] == 17, stat
print("ok put_archive, get_archive")

w.remove(force=True)
evs = list(c.events(decode=True, since=since, until=int(time.time()) + 1,
                    filters={"container": w.id}))
actions = [e["Action"] for e in evs]
assert actions[:2] == ["create", "start"] and "destroy" in actions, actions
assert all(e["Type"] == "container" and e["Actor"]["ID"] == w.id for e in evs), evs
print("ok events(decode=True)")

v = c.volumes.create(f"pyvol{tag}")
assert v.attrs["Mountpoint"], v.attrs
v.remove()
print("ok volumes")
print("ALL OK")
