"""A moto server over real HTTP for AWS tests (TESTING-NOTES.md), plus dummy credentials for boto3.

Typical use in a test module::

    @pytest.fixture(scope="module")
    def moto():
        with moto_server() as server:
            yield server

    @pytest.fixture
    def aws(moto, monkeypatch):
        use_dummy_credentials(monkeypatch)
        moto.reset()
        return AwsContext(AwsSettings(region="us-east-1", endpoints=moto.endpoints("s3")))

moto is imported only when a server starts (importing it takes about a second).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.http import closed_port

# Variables that would make boto3 look somewhere else than the moto server or at real credentials.
_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL_LOGS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
)


def use_dummy_credentials(monkeypatch: pytest.MonkeyPatch, region: str = "us-east-1") -> None:
    """Point boto3's credential chain at fixed test keys; no profile, proxy or instance metadata lookups."""
    for name in _UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


class MotoServer:
    """A running moto server; ``url`` is its endpoint for every service."""

    def __init__(self, url: str, stop: Any) -> None:
        self.url = url
        self._stop = stop

    def endpoints(self, *services: str) -> dict[str, str]:
        """``{service: url}`` for ``AwsSettings.endpoints``."""
        return dict.fromkeys(services, self.url)

    def reset(self) -> None:
        """Forget every bucket, queue and object (moto's reset API)."""
        req = urllib.request.Request(self.url + "/moto-api/reset", method="POST", data=b"")
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=10) as resp:
            resp.read()

    def stop(self) -> None:
        self._stop()


@contextlib.contextmanager
def moto_server() -> Iterator[MotoServer]:
    """An in-process ThreadedMotoServer on 127.0.0.1 and a free port, its access log silenced."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoServer(f"http://{host}:{port}", server.stop)
    finally:
        server.stop()


@contextlib.contextmanager
def moto_server_process() -> Iterator[MotoServer]:
    """moto in its own process, for tests that measure this process's memory without moto's in it."""
    port = closed_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with opener.open(url + "/moto-api/", timeout=2) as resp:
                    resp.read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield MotoServer(url, proc.terminate)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
