"""sd_notify(3) without libsystemd: datagrams to ``$NOTIFY_SOCKET`` (READY=1, STATUS=..., WATCHDOG=1, STOPPING=1).

Everything here is best effort: with no ``NOTIFY_SOCKET`` (not run by systemd, or not ``Type=notify``) every call
is a no-op, and a send that fails is logged at debug level, never raised — a notification must not stop a deployment.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(value: str | None) -> str | None:
    """``/path`` stays as is; ``@name`` is Linux's abstract namespace (a leading NUL byte)."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock: and others: systemd >= 253 only, not needed on the hosts berth targets


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of ``WATCHDOG_USEC``; None when the watchdog is off or meant for
    another process (``WATCHDOG_PID`` set to a pid other than ours)."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 2 / 1_000_000


class SdNotifier:
    """Sends notifications to the socket named by ``NOTIFY_SOCKET`` (read once, at construction). Thread-safe."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if environ is None else environ
        self.address = _address(self._env.get("NOTIFY_SOCKET"))
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines in one datagram; keys are upper-cased (``notify(ready=1, status="x")``).

        Returns whether the datagram was sent; never raises.
        """
        if self.address is None or not fields:
            return False
        # A newline inside a value would start a new assignment: keep STATUS= text on one line.
        message = "\n".join(f"{key.upper()}={' '.join(str(value).splitlines())}" for key, value in fields.items())
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(message.encode(), self.address)
            except OSError as exc:
                log.debug("sd_notify to %r failed: %s", self._env.get("NOTIFY_SOCKET"), exc)
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up and crash recovery are done: systemd considers the service started."""
        return self.notify(READY=1, **({"STATUS": status} if status else {}))

    def status(self, text: str) -> bool:
        """What the agent is doing, shown by ``systemctl status``."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """The loop is alive (send every :func:`watchdog_interval` seconds)."""
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str | None = None) -> bool:
        """The agent is shutting down (finishing or cancelling the current deployment)."""
        return self.notify(STOPPING=1, **({"STATUS": status} if status else {}))

    def watchdog_interval(self) -> float | None:
        """:func:`watchdog_interval` for the environment this notifier was built with."""
        return watchdog_interval(self._env)

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
