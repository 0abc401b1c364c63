"""Process-group handling for hook scripts: ending a group, and finding who still holds a script's output pipes.

Every script runs as the leader of its own session, so its process group id equals its pid and one ``killpg``
reaches everything it started (unless a child left the session on purpose, as a daemon does with ``setsid``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

_PROC = Path("/proc")
# How often a group is checked while it is given time to honour SIGTERM. Only the kill path polls.
_GROUP_POLL = 0.05
_DEAD = frozenset({"Z", "X", "x"})


def describe_status(returncode: int) -> str:
    """``exited with status N`` or ``killed by signal SIGX`` for a :attr:`Popen.returncode`."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by signal {name}"


def _check_pgid(pgid: int) -> None:
    # killpg(0) or killpg(own group) would hit the agent itself; 1 is init. A corrupt crash marker must not do that.
    if pgid <= 1 or pgid == os.getpgrp():
        raise ValueError(f"refusing to signal process group {pgid}: it is not a hook script's group")


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; ``False`` if the group no longer exists."""
    _check_pgid(pgid)
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether any live process (zombies do not count) is still in group ``pgid``.

    Zombies are skipped because an orphan's zombie lingers until init reaps it, which some inits do only every
    second or two: counting them would make every kill wait for the whole grace.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for pid_dir in _pids():
        fields = _stat_fields(pid_dir)
        if fields is not None and len(fields) > 2 and fields[0] not in _DEAD and fields[2] == str(pgid):
            return True
    return False


def _reap(pid: int) -> None:
    # If the leader is our own child, its zombie keeps the group "alive" until it is reaped.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# How long kill_process_group waits for a SIGKILLed group to disappear.
_KILL_SETTLE = 5.0


def kill_process_group(pgid: int, *, grace: float) -> bool:
    """End process group ``pgid``: SIGTERM, wait up to ``grace`` seconds for it to empty, then SIGKILL.

    Returns whether anything was alive to signal. Used by crash recovery to end the group of a hook that an
    earlier agent process started (the pgid comes from its crash marker). If the leader is a child of this process
    it is reaped here (a :class:`subprocess.Popen` holding it then reports returncode 0). Raises ``ValueError`` for
    a pgid that cannot be a hook's (<= 1, or the agent's own group).
    """
    _check_pgid(pgid)
    _reap(pgid)
    if not group_alive(pgid) or not signal_group(pgid, signal.SIGTERM):
        return False
    deadline = time.monotonic() + grace
    while True:
        _reap(pgid)
        if not group_alive(pgid):
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(_GROUP_POLL)
    signal_group(pgid, signal.SIGKILL)
    # SIGKILL is delivered asynchronously: wait (briefly) until the group really is gone before saying it ended.
    deadline = time.monotonic() + _KILL_SETTLE
    while True:
        _reap(pgid)
        if not group_alive(pgid) or time.monotonic() >= deadline:
            return True
        time.sleep(_GROUP_POLL)


def wait_group_empty(pgid: int, deadline: float) -> bool:
    """Wait (polling) until group ``pgid`` has no live process or ``deadline`` (monotonic) passes; whether it did."""
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_GROUP_POLL)
    return True


def _stat_fields(pid_dir: Path) -> list[str] | None:
    try:
        raw = (pid_dir / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')': split after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def _comm(pid_dir: Path) -> str:
    try:
        return (pid_dir / "comm").read_text().strip()
    except OSError:
        return "?"


def _pids() -> list[Path]:
    try:
        entries = list(_PROC.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.name.isdigit()]


def pipe_holders(inodes: Iterable[int]) -> list[tuple[int, str]]:
    """Processes holding any of the pipes ``inodes`` open, as (pid, command name); the agent itself excluded.

    Scans ``/proc/*/fd``: slow-ish (milliseconds) but only used when a script left its output open.
    """
    wanted = {f"pipe:[{ino}]" for ino in inodes}
    me = os.getpid()
    found: list[tuple[int, str]] = []
    for pid_dir in _pids():
        pid = int(pid_dir.name)
        if pid == me:
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target in wanted:
                found.append((pid, _comm(pid_dir)))
                break
    return sorted(found)


def session_members(sid: int) -> list[tuple[int, str]]:
    """Live processes whose session or process group is ``sid``, as (pid, command name)."""
    found: list[tuple[int, str]] = []
    for pid_dir in _pids():
        fields = _stat_fields(pid_dir)
        if fields is None or len(fields) < 4 or fields[0] in _DEAD:
            continue
        with contextlib.suppress(ValueError):
            if int(fields[2]) == sid or int(fields[3]) == sid:
                found.append((int(pid_dir.name), _comm(pid_dir)))
    return sorted(found)
