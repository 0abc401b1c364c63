"""Durable host state of deployment groups (SPEC §5; the on-disk layout is in docs/deployment-root.md).

Every file is versioned JSON written atomically (:func:`agent.fsutil.write_state`). Callers hold the group's
:meth:`StateStore.lock` around everything that writes a group's state: the store itself does not lock, so that one
deployment can make many small updates under one lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from agent.errors import DeploymentLocked, StateError, UsageError
from agent.fsutil import read_state, write_state
from agent.model.report import utc_now
from agent.paths import GroupPaths, Paths, check_name
from agent.state import lock as flock
from agent.state import procinfo, retention
from agent.state.records import DeploymentInfo, DeploymentRecord, GroupState, InflightMarker

__all__ = ["DeploymentInfo", "DeploymentRecord", "GroupState", "InflightMarker", "StateStore"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# kind -> newest version this agent writes and reads. Bump a version only with a reader for the old one.
GROUP = ("group", 1)
MANIFEST = ("manifest", 1)
INFLIGHT = ("inflight", 1)
DEPLOYMENT = ("deployment", 1)
REPORT = ("report", 1)

_GROUP_HINT = (
    "It records this deployment group's deployments; moved aside, berth forgets them "
    "(ApplicationStop is then skipped and there is nothing to roll back to)."
)
_MANIFEST_HINT = (
    "It lists the files the last install created; moved aside, the next deployment treats those files as not "
    "installed by berth (file_exists_behavior decides; nothing is cleaned up)."
)
_INFLIGHT_HINT = "It marks a running deployment; delete it only when no berth process is deploying this group."


class StateStore:
    """Reads and writes the state of every deployment group under ``paths.root``."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        # Markers this process wrote: mark_event rewrites them without reading the file back.
        self._inflight: dict[tuple[str, str], InflightMarker] = {}

    # -- group pointers and history ----------------------------------------------------------------------------

    def load_group(self, app: str, group: str) -> GroupState:
        """The group's state; an empty one (no pointers, no history) if it never deployed here."""
        path = self.paths.group(app, group).group_file
        doc = _read(path, GROUP, _GROUP_HINT)
        if doc is None:
            return GroupState(app, group)
        return _convert(path, _GROUP_HINT, lambda: GroupState.from_dict(doc, app, group))

    def save_group(self, state: GroupState) -> None:
        path = self.paths.group(state.application, state.deployment_group).group_file
        write_state(path, *GROUP, state.to_dict())

    # -- install manifest -------------------------------------------------------------------------------------

    def load_manifest(self, app: str, group: str) -> dict[str, Any] | None:
        """The manifest saved by the last install of the group, or ``None`` if there was none."""
        return _read_wrapped(self.paths.group(app, group).manifest_file, MANIFEST, "manifest", _MANIFEST_HINT)

    def save_manifest(self, app: str, group: str, manifest: dict[str, Any]) -> None:
        write_state(self.paths.group(app, group).manifest_file, *MANIFEST, {"manifest": manifest})

    # -- per-deployment files ----------------------------------------------------------------------------------

    def save_deployment(self, app: str, group: str, info: DeploymentInfo) -> None:
        """Write ``deployment.json``: what was deployed and how, so a rollback can reuse the retained folder."""
        path = self._group(app, group).deployment(info.record.deployment_id).deployment_file
        body = {"application": app, "deployment_group": group, "record": info.record.to_dict(), "options": info.options}
        write_state(path, *DEPLOYMENT, body)

    def load_deployment(self, app: str, group: str, deployment_id: str) -> DeploymentInfo | None:
        """``deployment.json`` of a deployment, or ``None`` if it was never written or retention removed it."""
        path = self._group(app, group).deployment(deployment_id).deployment_file
        hint = f"It describes deployment {deployment_id}; moved aside, that deployment cannot be rolled back to."
        doc = _read(path, DEPLOYMENT, hint)
        if doc is None:
            return None

        def build() -> DeploymentInfo:
            options = doc.get("options") or {}
            if not isinstance(options, dict):
                raise ValueError("options must be a JSON object")
            return DeploymentInfo(DeploymentRecord.from_dict(doc.get("record")), options)

        return _convert(path, hint, build)

    def write_report(self, app: str, group: str, deployment_id: str, report: dict[str, Any]) -> None:
        """Write the deployment's ``report.json`` (the report dict sits under the key ``report``)."""
        path = self._group(app, group).deployment(deployment_id).report_file
        # Reports are rewritten after every event: only the final one needs to survive a power cut.
        write_state(path, *REPORT, {"report": report}, durable=report.get("status") != "InProgress")

    def read_report(self, app: str, group: str, deployment_id: str) -> dict[str, Any] | None:
        """The deployment's report, or ``None`` if there is none (never written, or removed by retention)."""
        path = self._group(app, group).deployment(deployment_id).report_file
        hint = f"It is the report of deployment {deployment_id}; moving it aside loses only that report."
        return _read_wrapped(path, REPORT, "report", hint)

    def deployment_revision_dir(self, app: str, group: str, deployment_id: str) -> Path | None:
        """The unpacked revision folder of a deployment, or ``None`` if it is not on this host (any more)."""
        path = self._group(app, group).deployment(deployment_id).revision_dir
        return path if path.is_dir() else None

    # -- in-flight marker --------------------------------------------------------------------------------------

    def begin(self, app: str, group: str, deployment_id: str, *, command_id: str | None = None) -> None:
        """Write ``inflight.json`` for a deployment this process is starting. Call it while holding the lock.

        A marker left by a dead agent is replaced (with a warning): report it through :meth:`find_interrupted`
        before starting new deployments.
        """
        check_name("deployment id", deployment_id)
        gp = self._group(app, group)
        old = self._read_marker(app, group, gp)
        if old is not None and old.deployment_id != deployment_id:
            log.warning(
                "replacing the in-flight marker of deployment %s (pid %s) with %s; it was not reported as interrupted",
                old.deployment_id, old.pid, deployment_id,
            )
        pid = os.getpid()
        now = utc_now()
        marker = InflightMarker(
            application=app, deployment_group=group, deployment_id=deployment_id, event=None, pgid=None, pid=pid,
            started_at=now, command_id=command_id, pid_start=procinfo.start_ticks(pid), boot_id=procinfo.boot_id(),
            updated_at=now,
        )
        self._write_marker(gp, marker)

    def mark_event(self, app: str, group: str, event: str, pgid: int | None = None) -> None:
        """Record the event now running and, while a hook script runs, its process group id.

        Raises :class:`StateError` if no deployment of the group is in flight (call :meth:`begin` first).
        """
        gp = self._group(app, group)
        marker = self._inflight.get((app, group)) or self._read_marker(app, group, gp)
        if marker is None:
            raise StateError(f"no deployment of {app}/{group} is in flight ({gp.inflight_file} is missing)")
        pgid_start = procinfo.start_ticks(pgid) if pgid else None
        self._write_marker(gp, replace(marker, event=event, pgid=pgid, pgid_start=pgid_start, updated_at=utc_now()))

    def end(self, app: str, group: str) -> None:
        """Remove ``inflight.json``: the deployment ended (whatever its outcome) and was recorded."""
        gp = self._group(app, group)
        self._inflight.pop((app, group), None)
        try:
            gp.inflight_file.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StateError(f"cannot remove {gp.inflight_file}: {exc.strerror}. {_INFLIGHT_HINT}") from exc
        _fsync_dir(gp.dir)  # else a crash could bring the marker back and report a finished deployment as failed

    def find_interrupted(self) -> list[InflightMarker]:
        """Markers of every group whose agent is gone (dead pid, a reused pid, or an earlier boot).

        A marker of a live process (this one included) is not listed. Raises :class:`StateError` for an unreadable
        marker, naming it.
        """
        found = []
        for app, group in self.groups():
            marker = self._read_marker(app, group, self.paths.group(app, group))
            if marker is not None and not procinfo.same_process(marker.pid, marker.pid_start, marker.boot_id):
                found.append(marker)
        return found

    def orphaned_hook_group(self, marker: InflightMarker) -> int | None:
        """The process group of the hook script ``marker`` records, if that very group still has processes.

        ``None`` when no script ran, the group is empty, or the id now belongs to an unrelated group (pid reuse,
        or a marker from an earlier boot): only a returned id is safe to signal.
        """
        if not marker.pgid:
            return None
        alive = procinfo.same_process_group(marker.pgid, marker.pgid_start, marker.boot_id)
        return marker.pgid if alive else None

    # -- retention, locking, enumeration -----------------------------------------------------------------------

    def retain(self, app: str, group: str, max_revisions: int, *, keep: Iterable[str] = ()) -> list[str]:
        """Delete the oldest deployment folders so that at most ``max_revisions`` remain; return the removed ids.

        Newest first by history order (folders the history does not know count as oldest). Never removed: the
        last successful deployment, the one in ``inflight.json``, and ``keep``; they count towards the limit.
        Call it while holding the group's lock.
        """
        gp = self._group(app, group)
        state = self.load_group(app, group)
        protected = set(keep)
        if state.last_successful:
            protected.add(state.last_successful)
        marker = self._inflight.get((app, group)) or self._read_marker(app, group, gp)
        if marker is not None:
            protected.add(marker.deployment_id)
        retention.sweep_trash(gp.deployments_dir)
        newest_first = [r.deployment_id for r in reversed(state.history)]
        ordered = retention.existing_deployments(gp.deployments_dir, newest_first)
        removed = retention.plan_removals(ordered, max_revisions, protected)
        for dep in removed:
            retention.remove_deployment(gp.deployments_dir, dep)
        if removed:
            log.info("removed old deployment folders of %s/%s: %s", app, group, ", ".join(removed))
        return removed

    @contextlib.contextmanager
    def lock(
        self, app: str, group: str, *, timeout: float, cancel: Callable[[], bool] | None = None
    ) -> Iterator[None]:
        """Hold the group's deployment lock for the ``with`` block.

        Waits up to ``timeout`` seconds for a running deployment of the group to finish (``0`` = do not wait),
        then raises :class:`DeploymentLocked` naming that deployment. ``cancel`` is polled while waiting; when it
        returns true :class:`~agent.errors.Cancelled` is raised. The kernel releases the lock if this process dies.
        """
        gp = self._group(app, group)
        fd = flock.acquire(gp.lock_file, timeout, cancel)
        if fd is None:
            raise DeploymentLocked(self._locked_message(app, group, gp, timeout))
        try:
            yield
        finally:
            flock.release(fd)

    def groups(self) -> list[tuple[str, str]]:
        """Every (application, deployment group) with a folder under the state root, sorted."""
        found: list[tuple[str, str]] = []
        for app_dir in _subdirs(self.paths.groups_dir):
            found.extend((app_dir.name, g.name) for g in _subdirs(app_dir))
        return sorted(found)

    # -- helpers -----------------------------------------------------------------------------------------------

    def _group(self, app: str, group: str) -> GroupPaths:
        return self.paths.group(app, group)

    def _read_marker(self, app: str, group: str, gp: GroupPaths) -> InflightMarker | None:
        doc = _read(gp.inflight_file, INFLIGHT, _INFLIGHT_HINT)
        if doc is None:
            return None
        return _convert(gp.inflight_file, _INFLIGHT_HINT, lambda: InflightMarker.from_dict(doc, app, group))

    def _write_marker(self, gp: GroupPaths, marker: InflightMarker) -> None:
        body = marker.to_dict()
        # The folder names are authoritative; keeping them out of the body avoids two sources of truth.
        del body["application"], body["deployment_group"]
        write_state(gp.inflight_file, *INFLIGHT, body)
        self._inflight[(marker.application, marker.deployment_group)] = marker

    def _locked_message(self, app: str, group: str, gp: GroupPaths, timeout: float) -> str:
        waited = "did not wait (lock timeout 0)" if timeout <= 0 else f"waited {timeout:g} s"
        try:
            marker = self._read_marker(app, group, gp)
        except StateError:
            marker = None
        if marker is None:
            return (
                f"deployment group {app}/{group} is locked by another berth process that has not started a "
                f"deployment yet ({gp.lock_file}); {waited}. Run this deployment again in a moment."
            )
        return (
            f"deployment group {app}/{group} is busy: deployment {marker.deployment_id} is running on this host "
            f"(pid {marker.pid}, started {marker.started_at}, event {marker.event or 'preparing'}); {waited}. "
            f"Run this deployment again once {marker.deployment_id} has finished, or allow a longer wait "
            f"(lock_timeout in the agent's configuration); if that process is stuck, stop it (kill {marker.pid}): "
            "the lock is released as soon as it exits."
        )


def _read(path: Path, kind_version: tuple[str, int], hint: str) -> dict[str, Any] | None:
    try:
        return read_state(path, *kind_version)
    except StateError as exc:
        raise StateError(f"{exc.message}. {hint}") from exc


def _read_wrapped(path: Path, kind_version: tuple[str, int], key: str, hint: str) -> dict[str, Any] | None:
    """The JSON object a state file keeps under ``key`` (``None`` without the file)."""
    doc = _read(path, kind_version, hint)
    if doc is None:
        return None
    value = doc.get(key)
    if not isinstance(value, dict):
        raise StateError(f"{path}: '{key}' is not a JSON object; move the file aside. {hint}")
    return value


def _convert(path: Path, hint: str, build: Callable[[], _T]) -> _T:
    try:
        return build()
    except ValueError as exc:
        raise StateError(f"{path} is damaged ({exc}); move it aside to start this state afresh. {hint}") from exc


def _subdirs(folder: Path) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"cannot list {folder}: {exc.strerror}") from exc
    out = []
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        with contextlib.suppress(UsageError):  # not a name berth creates: leave it alone
            check_name("folder", entry.name)
            out.append(Path(entry.path))
    return out


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
