"""max_revisions: old deployment folders go, the last successful and the running one stay."""

from __future__ import annotations

import os

import pytest

from agent.errors import UsageError
from agent.model.report import utc_now
from agent.paths import Paths
from agent.state import DeploymentRecord, StateStore
from agent.state.retention import plan_removals

from .conftest import APP, GROUP


def _deploy(store: StateStore, dep: str, status: str, max_revisions: int) -> list[str]:
    """What the engine does for one deployment, as far as state goes; returns what retention removed."""
    with store.lock(APP, GROUP, timeout=0):
        store.begin(APP, GROUP, dep)
        state = store.load_group(APP, GROUP)
        state.start(DeploymentRecord(dep, "InProgress", utc_now(), None, {"type": "local", "path": f"/src/{dep}"}))
        store.save_group(state)
        rev = store.paths.group(APP, GROUP).deployment(dep).revision_dir
        rev.mkdir(parents=True)
        (rev / "appspec.yml").write_text("version: 0.0\nos: linux\n")
        store.write_report(APP, GROUP, dep, {"deployment_id": dep, "status": status})
        state.finish(dep, status, utc_now())
        store.save_group(state)
        removed = store.retain(APP, GROUP, max_revisions, keep=[dep])
        store.end(APP, GROUP)
    return removed


def _folders(paths: Paths) -> set[str]:
    return {p.name for p in paths.group(APP, GROUP).deployments_dir.iterdir()}


def test_keeps_the_newest_and_the_last_successful_even_when_older(store: StateStore, paths: Paths) -> None:
    assert _deploy(store, "d-1", "Succeeded", 2) == []
    assert _deploy(store, "d-2", "Failed", 2) == []
    assert _deploy(store, "d-3", "Failed", 2) == ["d-2"]
    assert _deploy(store, "d-4", "Failed", 2) == ["d-3"]
    assert _folders(paths) == {"d-1", "d-4"}
    assert store.deployment_revision_dir(APP, GROUP, "d-1") is not None  # still there to roll back to
    assert store.deployment_revision_dir(APP, GROUP, "d-3") is None
    assert store.read_report(APP, GROUP, "d-3") is None
    # The history remembers every deployment; only the folders go.
    assert [r.deployment_id for r in store.load_group(APP, GROUP).history] == ["d-1", "d-2", "d-3", "d-4"]

    assert _deploy(store, "d-5", "Succeeded", 2) == ["d-1"]  # a newer success frees the old one
    assert _folders(paths) == {"d-4", "d-5"}


def test_max_revisions_one_keeps_only_the_running_and_last_successful(store: StateStore, paths: Paths) -> None:
    _deploy(store, "d-1", "Succeeded", 1)
    _deploy(store, "d-2", "Failed", 1)
    assert _folders(paths) == {"d-1", "d-2"}
    _deploy(store, "d-3", "Succeeded", 1)
    assert _folders(paths) == {"d-3"}


def test_the_deployment_in_flight_is_never_removed(store: StateStore, paths: Paths) -> None:
    for dep in ("d-1", "d-2", "d-3"):
        _deploy(store, dep, "Succeeded", 5)
    running = paths.group(APP, GROUP).deployment("d-9").revision_dir
    running.mkdir(parents=True)  # unpacked, not yet recorded in group.json
    store.begin(APP, GROUP, "d-9")
    assert store.retain(APP, GROUP, 1) == ["d-2", "d-1"]
    assert _folders(paths) == {"d-3", "d-9"}


def test_folders_no_record_names_go_first(store: StateStore, paths: Paths) -> None:
    for dep in ("d-1", "d-2"):
        _deploy(store, dep, "Failed", 5)
    stray = paths.group(APP, GROUP).deployments_dir / "d-stray"
    (stray / "revision").mkdir(parents=True)
    os.utime(stray, (2_000_000_000, 2_000_000_000))  # even with a newer mtime
    assert store.retain(APP, GROUP, 2) == ["d-stray"]
    assert _folders(paths) == {"d-1", "d-2"}


def test_a_deletion_cut_short_is_finished_and_never_looks_like_a_revision(store: StateStore, paths: Paths) -> None:
    _deploy(store, "d-1", "Succeeded", 5)
    deployments = paths.group(APP, GROUP).deployments_dir
    # What an agent killed in the middle of deleting d-0 leaves: a renamed, half-deleted tree.
    half = deployments / ".trash-d-0.999"
    (half / "revision" / "lib").mkdir(parents=True)
    (half / "revision" / "lib" / "x.py").write_text("")
    assert store.deployment_revision_dir(APP, GROUP, "d-0") is None
    assert store.retain(APP, GROUP, 5) == []
    assert _folders(paths) == {"d-1"}


def test_keep_protects_more_folders(store: StateStore, paths: Paths) -> None:
    for dep, status in (("d-1", "Succeeded"), ("d-2", "Succeeded"), ("d-3", "Failed"), ("d-4", "Failed")):
        _deploy(store, dep, status, 5)
    # d-1 (kept) and d-2 (last successful) fill both places.
    assert store.retain(APP, GROUP, 2, keep=["d-1"]) == ["d-4", "d-3"]
    assert _folders(paths) == {"d-1", "d-2"}
    assert store.retain(APP, GROUP, 1, keep=["d-1"]) == []  # protected folders may exceed the limit


def test_retention_of_an_empty_group_removes_nothing(store: StateStore) -> None:
    assert store.retain(APP, GROUP, 1) == []


@pytest.mark.parametrize("bad", [0, -3])
def test_max_revisions_below_one_is_refused(store: StateStore, bad: int) -> None:
    with pytest.raises(UsageError, match="at least 1"):
        store.retain(APP, GROUP, bad)


def test_plan_counts_protected_folders_towards_the_limit() -> None:
    ordered = ["d-5", "d-4", "d-3", "d-2", "d-1"]
    assert plan_removals(ordered, 3, {"d-1"}) == ["d-3", "d-2"]
    assert plan_removals(ordered, 1, {"d-1", "d-4"}) == ["d-5", "d-3", "d-2"]
    assert plan_removals(ordered, 10, set()) == []


def test_files_outside_deployment_folders_are_left_alone(store: StateStore, paths: Paths) -> None:
    _deploy(store, "d-1", "Failed", 1)
    _deploy(store, "d-2", "Failed", 1)
    gp = paths.group(APP, GROUP)
    names = {p.name for p in gp.dir.iterdir()}
    assert {"group.json", "lock", "deployments"} <= names
    assert _folders(paths) == {"d-2"}
