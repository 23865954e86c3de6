#!/usr/bin/env python3
"""Prints an OCI image archive (an OCI layout in a tar) as JSON: the parts of its config a
container runs with, and its merged filesystem (layers applied in order, OCI whiteouts
and opaque markers honoured): path -> [type, mode, uid, gid, size or link, sha256].
Used to compare `codex-ctr build` with `podman build` of the same context."""
import hashlib
import io
import json
import sys
import tarfile


def blob(outer, digest):
    algo, hexd = digest.split(":", 1)
    return outer.extractfile("blobs/%s/%s" % (algo, hexd)).read()


def main(path):
    outer = tarfile.open(path)
    index = json.loads(outer.extractfile("index.json").read())
    manifest = json.loads(blob(outer, index["manifests"][0]["digest"]))
    config = json.loads(blob(outer, manifest["config"]["digest"]))
    files = {}
    for layer in manifest["layers"]:
        data = blob(outer, layer["digest"])
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as t:
            for m in t.getmembers():
                name = m.name
                while name.startswith("./"):
                    name = name[2:]
                name = name.rstrip("/")
                if not name or name == ".":
                    continue
                parent, _, base = name.rpartition("/")
                prefix = parent + "/" if parent else ""
                if base == ".wh..wh..opq":
                    for k in [k for k in files if k.startswith(prefix) and k != parent]:
                        del files[k]
                    continue
                if base.startswith(".wh."):
                    gone = prefix + base[4:]
                    for k in [k for k in files if k == gone or k.startswith(gone + "/")]:
                        del files[k]
                    continue
                if m.islnk():
                    target = m.linkname.lstrip("./").rstrip("/")
                    files[name] = list(files.get(target, ["missing-link-target"]))
                    continue
                kind = "dir" if m.isdir() else "sym" if m.issym() else "file" if m.isfile() else "other"
                if kind == "file":
                    digest = hashlib.sha256(t.extractfile(m).read()).hexdigest()
                    files[name] = [kind, oct(m.mode & 0o7777), m.uid, m.gid, m.size, digest]
                elif kind == "sym":
                    files[name] = [kind, m.uid, m.gid, m.linkname]
                elif kind == "dir":
                    files[name] = [kind, oct(m.mode & 0o7777), m.uid, m.gid]
                else:
                    files[name] = [kind, oct(m.mode & 0o7777), m.uid, m.gid, m.devmajor, m.devminor]
    c = config.get("config", {})
    keys = ["Env", "Entrypoint", "Cmd", "WorkingDir", "User", "ExposedPorts", "Labels",
            "StopSignal", "Volumes"]
    print(json.dumps({"config": {k: c.get(k) for k in keys}, "files": files},
                     sort_keys=True, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
