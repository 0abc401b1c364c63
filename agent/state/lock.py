"""flock(2) on a deployment group's lock file: one deployment per group at a time on this host.

flock and not a pid file: the kernel drops the lock when the holder dies, even by SIGKILL, so a crashed agent
never leaves a group locked. Locks belong to the open file description, so two opens in one process (two
threads, or a nested attempt) also exclude each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from agent.errors import Cancelled, StateError

# Polling (rather than a blocking flock under an alarm signal) keeps signals out of this code and lets a stopping
# agent give up at once through ``cancel``.
_FIRST_POLL = 0.02
_MAX_POLL = 0.5


def acquire(path: Path, timeout: float, cancel: Callable[[], bool] | None = None) -> int | None:
    """Lock ``path`` (created if missing) and return the open descriptor, or ``None`` after ``timeout`` seconds.

    ``timeout <= 0`` tries once. ``cancel`` is polled while waiting; when it returns true :class:`Cancelled` is
    raised. Release with :func:`release` (or let the process exit).
    """
    deadline = time.monotonic() + max(0.0, timeout)
    poll = _FIRST_POLL
    while True:
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
        except OSError as exc:
            os.close(fd)
            raise StateError(f"cannot lock {path}: {exc.strerror}") from exc
        else:
            if _still_linked(fd, path):
                return fd
            # Someone removed or replaced the file while we waited: our lock guards nothing. Try the new file.
            os.close(fd)
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        if cancel is not None and cancel():
            raise Cancelled("agent stopping while waiting for a deployment group lock")
        time.sleep(min(poll, remaining))
        poll = min(poll * 1.5, _MAX_POLL)


def release(fd: int) -> None:
    """Drop the lock taken by :func:`acquire` (closing the descriptor releases it)."""
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StateError(f"cannot open lock file {path}: {exc.strerror}; check the state root is writable") from exc


def _still_linked(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)
