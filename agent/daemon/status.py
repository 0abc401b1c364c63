"""The status file (``<root>/status.json``): what the daemon is doing, for ``berth agent status``.

The daemon rewrites it whenever its state changes (and after polls). Writes are atomic (temp + rename) but not
fsync'd: the file is rewritten often and describes the present, so after a power cut an older copy is harmless.

Fields (the daemon decides which it writes): ``state`` (one of :data:`STATES`), ``deployment_id``,
``application``, ``deployment_group``, ``event`` (the lifecycle event running), ``last_poll_at``, ``last_error``,
``version`` (the agent's), ``pid``, ``started_at`` (the daemon's start), ``instance_id``, ``drift`` (later).
The document's own format version is ``schema_version``, beside ``kind``; :func:`read_status` strips both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agent.fsutil import atomic_write_bytes, read_state

STATUS_KIND = "agent-status"
STATUS_SCHEMA_VERSION = 1

STARTING = "starting"
IDLE = "idle"
DEPLOYING = "deploying"
STOPPING = "stopping"
STOPPED = "stopped"
STATES = (STARTING, IDLE, DEPLOYING, STOPPING, STOPPED)


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Replace the status file atomically (readers see the old or the new one). Raises OSError on failure."""
    doc = {"kind": STATUS_KIND, "schema_version": STATUS_SCHEMA_VERSION, **status}
    data = json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"
    # readable by `berth agent status` run by any user; not fsync'd (see the module docstring)
    atomic_write_bytes(path, data, 0o644, durable=False)


def read_status(path: Path) -> dict[str, Any] | None:
    """The status fields, or None when there is no status file (the daemon never ran with this root).

    Raises StateError for an unreadable file or one written by a newer berth.
    """
    doc = read_state(path, STATUS_KIND, STATUS_SCHEMA_VERSION, version_key="schema_version")
    if doc is None:
        return None
    return {k: v for k, v in doc.items() if k not in ("kind", "schema_version")}


def daemon_alive(status: dict[str, Any]) -> bool:
    """Whether the process that wrote ``status`` still exists (a stale file outlives a killed daemon)."""
    pid = status.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True
