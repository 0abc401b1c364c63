"""Drift check of one deployment group against its install manifest (``berth verify`` and the daemon)."""

from __future__ import annotations

from typing import Any

from agent.errors import UsageError
from agent.install.drift import check_drift
from agent.install.manifest import Manifest
from agent.state.store import StateStore


def verify_group(store: StateStore, application: str, group: str, *, full: bool = False) -> dict[str, Any]:
    """The drift report of one deployment group; :class:`UsageError` when berth never installed it here."""
    doc = store.load_manifest(application, group)
    if doc is None:
        raise UsageError(f"nothing was installed by berth for {application}/{group} under {store.paths.root}")
    result = check_drift(Manifest.from_dict(doc), full=full).to_dict()
    result["deployment_id"] = doc.get("deployment_id")
    result["application"] = application
    result["deployment_group"] = group
    return result


def verify_all(store: StateStore) -> dict[str, Any]:
    """Fast drift check of every group with an install; a summary the daemon puts in its status and heartbeat."""
    groups: dict[str, Any] = {}
    clean = True
    for application, group in store.groups():
        try:
            result = verify_group(store, application, group)
        except UsageError:
            continue
        clean = clean and bool(result["clean"])
        groups[f"{application}/{group}"] = {"clean": result["clean"], "summary": result["summary"]}
    return {"clean": clean, "groups": groups,
            "summary": "clean" if clean else "drift in " + ", ".join(k for k, v in groups.items() if not v["clean"])}
