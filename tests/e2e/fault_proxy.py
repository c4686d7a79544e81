#!/usr/bin/env python3
"""A fault-injecting, counting HTTP proxy in front of a local docker-registry, for kiln's
push tests.

Every request is forwarded to --upstream with its headers as they came (Host included,
so the registry's Location headers point back at this proxy, and Authorization, so an
htpasswd registry behind it works), after its whole body was read. On the way it can:

  --status-every CODE:N   answer CODE (500, 429 with Retry-After: 1, ...) instead of
                          forwarding every Nth request (counted over all requests);
                          may be given several times
  --drop-every N          for every Nth request carrying blob bytes (PATCH, or a PUT to
                          an upload), read half of the body, then close the connection
                          without an answer; nothing is forwarded, so the registry's
                          upload stays where it was
  --throttle-mbps X       read blob bytes at X MB/s (so a test can kill a push mid-blob)
  --deny REPO:CODE        answer CODE to every request for repository REPO (403 DENIED,
                          404 NAME_UNKNOWN, 401 UNAUTHORIZED)

GET /stats answers what it saw, as JSON:
  requests            every request but /stats and /control
  by_kind             {"HEAD blob": n, "POST upload": n, "POST mount": n, "PATCH": n,
                       "PUT upload": n, "PUT manifest": n, "GET upload": n, ...}
  mounted             POST mounts the registry answered 201
  upload_bytes        blob bytes forwarded in PATCH and PUT-to-upload bodies
  completed           {digest: how many uploads of it the registry completed (201)}
  injected            {"500": n, "429": n, "drop": n, ...}
GET /control?throttle_mbps=X changes the throttle while running.
Python standard library only.
"""
import argparse
import http.client
import http.server
import json
import socket
import threading
import time
import urllib.parse

lock = threading.Lock()
stats = {"requests": 0, "by_kind": {}, "mounted": 0, "upload_bytes": 0, "completed": {}, "injected": {}}
settings = {"throttle_mbps": 0.0}


def kind_of(method, path):
    parsed = urllib.parse.urlparse(path)
    query = urllib.parse.parse_qs(parsed.query)
    if "/blobs/uploads" in parsed.path:
        if method == "POST":
            return "POST mount" if "mount" in query else "POST upload"
        return method + " upload"
    if "/blobs/" in parsed.path:
        return method + " blob"
    if "/manifests/" in parsed.path:
        return method + " manifest"
    return method + " " + parsed.path


def repository_of(path):
    parts = urllib.parse.urlparse(path).path.split("/")
    for marker in ("manifests", "blobs", "tags"):
        if len(parts) > 3 and parts[1] == "v2" and marker in parts:
            return "/".join(parts[2:parts.index(marker)])
    return ""


def bump(table, key, by=1):
    table[key] = table.get(key, 0) + by


def make_handler(args):
    upstream = urllib.parse.urlparse(args.upstream)
    status_every = [tuple(int(x) for x in spec.split(":")) for spec in args.status_every]
    denied = {}
    for spec in args.deny:
        repo, code = spec.rsplit(":", 1)
        denied[repo] = int(code)
    counters = {"requests": 0, "bodies": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def reply(self, status, body=b"", headers=()):
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)

        def reply_json(self, status, document, headers=()):
            self.reply(status, json.dumps(document).encode(), [("Content-Type", "application/json")] + list(headers))

        def read_body(self, throttled, stop_after=None):
            """The request body (Content-Length or chunked); None if the client went away."""
            data = bytearray()
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return bytes(data)
                    data += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length", "0") or "0")
            limit = length if stop_after is None else min(length, stop_after)
            while len(data) < limit:
                piece = self.rfile.read(min(64 * 1024, limit - len(data)))
                if not piece:
                    return None
                data += piece
                rate = settings["throttle_mbps"]
                if throttled and rate > 0:
                    time.sleep(len(piece) / (rate * 1e6))
            return bytes(data)

        def handle_any(self):
            if self.path.startswith("/stats"):
                with lock:
                    return self.reply_json(200, stats)
            if self.path.startswith("/control"):
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                if "throttle_mbps" in query:
                    settings["throttle_mbps"] = float(query["throttle_mbps"][0])
                return self.reply_json(200, settings)

            kind = kind_of(self.command, self.path)
            carries_blob = kind in ("PATCH upload", "PUT upload") and int(self.headers.get("Content-Length", "0") or "0") > 0
            with lock:
                stats["requests"] += 1
                bump(stats["by_kind"], kind)
                counters["requests"] += 1
                number = counters["requests"]
                if carries_blob:
                    counters["bodies"] += 1
                body_number = counters["bodies"]

            if carries_blob and args.drop_every and body_number % args.drop_every == 0:
                length = int(self.headers.get("Content-Length", "0"))
                self.read_body(True, stop_after=length // 2)
                with lock:
                    bump(stats["injected"], "drop")
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return

            body = self.read_body(carries_blob)
            if body is None:
                self.close_connection = True
                return

            repo = repository_of(self.path)
            if repo in denied:
                code = denied[repo]
                names = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NAME_UNKNOWN"}
                messages = {401: "authentication required", 403: "requested access to the resource is denied",
                            404: "repository name not known to registry"}
                return self.reply_json(code, {"errors": [{"code": names.get(code, "UNKNOWN"),
                                                          "message": messages.get(code, "error")}]})
            for code, every in status_every:
                if number % every == 0:
                    with lock:
                        bump(stats["injected"], str(code))
                    headers = [("Retry-After", "1")] if code == 429 else []
                    return self.reply_json(code, {"errors": [{"code": "UNAVAILABLE", "message": "injected"}]}, headers)

            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=120)
            # Field by field: repeated ones (skopeo sends one Accept per media type) must all go.
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in ("connection", "content-length", "transfer-encoding"):
                    conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if body else None)
            response = conn.getresponse()
            data = response.read() if self.command != "HEAD" else b""
            with lock:
                if kind == "POST mount" and response.status == 201:
                    stats["mounted"] += 1
                if carries_blob and 200 <= response.status < 300:
                    stats["upload_bytes"] += len(body)
                if kind == "PUT upload" and response.status == 201:
                    digest = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).get("digest", [""])[0]
                    bump(stats["completed"], digest)
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            length = response.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            if data:
                self.wfile.write(data)
            conn.close()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--status-every", action="append", default=[], metavar="CODE:N")
    parser.add_argument("--drop-every", type=int, default=0)
    parser.add_argument("--throttle-mbps", type=float, default=0)
    parser.add_argument("--deny", action="append", default=[], metavar="REPO:CODE")
    args = parser.parse_args()
    settings["throttle_mbps"] = args.throttle_mbps
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args))
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
