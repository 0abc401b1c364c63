"""Idempotency store: every command id the agent has accepted, so a redelivered command never runs twice."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.fsutil import read_state, write_state

_KIND = "command-record"
_VERSION = 1
# Records older than this are forgotten; channels do not redeliver a command after so long.
_KEEP_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class SeenCommand:
    command_id: str
    deployment_id: str
    application: str
    deployment_group: str
    type: str


class SeenCommands:
    """One small file per command id under ``<root>/commands/`` (atomic, survives restarts)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _file(self, command_id: str) -> Path:
        # Command ids come from the network: hash them into a safe file name.
        return self.dir / (hashlib.sha256(command_id.encode()).hexdigest()[:32] + ".json")

    def get(self, command_id: str) -> SeenCommand | None:
        doc = read_state(self._file(command_id), _KIND, _VERSION)
        if doc is None:
            return None
        return SeenCommand(
            command_id=str(doc["command_id"]),
            deployment_id=str(doc["deployment_id"]),
            application=str(doc["application"]),
            deployment_group=str(doc["deployment_group"]),
            type=str(doc.get("type", "deploy")),
        )

    def add(self, seen: SeenCommand) -> None:
        body: dict[str, Any] = {
            "command_id": seen.command_id,
            "deployment_id": seen.deployment_id,
            "application": seen.application,
            "deployment_group": seen.deployment_group,
            "type": seen.type,
            "accepted_at": time.time(),
        }
        write_state(self._file(seen.command_id), _KIND, _VERSION, body)

    def prune(self, now: float | None = None) -> int:
        """Forget records older than the keep period; returns how many were removed."""
        cutoff = (now if now is not None else time.time()) - _KEEP_SECONDS
        removed = 0
        if not self.dir.is_dir():
            return 0
        for path in self.dir.glob("*.json"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed
