"""The status file (``<root>/status.json``): what the daemon is doing, for ``berth agent status``.

The daemon rewrites it whenever its state changes (and after polls). Writes are atomic (temp + rename) but not
fsync'd: the file is rewritten often and describes the present, so after a power cut an older copy is harmless.

Fields (the daemon decides which it writes): ``state`` (one of :data:`STATES`), ``deployment_id``,
``application``, ``deployment_group``, ``event`` (the lifecycle event running), ``last_poll_at``, ``last_error``,
``version`` (the agent's), ``pid``, ``started_at`` (the daemon's start), ``instance_id``, ``drift`` (later).
The document's own format version is ``schema_version``, beside ``kind``; :func:`read_status` strips both.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from agent.errors import StateError

STATUS_KIND = "berth-agent-status"
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # readable by `berth agent status` run by any user
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_status(path: Path) -> dict[str, Any] | None:
    """The status fields, or None when there is no status file (the daemon never ran with this root).

    Raises StateError for an unreadable file or one written by a newer berth.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise StateError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("kind") != STATUS_KIND:
        raise StateError(f"{path} is not a berth status file")
    version = doc.get("schema_version")
    if not isinstance(version, int) or version > STATUS_SCHEMA_VERSION:
        raise StateError(f"{path} has status version {version!r}; this berth understands {STATUS_SCHEMA_VERSION}")
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
