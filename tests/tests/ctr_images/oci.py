#!/usr/bin/env python3
"""Edits and hand-made OCI image layouts for ctr_images.rs: what umoci and skopeo will not
write (a Docker Healthcheck, a multi-platform index, hostile layers, corrupt blobs).

  oci.py craft OUT SPEC_JSON      a one-image layout from layer entry lists (see craft())
  oci.py healthcheck LAYOUT       adds config.Healthcheck to the layout's first image
  oci.py multiarch LAYOUT         wraps the first image in an index with a linux/arm64 twin
  oci.py corrupt LAYOUT           flips a byte in the first layer blob (digest mismatch)
  oci.py drop-layer LAYOUT        deletes the first layer blob (manifest names a missing blob)
  oci.py docker OUT.tar CONFIG [LINK TARGET]
                                  a docker archive whose manifest.json names CONFIG as the
                                  config file, with an optional symlink entry LINK -> TARGET
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def put_blob(layout, data):
    h = hashlib.sha256(data).hexdigest()
    d = os.path.join(layout, "blobs", "sha256")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, h), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + h, "size": len(data)}


def get_blob(layout, digest):
    with open(os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1]), "rb") as f:
        return f.read()


def first(layout):
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    desc = index["manifests"][0]
    return index, desc, json.loads(get_blob(layout, desc["digest"]))


def write_index(layout, index):
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)


def replace_manifest(layout, index, desc, manifest):
    new = put_blob(layout, json.dumps(manifest).encode())
    desc.update(new)
    write_index(layout, index)


def edit_config(layout, fn):
    index, desc, manifest = first(layout)
    config = json.loads(get_blob(layout, manifest["config"]["digest"]))
    fn(config)
    manifest["config"].update(put_blob(layout, json.dumps(config).encode()))
    replace_manifest(layout, index, desc, manifest)


def healthcheck(layout):
    def add(c):
        c.setdefault("config", {})["Healthcheck"] = {
            "Test": ["CMD-SHELL", "test -e /tmp/ok"],
            "Interval": 2_000_000_000,
            "Timeout": 1_000_000_000,
            "StartPeriod": 3_000_000_000,
            "Retries": 4,
        }
    edit_config(layout, add)


def multiarch(layout):
    index, desc, manifest = first(layout)
    config = json.loads(get_blob(layout, manifest["config"]["digest"]))
    config["architecture"] = "arm64"
    config["variant"] = "v8"
    other = dict(manifest)
    other["config"] = dict(manifest["config"], **put_blob(layout, json.dumps(config).encode()))
    arm = put_blob(layout, json.dumps(other).encode())
    mt = "application/vnd.oci.image.manifest.v1+json"
    inner = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            dict(arm, mediaType=mt, platform={"os": "linux", "architecture": "arm64", "variant": "v8"}),
            {"mediaType": mt, "digest": desc["digest"], "size": desc["size"],
             "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }
    top = put_blob(layout, json.dumps(inner).encode())
    index["manifests"] = [dict(top, mediaType=inner["mediaType"], annotations=desc.get("annotations", {}))]
    write_index(layout, index)


def corrupt(layout):
    _, _, manifest = first(layout)
    p = os.path.join(layout, "blobs", "sha256", manifest["layers"][0]["digest"].split(":", 1)[1])
    with open(p, "r+b") as f:
        f.seek(-1, 2)
        b = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([b[0] ^ 0xFF]))


def drop_layer(layout):
    _, _, manifest = first(layout)
    os.remove(os.path.join(layout, "blobs", "sha256", manifest["layers"][0]["digest"].split(":", 1)[1]))


def layer_tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.mode = e.get("mode", 0o644)
            kind = e.get("type", "file")
            data = e.get("data", "").encode()
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, e.get("mode", 0o755)
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, e["target"]
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, e["target"]
            elif kind == "zeros":
                data = b"\0" * e["size"]
            if kind in ("file", "zeros"):
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
    return buf.getvalue()


def craft(out, spec):
    """spec: {"ref": "name:tag", "layers": [[entry, ...], ...]}; entries as layer_tar()."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    layers, diff_ids = [], []
    for entries in spec["layers"]:
        raw = layer_tar(entries)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        gz = gzip.compress(raw, mtime=0)
        layers.append(dict(put_blob(out, gz), mediaType="application/vnd.oci.image.layer.v1.tar+gzip"))
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cdesc = dict(put_blob(out, json.dumps(config).encode()), mediaType="application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cdesc, "layers": layers}
    mdesc = dict(put_blob(out, json.dumps(manifest).encode()), mediaType=manifest["mediaType"])
    mdesc["annotations"] = {"org.opencontainers.image.ref.name": spec["ref"]}
    write_index(out, {"schemaVersion": 2, "manifests": [mdesc]})


def docker(out, config_path, link=None, target=None):
    raw = layer_tar([{"name": "f", "data": "x"}])
    diff = "sha256:" + hashlib.sha256(raw).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
    manifest = json.dumps([{"Config": config_path, "RepoTags": ["hostile:x"],
                            "Layers": ["l/layer.tar"]}]).encode()
    with tarfile.open(out, "w") as t:
        for name, data in [("manifest.json", manifest), ("l/layer.tar", raw), ("real.json", config)]:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        if link:
            ti = tarfile.TarInfo(link)
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            t.addfile(ti)


if __name__ == "__main__":
    cmd, layout = sys.argv[1], sys.argv[2]
    if cmd == "craft":
        craft(layout, json.loads(sys.argv[3]))
    elif cmd == "docker":
        docker(layout, *sys.argv[3:])
    else:
        {"healthcheck": healthcheck, "multiarch": multiarch, "corrupt": corrupt,
         "drop-layer": drop_layer}[cmd](layout)
