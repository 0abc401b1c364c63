#!/usr/bin/env python3
"""berth example web app: a tiny HTTP server using only Python's standard library.

GET /        a small page naming the version
GET /health  200 {"status": "ok", "version": "<VERSION>"}; if a HEALTH_STATUS file exists in the install folder,
             its number is the status code answered instead (handy to try a failing deployment)

Listens on 127.0.0.1, port $WEBAPP_PORT (default 8080).
"""

import html
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

APP_DIR = Path("/opt/berth-examples/webapp")


def read_version() -> str:
    try:
        return (APP_DIR / "VERSION").read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


def health_status() -> int:
    try:
        return int((APP_DIR / "HEALTH_STATUS").read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return 200


class Handler(BaseHTTPRequestHandler):
    server_version = "berth-example-webapp"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        version = read_version()
        if path == "/health":
            status = health_status()
            body = json.dumps({"status": "ok" if status == 200 else "failing", "version": version})
            self.reply(status, "application/json", body)
        elif path == "/":
            page = (
                "<!doctype html><title>berth example</title>"
                f"<h1>Hello from berth</h1><p>version {html.escape(version)}</p>\n"
            )
            self.reply(200, "text/html; charset=utf-8", page)
        else:
            self.reply(404, "text/plain; charset=utf-8", "not found\n")

    def reply(self, status: int, content_type: str, body: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    port = int(os.environ.get("WEBAPP_PORT", "8080"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"serving version {read_version()} on http://127.0.0.1:{port}/", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
