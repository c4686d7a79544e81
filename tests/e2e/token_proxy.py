#!/usr/bin/env python3
"""A Bearer-token front for a local docker-registry, for kiln's end-to-end tests.

It plays the two roles of Docker Hub's auth: a token endpoint (GET /token, Basic
credentials in, a short-lived token out) and a registry that answers 401 with a
`WWW-Authenticate: Bearer realm=...,service=...,scope=...` challenge unless the
request carries a valid, unexpired token. Valid requests are forwarded to the real
registry given by --upstream. With --corrupt-blobs it flips one byte of every blob it
forwards, to test that a client rejects bytes that do not match their digest; with
--throttle-mbps it sends blob bodies slowly, so a test can kill a pull mid-blob.

With --max-uses N a token is good for N forwarded requests only, so that a client
must refresh it in the middle of a pull, deterministically.

GET /stats answers {"tokens_issued": N, "rejected_tokens": M} for the tests to check.
Python standard library only.
"""
import argparse
import base64
import http.client
import http.server
import json
import secrets
import threading
import time
import urllib.parse

tokens = {}  # token -> [expiry (epoch seconds), uses left]
stats = {"tokens_issued": 0, "rejected_tokens": 0}
lock = threading.Lock()


def make_handler(args):
    upstream = urllib.parse.urlparse(args.upstream)
    realm = f"http://127.0.0.1:{args.port}/token"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):  # quiet: the tests read stdout/stderr of kiln only
            pass

        def send_json(self, status, body, headers=()):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def do_GET(self):
            if self.path.startswith("/token"):
                return self.issue_token()
            if self.path == "/stats":
                with lock:
                    return self.send_json(200, dict(stats))
            return self.forward()

        do_HEAD = do_GET

        def issue_token(self):
            auth = self.headers.get("Authorization", "")
            expected = "Basic " + base64.b64encode(f"{args.user}:{args.password}".encode()).decode()
            if auth != expected:
                return self.send_json(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
            token = secrets.token_hex(16)
            with lock:
                tokens[token] = [time.time() + args.ttl, args.max_uses]
                stats["tokens_issued"] += 1
            return self.send_json(200, {"token": token, "expires_in": args.ttl,
                                        "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

        def authorized(self):
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer "):
                return False
            with lock:
                entry = tokens.get(auth[len("Bearer "):])
                if entry is None or entry[0] < time.time() or entry[1] == 0:
                    stats["rejected_tokens"] += 1
                    return False
                entry[1] -= 1
            return True

        def forward(self):
            if not self.authorized():
                repo = ""
                parts = self.path.split("/")
                if len(parts) > 3 and parts[1] == "v2":
                    for marker in ("manifests", "blobs", "tags"):
                        if marker in parts:
                            repo = "/".join(parts[2:parts.index(marker)])
                            break
                challenge = f'Bearer realm="{realm}",service="kiln-test"'
                if repo:
                    challenge += f',scope="repository:{repo}:pull"'
                return self.send_json(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                                      [("WWW-Authenticate", challenge)])
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "host")}
            conn.request(self.command, self.path, headers=headers)
            response = conn.getresponse()
            body = response.read() if self.command != "HEAD" else b""
            if args.corrupt_blobs and "/blobs/" in self.path and body:
                body = bytes([body[0] ^ 0xFF]) + body[1:]
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            length = response.getheader("Content-Length") if self.command == "HEAD" else str(len(body))
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            if body and args.throttle_mbps > 0 and "/blobs/" in self.path:
                chunk = 64 * 1024
                for start in range(0, len(body), chunk):
                    self.wfile.write(body[start:start + chunk])
                    time.sleep(chunk / (args.throttle_mbps * 1e6))
            elif body:
                self.wfile.write(body)
            conn.close()

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--user", default="kiln")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--ttl", type=int, default=60)
    parser.add_argument("--max-uses", type=int, default=-1)
    parser.add_argument("--corrupt-blobs", action="store_true")
    parser.add_argument("--throttle-mbps", type=float, default=0, help="send blob bodies at this rate (MB/s)")
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args))
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
