#!/usr/bin/env python3
"""A registry that demands bearer tokens, for ctr_registry.rs and ctr_push.rs (Debian's
docker-registry needs a token server with certificates for that). Serves one OCI layout:

  token_registry.py LAYOUT PORT_FILE USER PASSWORD

GET /v2/<repo>/manifests/<tag|digest> and /v2/<repo>/blobs/<digest> need
`Authorization: Bearer <token>`; without it they answer 401 with
`WWW-Authenticate: Bearer realm="http://127.0.0.1:PORT/token",service="fake",scope=...`.
GET /token needs HTTP basic USER:PASSWORD and the scope of the repository, and hands out
the token. The chosen port is written to PORT_FILE once listening.

Pushes: HEAD /v2/<repo>/blobs/<digest> needs a pull token; POST
/v2/<repo>/blobs/uploads/, PUT <location>?digest=..., PUT /v2/<repo>/manifests/<tag> need
a token for the scope `repository:<repo>:pull,push` (a pull token is answered with a 401
whose challenge asks for that scope). Uploaded blobs are checked against their digest and written into
the layout; pushed tags are kept in memory.
"""
import base64
import hashlib
import http.server
import json
import os
import sys
import urllib.parse

LAYOUT, PORT_FILE, USER, PASSWORD = sys.argv[1:5]
TOKEN = "t0ken-" + base64.b16encode(os.urandom(8)).decode()
PUSH_TOKEN = "push-" + base64.b16encode(os.urandom(8)).decode()
TAGS = {}


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
            token = PUSH_TOKEN if q["scope"][0].endswith(":pull,push") else TOKEN
            return self.send(200, json.dumps({"token": token}).encode())
        parts = u.path.split("/")
        if len(parts) < 5 or parts[1] != "v2":
            return self.send(404)
        repo, kind, ref = "/".join(parts[2:-2]), parts[-2], parts[-1]
        if self.headers.get("Authorization") not in (f"Bearer {TOKEN}", f"Bearer {PUSH_TOKEN}"):
            challenge = (f'Bearer realm="http://127.0.0.1:{port}/token",service="fake",'
                         f'scope="repository:{repo}:pull"')
            return self.send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                             extra=[("WWW-Authenticate", challenge)])
        with open(os.path.join(LAYOUT, "index.json")) as f:
            index = json.load(f)
        ctype = "application/octet-stream"
        if kind == "manifests":
            if ref in TAGS.get(repo, {}):
                ref = TAGS[repo][ref]
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


    def push_auth(self, repo):
        """True when the request carries the push token; else answers 401."""
        if self.headers.get("Authorization") == f"Bearer {PUSH_TOKEN}":
            return True
        port = self.server.server_address[1]
        challenge = (f'Bearer realm="http://127.0.0.1:{port}/token",service="fake",'
                     f'scope="repository:{repo}:pull,push"')
        self.send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                  extra=[("WWW-Authenticate", challenge)])
        return False

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_HEAD(self):
        # Asking whether a blob exists needs only a pull token, as with distribution: a
        # push first gets a pull token here, then must ask again for push.
        parts = urllib.parse.urlparse(self.path).path.split("/")
        repo = "/".join(parts[2:-2])
        if self.headers.get("Authorization") not in (f"Bearer {TOKEN}", f"Bearer {PUSH_TOKEN}"):
            port = self.server.server_address[1]
            self.send_response(401)
            self.send_header("WWW-Authenticate",
                             f'Bearer realm="http://127.0.0.1:{port}/token",service="fake",'
                             f'scope="repository:{repo}:pull"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = os.path.join(LAYOUT, "blobs", "sha256", parts[-1].split(":", 1)[-1])
        self.send_response(200 if os.path.exists(path) else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        parts = urllib.parse.urlparse(self.path).path.rstrip("/").split("/")
        repo = "/".join(parts[2:-2])
        self.body()
        if not self.push_auth(repo):
            return
        loc = f"/v2/{repo}/blobs/uploads/" + base64.b16encode(os.urandom(8)).decode()
        self.send(202, extra=[("Location", loc)])

    def do_PUT(self):
        u = urllib.parse.urlparse(self.path)
        parts = u.path.split("/")
        data = self.body()
        if "uploads" in parts:
            repo = "/".join(parts[2:parts.index("blobs")])
            if not self.push_auth(repo):
                return
            digest = urllib.parse.parse_qs(u.query)["digest"][0]
            if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                return self.send(400, b'{"errors":[{"code":"DIGEST_INVALID"}]}')
        else:
            repo, tag = "/".join(parts[2:-2]), parts[-1]
            if not self.push_auth(repo):
                return
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            TAGS.setdefault(repo, {})[tag] = digest
        with open(os.path.join(LAYOUT, "blobs", "sha256", digest.split(":", 1)[1]), "wb") as f:
            f.write(data)
        self.send(201, extra=[("Docker-Content-Digest", digest)])


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(PORT_FILE + ".tmp", PORT_FILE)
srv.serve_forever()
