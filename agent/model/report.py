"""The deployment report: what ``deploy-local --json`` prints and what the daemon sends (docs/protocol.md).

Pure data. Times are UTC ISO-8601 strings with milliseconds; durations are integer milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

# Event and deployment statuses.
PENDING = "Pending"
IN_PROGRESS = "InProgress"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
SKIPPED = "Skipped"
REJECTED = "Rejected"  # deployment only: the command was refused before anything ran

REPORT_SCHEMA_VERSION = 1


def utc_now() -> str:
    """Current time as an ISO-8601 UTC string with millisecond precision."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Diagnostics:
    """Why an event failed. ``error_code`` is from SPEC §3; ``error_name`` the specific reason."""

    error_code: int
    error_name: str
    message: str
    script_name: str | None = None
    log_tail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "error_code": self.error_code,
            "error_name": self.error_name,
            "script_name": self.script_name,
            "message": self.message,
            "log_tail": self.log_tail,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Diagnostics:
        return cls(
            error_code=int(d["error_code"]),
            error_name=str(d["error_name"]),
            message=str(d.get("message", "")),
            script_name=d.get("script_name"),
            log_tail=str(d.get("log_tail", "")),
        )


@dataclass
class EventResult:
    """One lifecycle event's outcome."""

    name: str
    status: str = PENDING
    started_at: str | None = None
    ended_at: str | None = None
    duration_ms: int | None = None
    diagnostics: Diagnostics | None = None
    # Which revision's scripts ran: "current", "previous" (stop/block events) or None for agent-run events.
    scripts_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_ms": self.duration_ms,
            "diagnostics": self.diagnostics.to_dict() if self.diagnostics else None,
            "scripts_from": self.scripts_from,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EventResult:
        diag = d.get("diagnostics")
        return cls(
            name=str(d["name"]),
            status=str(d.get("status", PENDING)),
            started_at=d.get("started_at"),
            ended_at=d.get("ended_at"),
            duration_ms=d.get("duration_ms"),
            diagnostics=Diagnostics.from_dict(diag) if isinstance(diag, dict) else None,
            scripts_from=d.get("scripts_from"),
        )


@dataclass
class Report:
    """A deployment's report, rewritten after every event.

    The first five keys plus ``events`` are the ``deploy-local --json`` contract; ``extra`` carries what the
    daemon adds (instance_id, agent_version, command_id, ...) and features such as rollback
    (``rolled_back_to``, ``rollback``) and plans (``plan``).
    """

    deployment_id: str
    application: str
    deployment_group: str
    revision: dict[str, Any]
    status: str = IN_PROGRESS
    events: list[EventResult] = field(default_factory=list)
    started_at: str | None = None
    ended_at: str | None = None
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def event(self, name: str) -> EventResult:
        for ev in self.events:
            if ev.name == name:
                return ev
        raise KeyError(name)

    def failed_event(self) -> EventResult | None:
        return next((ev for ev in self.events if ev.status == FAILED), None)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema_version": REPORT_SCHEMA_VERSION,
            "deployment_id": self.deployment_id,
            "status": self.status,
            "application": self.application,
            "deployment_group": self.deployment_group,
            "revision": self.revision,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "events": [ev.to_dict() for ev in self.events],
            "warnings": list(self.warnings),
        }
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        known = {
            "schema_version", "deployment_id", "status", "application", "deployment_group", "revision",
            "started_at", "ended_at", "events", "warnings",
        }
        return cls(
            deployment_id=str(d["deployment_id"]),
            application=str(d.get("application", "")),
            deployment_group=str(d.get("deployment_group", "")),
            revision=dict(d.get("revision") or {}),
            status=str(d.get("status", IN_PROGRESS)),
            events=[EventResult.from_dict(e) for e in d.get("events", [])],
            started_at=d.get("started_at"),
            ended_at=d.get("ended_at"),
            warnings=[str(w) for w in d.get("warnings", [])],
            extra={k: v for k, v in d.items() if k not in known},
        )
