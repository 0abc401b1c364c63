"""The data kept per deployment group: deployment records, the group's pointers and the in-flight marker.

Plain dataclasses with ``to_dict``/``from_dict``; :mod:`agent.state.store` puts them on disk. ``from_dict`` raises
``ValueError`` naming the bad field; the store turns that into a :class:`~agent.errors.StateError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.model.report import SUCCEEDED

# group.json keeps this many deployment records (the newest). The last successful deployment's record is kept even
# when older, because ApplicationStop and rollback need it.
HISTORY_LIMIT = 50


def _opt_str(d: dict[str, Any], key: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be a string or null, not {type(value).__name__}")
    return value


def _req_str(d: dict[str, Any], key: str) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string")
    return value


def _opt_int(d: dict[str, Any], key: str) -> int | None:
    value = d.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"{key} must be an integer or null")
    return value


@dataclass
class DeploymentRecord:
    """One deployment of a group: what was deployed and how it ended.

    ``status`` uses the report's statuses (``InProgress``, ``Succeeded``, ``Failed``, ...); times are UTC ISO-8601
    strings (:func:`agent.model.report.utc_now`). ``revision`` is ``Revision.to_dict()``.
    """

    deployment_id: str
    status: str
    started_at: str | None
    ended_at: str | None
    revision: dict[str, Any]
    bundle_type: str | None = None
    appspec_filename: str = "appspec.yml"
    rollback_of: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "revision": dict(self.revision),
            "bundle_type": self.bundle_type,
            "appspec_filename": self.appspec_filename,
            "rollback_of": self.rollback_of,
        }

    @classmethod
    def from_dict(cls, d: Any) -> DeploymentRecord:
        if not isinstance(d, dict):
            raise ValueError("a deployment record must be a JSON object")
        revision = d.get("revision")
        if not isinstance(revision, dict):
            raise ValueError("revision must be a JSON object")
        return cls(
            deployment_id=_req_str(d, "deployment_id"),
            status=_req_str(d, "status"),
            started_at=_opt_str(d, "started_at"),
            ended_at=_opt_str(d, "ended_at"),
            revision=revision,
            bundle_type=_opt_str(d, "bundle_type"),
            appspec_filename=_opt_str(d, "appspec_filename") or "appspec.yml",
            rollback_of=_opt_str(d, "rollback_of"),
        )


@dataclass
class GroupState:
    """A deployment group's pointers and bounded history, oldest first (the newest record is last).

    Update it with :meth:`start` / :meth:`finish` (or edit records and pointers directly) and save it with
    ``StateStore.save_group`` while holding the group's lock; saving trims the history to :data:`HISTORY_LIMIT`.
    """

    application: str
    deployment_group: str
    last_successful: str | None = None
    most_recent: str | None = None
    history: list[DeploymentRecord] = field(default_factory=list)

    def record(self, deployment_id: str) -> DeploymentRecord | None:
        """The record of ``deployment_id``, or ``None`` if this group never ran it (or forgot it)."""
        return next((r for r in reversed(self.history) if r.deployment_id == deployment_id), None)

    def start(self, record: DeploymentRecord) -> None:
        """Append ``record`` as the newest deployment and make it the most recent one.

        A record with the same id is replaced (a re-run of the same deployment id).
        """
        self.history = [r for r in self.history if r.deployment_id != record.deployment_id]
        self.history.append(record)
        self.most_recent = record.deployment_id

    def finish(self, deployment_id: str, status: str, ended_at: str | None) -> DeploymentRecord:
        """Set the end status and time of a recorded deployment; ``Succeeded`` makes it the last successful.

        Raises ``KeyError`` if the deployment is not in the history (call :meth:`start` first).
        """
        rec = self.record(deployment_id)
        if rec is None:
            raise KeyError(deployment_id)
        rec.status = status
        rec.ended_at = ended_at
        if status == SUCCEEDED:
            self.last_successful = deployment_id
        return rec

    def trimmed_history(self, limit: int = HISTORY_LIMIT) -> list[DeploymentRecord]:
        """The newest ``limit`` records, plus the last successful and most recent ones' if older (order kept)."""
        if len(self.history) <= limit:
            return list(self.history)
        pinned = {self.last_successful, self.most_recent} - {None}
        newest = {id(r) for r in self.history[-max(1, limit):]}
        return [r for r in self.history if id(r) in newest or r.deployment_id in pinned]

    def to_dict(self) -> dict[str, Any]:
        return {
            "application": self.application,
            "deployment_group": self.deployment_group,
            "last_successful": self.last_successful,
            "most_recent": self.most_recent,
            "history": [r.to_dict() for r in self.trimmed_history()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], application: str, deployment_group: str) -> GroupState:
        """Build from a group document; the names come from the folder, which is what the agent looks up by."""
        history = d.get("history", [])
        if not isinstance(history, list):
            raise ValueError("history must be a list")
        records = []
        for i, item in enumerate(history):
            try:
                records.append(DeploymentRecord.from_dict(item))
            except ValueError as exc:
                raise ValueError(f"history[{i}]: {exc}") from exc
        return cls(
            application=application,
            deployment_group=deployment_group,
            last_successful=_opt_str(d, "last_successful"),
            most_recent=_opt_str(d, "most_recent"),
            history=records,
        )


@dataclass(frozen=True)
class DeploymentInfo:
    """Contents of a deployment's ``deployment.json``: its record plus the options it ran with.

    ``options`` is free-form (file_exists_behavior, events, ...) so a rollback can redeploy the retained revision
    folder the same way without downloading it again.
    """

    record: DeploymentRecord
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InflightMarker:
    """``inflight.json``: a deployment of this group is running (or was, when its agent died).

    ``pid_start`` (clock ticks after boot, from ``/proc/<pid>/stat``) and ``boot_id`` tell the agent that wrote the
    marker apart from an unrelated process that later got the same pid. ``pgid``/``pgid_start`` likewise identify
    the hook script's process group while one runs.
    """

    application: str
    deployment_group: str
    deployment_id: str
    event: str | None
    pgid: int | None
    pid: int
    started_at: str
    command_id: str | None = None
    pid_start: int | None = None
    boot_id: str | None = None
    pgid_start: int | None = None
    updated_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "application": self.application,
            "deployment_group": self.deployment_group,
            "deployment_id": self.deployment_id,
            "event": self.event,
            "pgid": self.pgid,
            "pgid_start": self.pgid_start,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "boot_id": self.boot_id,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "command_id": self.command_id,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], application: str, deployment_group: str) -> InflightMarker:
        pid = _opt_int(d, "pid")
        if pid is None or pid <= 0:
            raise ValueError("pid must be a positive integer")
        return cls(
            application=application,
            deployment_group=deployment_group,
            deployment_id=_req_str(d, "deployment_id"),
            event=_opt_str(d, "event"),
            pgid=_opt_int(d, "pgid"),
            pid=pid,
            started_at=_opt_str(d, "started_at") or "",
            command_id=_opt_str(d, "command_id"),
            pid_start=_opt_int(d, "pid_start"),
            boot_id=_opt_str(d, "boot_id"),
            pgid_start=_opt_int(d, "pgid_start"),
            updated_at=_opt_str(d, "updated_at"),
        )
