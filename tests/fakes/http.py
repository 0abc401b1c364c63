"""Small local HTTP servers for tests: a scripted server, a fake IMDSv2, and a forwarding HTTP proxy.

Every server listens on 127.0.0.1 on a free port, runs in daemon threads and records what it was asked.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Seen:
    """One request as the server received it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Reply:
    """What to answer: ``delay`` seconds of silence first (to provoke client timeouts), then the response."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Route = Callable[[Seen], Reply]


class LocalServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 whose answers come from ``route``; ``seen`` lists the requests."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.seen: list[Seen] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                owner.seen.append(request)
                reply = owner.route(request)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up waiting; that is what a slow test wants

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeImds:
    """IMDSv2 as EC2 serves it: a token from ``PUT /latest/api/token`` (TTL header required), then GETs carrying
    the token. A GET without a valid token gets 401, as on an instance with IMDSv1 disabled. ``revoke()`` makes
    issued tokens invalid (what a client sees when its token expired)."""

    def __init__(self, instance_id: str = "i-0123456789abcdef0", region: str = "eu-west-3") -> None:
        expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        self.metadata = {
            "/latest/meta-data/instance-id": instance_id,
            "/latest/meta-data/placement/region": region,
            # the instance role, as boto3's credential chain reads it
            "/latest/meta-data/iam/security-credentials/": "berth-role",
            "/latest/meta-data/iam/security-credentials/berth-role": json.dumps(
                {
                    "Code": "Success",
                    "Type": "AWS-HMAC",
                    "AccessKeyId": "ASIAFAKEIMDSROLE",
                    "SecretAccessKey": "fake-secret",
                    "Token": "fake-session-token",
                    "Expiration": expiration,
                }
            ),
        }
        self._tokens: set[str] = set()
        self._counter = itertools.count(1)
        self.server = LocalServer(self._route)

    def _route(self, req: Seen) -> Reply:
        if req.path == "/latest/api/token":
            if req.method != "PUT":
                return Reply(405)
            if "x-forwarded-for" in req.headers:  # EC2 refuses tokens to requests that went through a proxy
                return Reply(403)
            if not req.headers.get("x-aws-ec2-metadata-token-ttl-seconds", "").isdigit():
                return Reply(400)
            token = f"token-{next(self._counter)}"
            self._tokens.add(token)
            return Reply(200, token.encode())
        if req.headers.get("x-aws-ec2-metadata-token") not in self._tokens:
            return Reply(401)
        value = self.metadata.get(req.path)
        return Reply(404) if value is None else Reply(200, value.encode())

    def revoke(self) -> None:
        self._tokens.clear()

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> FakeImds:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


_HOP_HEADERS = {"proxy-connection", "connection", "keep-alive", "expect", "transfer-encoding"}


class ForwardingProxy:
    """A plain HTTP proxy (absolute-form requests, no CONNECT) that forwards to the target and records each URL."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                owner.urls.append(self.path)
                target = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port or 80, timeout=30)
                try:
                    path = target.path + (f"?{target.query}" if target.query else "")
                    conn.request(self.command, path or "/", body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for name, value in resp.getheaders():
                        if name.lower() not in {"transfer-encoding", "connection", "content-length"}:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> ForwardingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def serving(route: Route) -> Iterator[LocalServer]:
    """``with serving(route) as server:`` - a :class:`LocalServer` for the block."""
    with LocalServer(route) as server:
        yield server
