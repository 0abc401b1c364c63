"""``deploy-local --plan`` and plan-only commands: what a deployment would do, changing nothing on the host.

The revision is fetched and unpacked into a temporary folder that is removed afterwards; the appspec is validated
and the install is planned against the host exactly as a real deployment would, but every problem is collected
instead of stopping at the first.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from agent.engine.deployment import Engine
from agent.engine.prepare import fetch_and_unpack, resolve_file_exists_behavior
from agent.engine.request import DeploymentRequest
from agent.engine.revision import check_file, find_appspec, load_appspec
from agent.errors import AppSpecInvalid, BerthError
from agent.install.manifest import Manifest
from agent.install.planner import plan_install
from agent.model import lifecycle
from agent.model.appspec import AppSpec
from agent.model.revision import LocalRevision


def plan_deployment(engine: Engine, request: DeploymentRequest) -> dict[str, Any]:
    """Return the plan as data (see docs/plan-verify-rollback.md); ``would_succeed`` tells the verdict."""
    store = engine.store
    app, group = request.application, request.deployment_group
    problems: list[dict[str, str]] = []
    warnings: list[str] = []
    state = store.load_group(app, group)
    manifest_doc = store.load_manifest(app, group)
    previous_manifest = Manifest.from_dict(manifest_doc) if manifest_doc else None
    stop_from = request.stop_scripts_from or state.last_successful
    result: dict[str, Any] = {
        "kind": "plan",
        "deployment_id": request.deployment_id,
        "application": app,
        "deployment_group": group,
        "revision": request.revision.to_dict(),
    }
    try:
        events = lifecycle.resolve_events(list(request.events) if request.events else None,
                                          with_traffic=request.with_traffic)
    except BerthError as exc:
        events = []
        problems.append({"reason": exc.reason, "message": str(exc)})
    scratch = Path(tempfile.mkdtemp(prefix="berth-plan-"))
    spec: AppSpec | None = None
    install: dict[str, Any] | None = None
    try:
        source = request.revision
        if request.retained_root is not None:
            source = LocalRevision(path=str(request.retained_root), bundle_type="directory")
        root: Path | None = None
        try:
            root, _env, details = fetch_and_unpack(
                source, engine.fetchers, download_dir=scratch / "download", revision_dir=scratch / "revision",
                appspec_filename=request.appspec_filename, limits=engine.settings.limits,
            )
            result["revision"] = {**result["revision"], **dict(details)}
        except BerthError as exc:
            problems.append({"reason": exc.reason, "message": str(exc)})
        if root is not None:
            spec = _appspec(root, request, events, problems, warnings)
        if spec is not None and root is not None:
            behavior = resolve_file_exists_behavior(spec, request.file_exists_behavior)
            result["file_exists_behavior"] = behavior
            try:
                plan = plan_install(spec, root, previous_manifest, behavior, tool_path=engine.settings.tool_path)
                install = plan.to_dict()
                # the appspec check already named the appspec paths it found wrong (a missing source...): the
                # planner's own AppSpecInvalid line for the same path would only repeat it
                reported = {p["message"].split(": ", 1)[0] for p in problems if p["reason"] == "AppSpecInvalid"}
                problems += [{"reason": reason, "message": message} for reason, message in plan.problems
                             if not (reason == "AppSpecInvalid" and message.split(": ", 1)[0] in reported)]
            except BerthError as exc:
                problems.append({"reason": exc.reason, "message": str(exc)})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["install"] = install
    result["events"] = _event_plan(engine, request, events, spec, stop_from=stop_from, warnings=warnings)
    check = spec.berth.health_check if spec is not None else None
    result["health_check"] = None if check is None else {
        "url": check.url, "expected_status": check.expected_status, "body_contains": check.body_contains,
        "timeout": check.timeout, "retries": check.retries, "interval": check.interval,
    }
    result["auto_rollback"] = bool(spec is not None and spec.berth.auto_rollback)
    result["problems"] = problems
    result["warnings"] = warnings
    result["would_succeed"] = not problems
    return result


def _appspec(
    root: Path,
    request: DeploymentRequest,
    events: list[str],
    problems: list[dict[str, str]],
    warnings: list[str],
) -> AppSpec | None:
    """Validate against the revision; when only revision checks fail, still plan with the parsed appspec."""
    custom = lifecycle.custom_events(events)
    try:
        loaded = load_appspec(root, request.appspec_filename, custom_events=custom)
        warnings += [f"{w.path}: {w.message}" for w in loaded.warnings]
        return loaded.spec
    except AppSpecInvalid as exc:
        problems += [{"reason": exc.reason, "message": f"{p}: {m}" if p else m} for p, m in exc.problems]
    try:
        return check_file(find_appspec(root, request.appspec_filename), custom_events=custom).spec
    except BerthError:
        return None


def _event_plan(
    engine: Engine,
    request: DeploymentRequest,
    events: list[str],
    spec: AppSpec | None,
    *,
    stop_from: str | None,
    warnings: list[str],
) -> list[dict[str, Any]]:
    """Each event, whether it would run, and whose scripts (the previous revision's stop scripts are named).

    Appends to ``warnings`` what the deployment itself would warn about the previous revision's stop scripts.
    """
    store = engine.store
    previous_spec: AppSpec | None = None
    if stop_from:
        root = store.deployment_revision_dir(request.application, request.deployment_group, stop_from)
        record = store.load_group(request.application, request.deployment_group).record(stop_from)
        if root is None:
            warnings.append(f"the last successful deployment {stop_from} is no longer on this host; its stop "
                            "scripts cannot run")
        else:
            try:
                previous_spec = load_appspec(root, record.appspec_filename if record else "appspec.yml").spec
            except BerthError as exc:
                warnings.append(f"the previous revision's appspec cannot be used ({exc}); stop hooks skipped")
    out: list[dict[str, Any]] = []
    for name in events:
        if name in lifecycle.AGENT_EVENTS:
            out.append({"name": name, "run_by": "berth", "scripts": [], "scripts_from": None})
            continue
        from_previous = name in lifecycle.PREVIOUS_REVISION_EVENTS
        source_spec = previous_spec if from_previous else spec
        hooks = source_spec.hooks.get(name, ()) if source_spec else ()
        out.append({
            "name": name,
            "run_by": "scripts" if hooks else "skipped",
            "scripts_from": ("previous" if from_previous else "current") if hooks else None,
            "revision": (stop_from if from_previous else request.deployment_id) if hooks else None,
            "scripts": [{"location": h.location, "timeout": h.timeout, "runas": h.runas} for h in hooks],
        })
    return out
