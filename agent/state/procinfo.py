"""Is the process that wrote a marker still that process? (Linux ``/proc``; pid reuse and reboots defeated.)"""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")
_BOOT_ID = _PROC / "sys/kernel/random/boot_id"


def start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks after boot (``/proc/<pid>/stat`` field 22); ``None`` if it is gone.

    A zombie counts as gone: it runs nothing and holds no lock.
    """
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ')': split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        state, ticks = fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None
    return None if state in {"Z", "X", "x"} else ticks


def boot_id() -> str | None:
    """This boot's random id: a pid and start time from an earlier boot mean nothing now."""
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def same_process(pid: int, ticks: int | None, boot: str | None) -> bool:
    """Whether ``pid`` is still the process that was recorded with start ``ticks`` during boot ``boot``.

    Without a recorded start time (``/proc`` was unreadable) only existence can be checked.
    """
    if pid <= 0:
        return False
    if boot is not None and boot != boot_id():
        return False
    if ticks is not None:
        return start_ticks(pid) == ticks
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def same_process_group(pgid: int, leader_ticks: int | None, boot: str | None) -> bool:
    """Whether process group ``pgid`` recorded (leader start ``leader_ticks``, boot ``boot``) still has members.

    While its leader lives, the leader's start time must match. Once the leader is gone the id cannot be reused
    while the group still has members (the kernel does not hand out a pid that is in use as a process group id),
    so any surviving member proves it is the same group.
    """
    if pgid <= 1 or (boot is not None and boot != boot_id()):
        return False
    ticks = start_ticks(pgid)
    if ticks is not None:
        return leader_ticks is None or ticks == leader_ticks
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
