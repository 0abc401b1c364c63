"""Instant local rollback: redeploy a retained revision folder, with no download (issue: plan/verify/rollback)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.engine.request import DeploymentRequest
from agent.errors import RollbackUnavailable
from agent.model.report import SUCCEEDED
from agent.model.revision import revision_from_dict
from agent.state.store import StateStore


def installed_deployment(store: StateStore, application: str, group: str) -> str | None:
    """The deployment whose files are installed now (from the install manifest), else the most recent one."""
    manifest = store.load_manifest(application, group) or {}
    installed = manifest.get("deployment_id")
    return str(installed) if installed else store.load_group(application, group).most_recent


def rollback_request(
    store: StateStore,
    application: str,
    group: str,
    *,
    deployment_id: str,
    to: str | None = None,
    current: str | None = None,
    report_extra: Mapping[str, Any],
) -> DeploymentRequest:
    """Build the deployment that puts back ``to`` (default: the last successful one before the current)."""
    state = store.load_group(application, group)
    current = current or installed_deployment(store, application, group)
    if to is None:
        candidates = [r for r in state.history if r.status == SUCCEEDED and r.deployment_id != current]
        if not candidates:
            raise RollbackUnavailable(
                f"{application}/{group} has no successful deployment before {current or 'the current one'} to roll "
                "back to"
            )
        to = candidates[-1].deployment_id
    record = state.record(to)
    if record is None:
        raise RollbackUnavailable(f"deployment {to} is not known in {application}/{group}")
    root = store.deployment_revision_dir(application, group, to)
    if root is None:
        raise RollbackUnavailable(
            f"deployment {to}'s revision is no longer on this host (retention keeps max_revisions deployments); "
            "deploy it again from its source instead"
        )
    return DeploymentRequest(
        deployment_id=deployment_id,
        application=application,
        deployment_group=group,
        revision=revision_from_dict(record.revision),
        appspec_filename=record.appspec_filename,
        restores=to,
        retained_root=root,
        stop_scripts_from=current,
        report_extra={**report_extra, "rollback_of": current},
    )
