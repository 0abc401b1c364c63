"""sd_notify: datagrams on a test socket, path and abstract; silence without NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.daemon.sdnotify import SdNotifier, watchdog_interval


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_messages_arrive_on_a_path_socket(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    notifier = SdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready()
    assert received(sock) == "READY=1"
    notifier.status("deploying d-1:\nInstall")
    assert received(sock) == "STATUS=deploying d-1: Install"  # one line: a newline would start a new field
    notifier.watchdog()
    assert received(sock) == "WATCHDOG=1"
    notifier.stopping("finishing d-1")
    assert received(sock) == "STOPPING=1\nSTATUS=finishing d-1"
    notifier.notify(ready=1, status="up")
    assert received(sock) == "READY=1\nSTATUS=up"
    notifier.close()


def test_messages_arrive_on_an_abstract_socket() -> None:
    name = f"berth-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        assert SdNotifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == "READY=1"
    finally:
        sock.close()


def test_without_notify_socket_nothing_happens() -> None:
    notifier = SdNotifier({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False


def test_a_vanished_socket_never_raises(tmp_path: Path) -> None:
    notifier = SdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.status("idle") is False


def test_watchdog_interval() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "3000000"}) == 1.5
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}) == 1.5
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert SdNotifier({"WATCHDOG_USEC": "10000000"}).watchdog_interval() == 5.0
