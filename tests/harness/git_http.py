"""A git server over smart HTTP with basic auth, for the DAGs-from-git tests: Python's http.server in front of
`git http-backend`, git's own CGI program, so clients talk to real git with the auth a hosted service asks
for (a user and an access token). Runs beside the integration tests and, from a ConfigMap, as a pod of the
k8s suite (the Airflow image has git and Python).

    python git_http.py --root DIR --port 8080        # GIT_HTTP_USER / GIT_HTTP_TOKEN from the environment

Every repository under DIR is served (``http://host:port/<name>.git``); a request without the user and token
gets 401, as a private repository on a hosted service does.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class GitHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], root: str, user: str, token: str):
        super().__init__(address, _Handler)
        self.root = root
        self.expected_auth = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
        self.requests_refused = 0
        self.requests_served = 0


class _Handler(BaseHTTPRequestHandler):
    server: GitHTTPServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args) -> None:  # one line per request on stderr, as git daemon's
        sys.stderr.write(f"git-http: {self.address_string()} {format % args}\n")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":  # git sends big POSTs chunked
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        if not hmac.compare_digest(self.headers.get("Authorization", ""), self.server.expected_auth):
            self.server.requests_refused += 1
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self._read_body()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": self.server.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "git",
            "REMOTE_ADDR": self.client_address[0],
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=120)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        if proc.returncode != 0 and not head:
            status, payload = 500, proc.stderr
        self.server.requests_served += 1
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def serve_in_thread(root: str, user: str, token: str, host: str = "127.0.0.1") -> GitHTTPServer:
    """Start the server on a free port of ``host``; ``server.shutdown()`` stops it."""
    server = GitHTTPServer((host, 0), root, user, token)
    threading.Thread(target=server.serve_forever, name="git-http", daemon=True).start()
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args()
    user, token = os.environ["GIT_HTTP_USER"], os.environ["GIT_HTTP_TOKEN"]
    server = GitHTTPServer((args.host, args.port), args.root, user, token)
    print(f"git-http: serving {args.root} on {args.host}:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
