"""Crash recovery: deployments a dead agent left in flight are reported FailedAfterRestart at start-up."""

from __future__ import annotations

import logging

from agent.errors import CODE_NAMES, DeploymentLocked, ErrorCode
from agent.hooks.runner import kill_process_group
from agent.model.report import FAILED, IN_PROGRESS, SKIPPED, Diagnostics, EventResult, Report, utc_now
from agent.state.store import InflightMarker, StateStore

log = logging.getLogger(__name__)


def recover_interrupted(store: StateStore, *, kill_grace: float) -> list[Report]:
    """Finish every interrupted deployment: end its orphaned hook group, report it, release the group.

    Returns the final reports so the caller can publish them. The group lock is an flock held by the dead
    process, so the kernel already released it.
    """
    reports: list[Report] = []
    for found in store.find_interrupted():
        app, group = found.application, found.deployment_group
        # Hold the group's lock so a deployment starting right now is never mistaken for an interrupted one.
        try:
            with store.lock(app, group, timeout=0.0):
                marker = next((m for m in store.find_interrupted()
                               if (m.application, m.deployment_group) == (app, group)), None)
                if marker is not None:
                    reports.append(_finish_interrupted(store, marker, kill_grace=kill_grace))
        except DeploymentLocked:
            continue  # a live process holds the group: its deployment is not interrupted
    return reports


def _finish_interrupted(store: StateStore, marker: InflightMarker, *, kill_grace: float) -> Report:
    app, group, dep = marker.application, marker.deployment_group, marker.deployment_id
    pgid = store.orphaned_hook_group(marker)  # only a group that still is the hook's (no pid reuse)
    if pgid:
        try:
            if kill_process_group(pgid, grace=kill_grace):
                log.warning("ended orphaned hook process group %s of deployment %s", pgid, dep)
        except (OSError, ValueError) as exc:
            log.warning("could not end hook process group %s: %s", pgid, exc)
    doc = store.read_report(app, group, dep)
    report = Report.from_dict(doc) if doc else Report(dep, app, group, revision={})
    message = "the agent restarted while this event ran; the deployment was abandoned"
    diag = Diagnostics(
        error_code=int(ErrorCode.FAILED_AFTER_RESTART),
        error_name=CODE_NAMES[ErrorCode.FAILED_AFTER_RESTART],
        message=message,
    )
    now = utc_now()
    target = next((ev for ev in report.events if ev.status == IN_PROGRESS), None)
    if target is None and marker.event:
        target = next((ev for ev in report.events if ev.name == marker.event), None)
        if target is None:
            target = EventResult(name=marker.event)
            report.events.append(target)
    if target is not None:
        target.status = FAILED
        target.ended_at = now
        target.diagnostics = diag
    for ev in report.events:
        if ev.status in ("Pending", IN_PROGRESS):
            ev.status = SKIPPED
    report.status = FAILED
    report.ended_at = now
    if marker.command_id:
        report.extra.setdefault("command_id", marker.command_id)
    store.write_report(app, group, dep, report.to_dict())
    state = store.load_group(app, group)
    record = state.record(dep)
    if record is not None:
        record.status = FAILED
        record.ended_at = now
        store.save_group(state)
    store.end(app, group)
    log.error("deployment %s of %s/%s: FailedAfterRestart", dep, app, group)
    return report
