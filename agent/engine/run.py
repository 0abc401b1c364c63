"""One deployment while it executes: prepare, the lifecycle events, the health gate, state and report updates."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agent.engine.prepare import Prepared, fetch_and_unpack, prepare_installed_revision
from agent.engine.request import DeploymentRequest
from agent.engine.revision import load_appspec
from agent.errors import BerthError, Cancelled, ErrorCode
from agent.install.installer import PartialInstall, execute_install
from agent.install.manifest import Manifest
from agent.model import lifecycle
from agent.model.appspec import AppSpec
from agent.model.report import (
    FAILED,
    IN_PROGRESS,
    SKIPPED,
    SUCCEEDED,
    Diagnostics,
    EventResult,
    Report,
    utc_now,
)
from agent.model.revision import LocalRevision
from agent.paths import DeploymentPaths
from agent.state.store import DeploymentRecord, GroupState

if TYPE_CHECKING:
    from agent.engine.deployment import Engine

    # the hook runner is imported when a script first runs: an empty revision never pays for it
    from agent.hooks.runner import EventOutcome, Script

log = logging.getLogger(__name__)

HEALTH_CHECK_EVENT = "HealthCheck"



class DeploymentRun:
    """State of one deployment while it executes."""

    def __init__(
        self,
        engine: Engine,
        request: DeploymentRequest,
        events: list[str],
        cancel: threading.Event | None,
    ) -> None:
        self.engine = engine
        self.req = request
        self.cancel = cancel
        self.settings = engine.settings
        self.store = engine.store
        self.group_paths = self.settings.paths.group(request.application, request.deployment_group)
        self.dep_paths: DeploymentPaths = self.group_paths.deployment(request.deployment_id)
        self.group: GroupState = self.store.load_group(request.application, request.deployment_group)
        self.previous_id = request.stop_scripts_from or self.group.last_successful
        self.auto_rollback_wanted = False
        self.report = Report(
            deployment_id=request.deployment_id,
            application=request.application,
            deployment_group=request.deployment_group,
            revision=request.revision.to_dict(),
            events=[EventResult(name=e) for e in events],
            started_at=utc_now(),
            extra=dict(request.report_extra),
        )
        if request.restores:
            self.report.extra.setdefault("restores", request.restores)
            self.report.extra.setdefault("rolls_back", request.stop_scripts_from)
        self.prepared: Prepared | None = None
        self.manifest_before: Manifest | None = None
        self.previous_spec: AppSpec | None = None
        self.previous_root: Path | None = None

    # ------------------------------------------------------------------------------------------ lifecycle
    def execute(self) -> Report:
        req = self.req
        self.store.begin(req.application, req.deployment_group, req.deployment_id, command_id=req.command_id)
        self._record(IN_PROGRESS)
        try:
            ok = self._prepare()  # its first event's start publishes the first report
            if ok:
                self._load_previous()
                ok = self._run_events()
            self._finish(SUCCEEDED if ok else FAILED)
        except Cancelled as stop:
            self._fail_current(Diagnostics(ErrorCode.UNKNOWN_ERROR, "AgentStopping", stop.why))
            self._finish(FAILED)
        finally:
            self.store.end(req.application, req.deployment_group)
        return self.report

    def _prepare(self) -> bool:
        """DownloadBundle with its real timing: fetch, unpack, validate, plan. Nothing on the host changes."""
        ev = self.report.event("DownloadBundle")
        self._start(ev)
        try:
            self.dep_paths.dir.mkdir(parents=True, exist_ok=True)
            if self.dep_paths.revision_dir.exists():
                shutil.rmtree(self.dep_paths.revision_dir)
            source = self.req.revision
            if self.req.retained_root is not None:  # a rollback: copy the retained folder, download nothing
                source = LocalRevision(path=str(self.req.retained_root), bundle_type="directory")
            root, env, details = fetch_and_unpack(
                source,
                self.engine.fetchers,
                download_dir=self.dep_paths.download_dir,
                revision_dir=self.dep_paths.revision_dir,
                appspec_filename=self.req.appspec_filename,
                limits=self.settings.limits,
            )
            previous_manifest = self.manifest_before = self._previous_manifest()
            self.prepared = prepare_installed_revision(
                root,
                appspec_filename=self.req.appspec_filename,
                custom_events=lifecycle.custom_events(self._event_names()),
                previous_manifest=previous_manifest,
                file_exists_behavior=self.req.file_exists_behavior,
                bundle_env=env,
                bundle_details=details,
                tool_path=self.settings.tool_path,
            )
            self.prepared.plan.raise_for_problems()
        except BerthError as exc:
            self._end(ev, FAILED, _diag(exc))
            return False
        self.report.warnings.extend(self.prepared.warnings)
        if details and self.req.retained_root is None:
            self.report.revision = {**self.report.revision, **dict(details)}
        self._end(ev, SUCCEEDED)
        return True

    def _previous_manifest(self) -> Manifest | None:
        """The last install's manifest (its raw JSON is dropped at once: 20,000 entries are megabytes)."""
        doc = self.store.load_manifest(self.req.application, self.req.deployment_group)
        return Manifest.from_dict(doc) if doc else None

    def _load_previous(self) -> None:
        """The last successful revision's appspec: its scripts run ApplicationStop and the block-traffic events."""
        prev = self.previous_id
        if prev is None or prev == self.req.deployment_id:
            return
        root = self.store.deployment_revision_dir(self.req.application, self.req.deployment_group, prev)
        if root is None:
            self.report.warnings.append(
                f"the last successful deployment {prev} is no longer on this host; its stop scripts cannot run"
            )
            return
        record = self.group.record(prev)
        filename = record.appspec_filename if record else "appspec.yml"
        try:
            loaded = load_appspec(root, filename)
        except BerthError as exc:
            self.report.warnings.append(f"the previous revision's appspec cannot be used ({exc}); stop hooks skipped")
            return
        self.previous_spec = loaded.spec
        self.previous_root = root

    def _run_events(self) -> bool:
        for ev in self.report.events:
            if ev.status != "Pending":
                continue  # DownloadBundle ran in prepare
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled()
            ok = self._run_one(ev)
            if not ok:
                return False
            if ev.name == "ValidateService" and not self._health_gate():
                return False  # the gate runs right after ValidateService, before traffic is allowed back
        if "ValidateService" not in self._event_names():
            return self._health_gate()
        return True

    def _run_one(self, ev: EventResult) -> bool:
        name = ev.name
        if name == "Install":
            return self._install(ev)
        if name in lifecycle.AGENT_EVENTS:  # BlockTraffic/AllowTraffic: no load balancer on a local host
            self._end(self._start(ev), SKIPPED)
            return True
        from_previous = name in lifecycle.PREVIOUS_REVISION_EVENTS
        spec, root = (self.previous_spec, self.previous_root) if from_previous else (
            self.prepared.spec if self.prepared else None, self.prepared.revision_root if self.prepared else None)
        hooks = spec.hooks.get(name, ()) if spec is not None else ()
        ev.scripts_from = "previous" if from_previous else "current"
        if not hooks or root is None:
            self._end(self._start(ev), SKIPPED)
            return True
        self._start(ev)
        from agent.hooks.runner import Script

        scripts = [
            Script(location=h.location, path=root / h.location.lstrip("/"), timeout=float(h.timeout), runas=h.runas)
            for h in hooks
        ]
        outcome = self._run_scripts(name, scripts, root)
        self.report.warnings.extend(outcome.warnings)
        if outcome.ok:
            self._end(ev, SUCCEEDED)
            return True
        if outcome.diagnostics and outcome.diagnostics.error_name == "AgentStopping":
            self._end(ev, FAILED, outcome.diagnostics)
            raise Cancelled()
        if from_previous and self.req.ignore_application_stop_failures:
            self.report.warnings.append(f"{name} failed and was ignored (ignore_application_stop_failures)")
            self._end(ev, SUCCEEDED, outcome.diagnostics)
            return True
        self._end(ev, FAILED, outcome.diagnostics)
        self.auto_rollback_wanted = name == "ValidateService"
        return False

    def _run_scripts(self, event: str, scripts: list[Script], root: Path) -> EventOutcome:
        from agent.hooks.runner import ScriptLog, hook_environment, run_event

        env = hook_environment(self.settings.base_env if self.settings.base_env is not None else os.environ,
                               self._hook_env(event, root))

        def spawned(pid: int) -> None:
            self.store.mark_event(self.req.application, self.req.deployment_group, event, pgid=pid)

        with ScriptLog(self.dep_paths.scripts_log, on_line=self.engine._on_line) as script_log:
            return run_event(
                event,
                scripts,
                cwd=root,
                env=env,
                log=script_log,
                kill_grace=self.settings.hook_kill_grace,
                output_grace=self.settings.hook_output_grace,
                cancel=self.cancel,
                on_spawn=spawned,
            )

    def _hook_env(self, event: str, script_root: Path) -> dict[str, str]:
        req = self.req
        env = {
            "LIFECYCLE_EVENT": event,
            "DEPLOYMENT_ID": req.deployment_id,
            "APPLICATION_NAME": req.application,
            "DEPLOYMENT_GROUP_NAME": req.deployment_group,
            "DEPLOYMENT_GROUP_ID": f"{req.application}/{req.deployment_group}",
            "BERTH_SCRIPT_REVISION_ROOT": str(script_root),
            "BERTH_DEPLOYMENT_ROOT": str(self.dep_paths.dir),
        }
        if self.prepared is not None:
            env.update(self.prepared.bundle_env)
            env["BERTH_REVISION_ROOT"] = str(self.prepared.revision_root)
        if self.previous_root is not None:
            env["BERTH_PREVIOUS_REVISION_ROOT"] = str(self.previous_root)
            env["BERTH_PREVIOUS_DEPLOYMENT_ID"] = str(self.previous_id)
        return env

    def _install(self, ev: EventResult) -> bool:
        assert self.prepared is not None
        self._start(ev)
        # planned against this manifest in prepare; released once the install has used it
        previous, self.manifest_before = self.manifest_before, None
        try:
            result = execute_install(self.prepared.plan, previous, tool_path=self.settings.tool_path)
        except PartialInstall as exc:  # some files were put in place: record them so the next install owns them
            doc = exc.manifest.to_dict()
            doc["deployment_id"] = self.req.deployment_id
            self.store.save_manifest(self.req.application, self.req.deployment_group, doc)
            self._end(ev, FAILED, _diag(exc))
            return False
        except BerthError as exc:
            self._end(ev, FAILED, _diag(exc))
            return False
        doc = result.manifest.to_dict()
        doc["deployment_id"] = self.req.deployment_id
        self.store.save_manifest(self.req.application, self.req.deployment_group, doc)
        self.report.warnings.extend(result.warnings)
        self.report.extra["install"] = {
            "written": result.written,
            "unchanged": result.unchanged,
            "removed": result.removed,
        }
        self._end(ev, SUCCEEDED)
        return True

    def _health_gate(self) -> bool:
        """berth's own health check (appspec ``berth: health_check``) after ValidateService."""
        spec = self.prepared.spec if self.prepared else None
        if spec is None or spec.berth.health_check is None:
            return True
        from agent.engine.health import check_health

        ev = EventResult(name=HEALTH_CHECK_EVENT, scripts_from=None)
        names = self._event_names()
        at = names.index("ValidateService") + 1 if "ValidateService" in names else len(names)
        self.report.events.insert(at, ev)
        self._start(ev)
        problem = check_health(spec.berth.health_check, cancel=self.cancel)
        if problem is None:
            self._end(ev, SUCCEEDED)
            return True
        self._end(ev, FAILED, Diagnostics(ErrorCode.UNKNOWN_ERROR, "HealthCheckFailed", problem))
        self.auto_rollback_wanted = True
        return False

    def auto_rollback_target(self) -> str | None:
        """The deployment to restore when ValidateService or the health check failed and auto_rollback is on."""
        spec = self.prepared.spec if self.prepared else None
        if not self.auto_rollback_wanted or spec is None or not spec.berth.auto_rollback:
            return None
        target = self.group.record(self.previous_id) if self.previous_id else None
        if target is None or self.req.restores is not None:
            return None  # nothing to go back to, or this already is a rollback
        return target.deployment_id

    # -------------------------------------------------------------------------------------------- helpers
    def _event_names(self) -> list[str]:
        return [ev.name for ev in self.report.events]

    def _start(self, ev: EventResult) -> EventResult:
        ev.status = IN_PROGRESS
        ev.started_at = utc_now()
        ev.diagnostics = None
        setattr(ev, "_t0", time.monotonic())  # noqa: B010 - private timing, never serialised
        self.store.mark_event(self.req.application, self.req.deployment_group, ev.name)
        self._publish()
        return ev

    def _end(self, ev: EventResult, status: str, diagnostics: Diagnostics | None = None) -> None:
        t0 = getattr(ev, "_t0", None)
        ev.status = status
        ev.ended_at = utc_now()
        ev.duration_ms = int((time.monotonic() - t0) * 1000) if t0 is not None else 0
        ev.diagnostics = diagnostics
        self._publish()

    def _fail_current(self, diagnostics: Diagnostics) -> None:
        for ev in self.report.events:
            if ev.status == IN_PROGRESS:
                self._end(ev, FAILED, diagnostics)

    def _finish(self, status: str) -> None:
        for ev in self.report.events:
            if ev.status in ("Pending", IN_PROGRESS):
                ev.status = SKIPPED
        self.report.status = status
        self.report.ended_at = utc_now()
        rollback_to = self.auto_rollback_target() if status == FAILED else None
        if rollback_to is not None:
            # Watchers must not take this for the final word: the rollback's events are attached next.
            self.report.status = IN_PROGRESS
            self.report.extra["rolling_back_to"] = rollback_to
        self._record(status)
        if status == SUCCEEDED:
            self.group.last_successful = self.req.deployment_id
        self.store.save_group(self.group)
        self._publish()
        removed = self.store.retain(self.req.application, self.req.deployment_group,
                                    self.settings.max_revisions, keep=[self.req.deployment_id])
        if removed:
            log.info("retention removed deployments %s", ", ".join(removed))

    def _record(self, status: str) -> None:
        """Create or update this deployment's record in the group's history."""
        rec = self.group.record(self.req.deployment_id)
        if rec is None:
            rec = DeploymentRecord(
                deployment_id=self.req.deployment_id,
                status=status,
                started_at=self.report.started_at,
                ended_at=None,
                revision=self.req.revision.to_dict(),
                bundle_type=self.req.revision.bundle_type,
                appspec_filename=self.req.appspec_filename,
                rollback_of=self.req.stop_scripts_from if self.req.restores else None,
            )
            self.group.history.append(rec)
        rec.status = status
        rec.ended_at = self.report.ended_at
        if self.prepared is not None:
            rec.appspec_filename = self.prepared.appspec.path.name
        self.group.most_recent = self.req.deployment_id
        self.store.save_group(self.group)

    def publish(self) -> None:
        self._publish()

    def _publish(self) -> None:
        doc = self.report.to_dict()
        self.store.write_report(self.req.application, self.req.deployment_group, self.req.deployment_id, doc)
        self.engine.notify(self.report)


def _diag(exc: BerthError) -> Diagnostics:
    return Diagnostics(error_code=int(exc.code), error_name=exc.reason, message=str(exc))
