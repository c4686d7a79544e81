#!/usr/bin/env python3
"""Small fake registries that misbehave on purpose, for kiln's end-to-end tests of hostile
servers. Everything is kept in memory. Python standard library only.

--mode offsite-upload --user U --password P --other-port N --log FILE
    A registry on --port that takes pushes only with Basic credentials U:P, and answers
    every upload POST with a Location on a second host, 127.0.0.1:N (another origin). That
    host stores the upload (PATCH, PUT ?digest=, GET status, DELETE) without asking for
    credentials, and appends every request it sees to FILE as one JSON object a line:
    {"method", "path", "headers": {name: value}}. What it stores the registry then has,
    so the manifest PUT succeeds.

--mode trickle --rate B
    A registry without auth serving one image, test/slow:1 (a config and a one-file layer of
    random bytes, made at start): the manifest and the config at full speed, the layer at B bytes a second.
"""
import argparse
import base64
import gzip
import hashlib
import http.server
import io
import json
import random
import tarfile
import threading
import time
import urllib.parse
import uuid

lock = threading.Lock()
blobs = {}    # digest -> bytes, what the registry holds
uploads = {}  # upload id -> bytearray, on the second host


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Base(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def body(self):
        length = int(self.headers.get("Content-Length", "0") or "0")
        data = bytearray()
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        while len(data) < length:
            piece = self.rfile.read(length - len(data))
            if not piece:
                break
            data += piece
        return bytes(data)

    def reply(self, status, data=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    def error(self, status, code, message):
        self.reply(status, json.dumps({"errors": [{"code": code, "message": message}]}).encode(),
                   [("Content-Type", "application/json")])


def offsite_registry(args):
    expected = "Basic " + base64.b64encode(f"{args.user}:{args.password}".encode()).decode()
    other = f"http://127.0.0.1:{args.other_port}"

    class Registry(Base):
        def handle_any(self):
            data = self.body()
            if self.headers.get("Authorization", "") != expected:
                return self.reply(401, b"", [("WWW-Authenticate", 'Basic realm="hostile"')])
            path = urllib.parse.urlparse(self.path).path
            if path == "/v2/":
                return self.reply(200, b"{}", [("Content-Type", "application/json")])
            if "/blobs/uploads/" in path and self.command == "POST":
                upload = uuid.uuid4().hex
                with lock:
                    uploads[upload] = bytearray()
                return self.reply(202, b"", [("Location", f"{other}/upload/{upload}"), ("Range", "0-0"),
                                             ("Docker-Upload-UUID", upload)])
            if "/blobs/" in path:
                digest = path.rsplit("/", 1)[1]
                with lock:
                    stored = blobs.get(digest)
                if stored is None:
                    return self.error(404, "BLOB_UNKNOWN", "blob unknown to registry")
                return self.reply(200, stored, [("Docker-Content-Digest", digest)])
            if "/manifests/" in path and self.command == "PUT":
                return self.reply(201, b"", [("Docker-Content-Digest", digest_of(data))])
            if "/manifests/" in path:
                return self.error(404, "MANIFEST_UNKNOWN", "manifest unknown")
            return self.error(404, "NOT_FOUND", "not found")

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    class OtherHost(Base):
        def handle_any(self):
            with lock, open(args.log, "a") as log:
                log.write(json.dumps({"method": self.command, "path": self.path,
                                      "headers": dict(self.headers.items())}) + "\n")
            data = self.body()
            parsed = urllib.parse.urlparse(self.path)
            upload = parsed.path.rsplit("/", 1)[1]
            with lock:
                held = uploads.get(upload)
                if held is None:
                    return self.error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
                if self.command == "DELETE":
                    del uploads[upload]
                    return self.reply(204)
                held += data
                size = len(held)
                location = [("Location", f"/upload/{upload}"), ("Range", f"0-{max(size - 1, 0)}")]
                if self.command == "PUT":
                    digest = urllib.parse.parse_qs(parsed.query).get("digest", [""])[0]
                    if digest_of(bytes(held)) != digest:
                        return self.error(400, "DIGEST_INVALID", "digest does not match")
                    blobs[digest] = bytes(held)
                    del uploads[upload]
                    return self.reply(201, b"", [("Location", f"/v2/blobs/{digest}"), ("Docker-Content-Digest", digest)])
            return self.reply(202 if self.command == "PATCH" else 204, b"", location)

        do_GET = do_HEAD = do_POST = do_PATCH = do_PUT = do_DELETE = handle_any

    return Registry, OtherHost


def trickle_registry(args):
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as tar:
        # Incompressible, so that trickling the layer would take 20 minutes.
        content = random.Random(1).randbytes(4800)
        info = tarfile.TarInfo("slow.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    layer = gzip.compress(layer_tar.getvalue(), mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [digest_of(layer_tar.getvalue())]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest_of(layer),
                    "size": len(layer)}]}).encode()
    fast = {digest_of(config): config, digest_of(manifest): manifest}

    class Registry(Base):
        def handle_any(self):
            self.body()
            path = urllib.parse.urlparse(self.path).path
            if path == "/v2/":
                return self.reply(200, b"{}", [("Content-Type", "application/json")])
            reference = path.rsplit("/", 1)[1]
            if "/manifests/" in path and reference in ("1", digest_of(manifest)):
                return self.reply(200, manifest, [("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                                                  ("Docker-Content-Digest", digest_of(manifest))])
            if "/blobs/" in path and reference in fast:
                return self.reply(200, fast[reference])
            if "/blobs/" in path and reference == digest_of(layer):
                self.send_response(200)
                self.send_header("Content-Length", str(len(layer)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                try:
                    for i in range(0, len(layer), args.rate):
                        self.wfile.write(layer[i:i + args.rate])
                        self.wfile.flush()
                        time.sleep(1)
                except OSError:
                    pass  # the client gave up, as it should
                return
            return self.error(404, "NOT_FOUND", "not found")

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    return Registry


def serve(port, handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["offsite-upload", "trickle"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--other-port", type=int)
    parser.add_argument("--user", default="kiln")
    parser.add_argument("--password", default="")
    parser.add_argument("--log")
    parser.add_argument("--rate", type=int, default=4)
    args = parser.parse_args()
    if args.mode == "offsite-upload":
        registry, other_host = offsite_registry(args)
        serve(args.other_port, other_host)
        serve(args.port, registry)
    else:
        serve(args.port, trickle_registry(args))
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
