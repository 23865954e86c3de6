#!/usr/bin/env python3
"""A read-only registry that demands bearer tokens, for ctr_registry.rs (Debian's
docker-registry needs a token server with certificates for that). Serves one OCI layout:

  token_registry.py LAYOUT PORT_FILE USER PASSWORD

GET /v2/<repo>/manifests/<tag|digest> and /v2/<repo>/blobs/<digest> need
`Authorization: Bearer <token>`; without it they answer 401 with
`WWW-Authenticate: Bearer realm="http://127.0.0.1:PORT/token",service="fake",scope=...`.
GET /token needs HTTP basic USER:PASSWORD and the scope of the repository, and hands out
the token. The chosen port is written to PORT_FILE once listening.
"""
import base64
import http.server
import json
import os
import sys
import urllib.parse

LAYOUT, PORT_FILE, USER, PASSWORD = sys.argv[1:5]
TOKEN = "t0ken-" + base64.b16encode(os.urandom(8)).decode()


class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def send(self, code, body=b"", ctype="application/json", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        port = self.server.server_address[1]
        if u.path == "/token":
            q = urllib.parse.parse_qs(u.query)
            want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != want or not q.get("scope"):
                return self.send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            return self.send(200, json.dumps({"token": TOKEN}).encode())
        parts = u.path.split("/")
        if len(parts) < 5 or parts[1] != "v2":
            return self.send(404)
        repo, kind, ref = "/".join(parts[2:-2]), parts[-2], parts[-1]
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            challenge = (f'Bearer realm="http://127.0.0.1:{port}/token",service="fake",'
                         f'scope="repository:{repo}:pull"')
            return self.send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                             extra=[("WWW-Authenticate", challenge)])
        with open(os.path.join(LAYOUT, "index.json")) as f:
            index = json.load(f)
        ctype = "application/octet-stream"
        if kind == "manifests":
            if not ref.startswith("sha256:"):
                found = [m for m in index["manifests"]
                         if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref]
                if not found:
                    return self.send(404)
                ref = found[0]["digest"]
            path = os.path.join(LAYOUT, "blobs", "sha256", ref.split(":", 1)[1])
            if not os.path.exists(path):
                return self.send(404)
            with open(path, "rb") as f:
                data = f.read()
            ctype = json.loads(data).get("mediaType", "application/vnd.oci.image.manifest.v1+json")
            return self.send(200, data, ctype)
        path = os.path.join(LAYOUT, "blobs", "sha256", ref.split(":", 1)[-1])
        if kind != "blobs" or not os.path.exists(path):
            return self.send(404)
        with open(path, "rb") as f:
            return self.send(200, f.read(), ctype)


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(PORT_FILE + ".tmp", PORT_FILE)
srv.serve_forever()
