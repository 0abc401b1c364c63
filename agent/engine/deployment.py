"""Run ONE deployment on this host: prepare, then the lifecycle events, then the report (SPEC §2-§5).

The same engine serves ``berth deploy-local``, ``berth rollback`` and the daemon. It talks to the fetchers, the
hook runner, the installer and the state store; callers choose the concrete fetchers and watch progress through
``on_update``, which receives the report after every change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from agent.engine.request import DeploymentRequest, EngineSettings, LineCallback, UpdateCallback
from agent.engine.run import DeploymentRun
from agent.errors import BerthError
from agent.fetchers.base import Fetcher
from agent.model import lifecycle
from agent.model.report import FAILED, Report
from agent.state.store import StateStore

log = logging.getLogger(__name__)

__all__ = ["DeploymentRequest", "Engine", "EngineSettings", "LineCallback", "UpdateCallback"]


class Engine:
    """Executes deployments. One instance may serve many deployments (the daemon keeps one)."""

    def __init__(
        self,
        settings: EngineSettings,
        fetchers: Mapping[str, Fetcher],
        *,
        on_update: UpdateCallback | None = None,
        on_line: LineCallback | None = None,
    ) -> None:
        self.settings = settings
        self.fetchers = fetchers
        self.store = StateStore(settings.paths)
        self._on_update = on_update
        self._on_line = on_line

    # ----------------------------------------------------------------------------------------------- public
    def deploy(self, request: DeploymentRequest, *, cancel: threading.Event | None = None) -> Report:
        """Run the whole deployment and return its final report. Failures are reported, not raised.

        Raises only :class:`~agent.errors.DeploymentLocked` (another deployment of the group holds the lock past
        the lock timeout) and :class:`~agent.errors.UsageError` for impossible requests (bad event list).
        """
        events = lifecycle.resolve_events(list(request.events) if request.events else None,
                                          with_traffic=request.with_traffic)
        with self.store.lock(request.application, request.deployment_group, timeout=self.settings.lock_timeout,
                             cancel=cancel.is_set if cancel is not None else None):
            run = DeploymentRun(self, request, events, cancel)
            report = run.execute()
            target = run.auto_rollback_target()
            if target is not None:
                from agent.engine.rollback import rollback_request

                try:
                    rb_request = rollback_request(
                        self.store, request.application, request.deployment_group,
                        deployment_id=f"{request.deployment_id}-rollback", to=target,
                        current=request.deployment_id, report_extra=request.report_extra,
                    )
                except BerthError as exc:  # the failed deployment's report must survive a rollback that cannot run
                    report.extra["rollback_error"] = str(exc)
                else:
                    rb_events = lifecycle.resolve_events(None, with_traffic=request.with_traffic)
                    rb_report = DeploymentRun(self, rb_request, rb_events, cancel).execute()
                    report.extra["rolled_back_to"] = target
                    report.extra["rollback"] = rb_report.to_dict()
                report.extra.pop("rolling_back_to", None)
                report.status = FAILED
                run.publish()
            return report

    def rollback(
        self,
        application: str,
        deployment_group: str,
        *,
        deployment_id: str,
        to: str | None = None,
        report_extra: Mapping[str, Any] | None = None,
        cancel: threading.Event | None = None,
    ) -> Report:
        """Redeploy a retained earlier revision through the full lifecycle, with no download.

        Default target: the last successful deployment before the one installed now. Raises
        :class:`~agent.errors.RollbackUnavailable` when there is none or retention removed it.
        """
        from agent.engine.rollback import rollback_request

        with self.store.lock(application, deployment_group, timeout=self.settings.lock_timeout,
                             cancel=cancel.is_set if cancel is not None else None):
            request = rollback_request(
                self.store, application, deployment_group, deployment_id=deployment_id, to=to,
                report_extra=report_extra or {},
            )
            events = lifecycle.resolve_events(None)
            return DeploymentRun(self, request, events, cancel).execute()

    def notify(self, report: Report) -> None:
        if self._on_update is not None:
            self._on_update(report)
