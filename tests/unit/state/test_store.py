"""Group state, manifest, deployment and report files: round trips, crashes, newer versions, damaged files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.errors import StateError, UsageError
from agent.paths import Paths
from agent.state import DeploymentInfo, DeploymentRecord, GroupState, StateStore
from agent.state.records import HISTORY_LIMIT

from .conftest import APP, GROUP


def _record(dep: str, status: str = "Succeeded") -> DeploymentRecord:
    return DeploymentRecord(
        deployment_id=dep,
        status=status,
        started_at="2024-05-01T10:00:00.000Z",
        ended_at="2024-05-01T10:01:00.000Z",
        revision={"type": "s3", "bucket": "b", "key": f"{dep}.tgz", "bundle_type": "tgz"},
        bundle_type="tgz",
        appspec_filename="appspec.yaml",
        rollback_of=None,
    )


def test_a_group_that_never_deployed_has_empty_state(store: StateStore) -> None:
    state = store.load_group(APP, GROUP)
    assert (state.application, state.deployment_group) == (APP, GROUP)
    assert state.last_successful is None and state.most_recent is None and state.history == []
    assert store.load_manifest(APP, GROUP) is None
    assert store.read_report(APP, GROUP, "d-1") is None
    assert store.load_deployment(APP, GROUP, "d-1") is None
    assert store.deployment_revision_dir(APP, GROUP, "d-1") is None
    assert store.groups() == []


def test_group_state_round_trips_pointers_and_history(store: StateStore) -> None:
    state = store.load_group(APP, GROUP)
    state.start(_record("d-1", "InProgress"))
    state.finish("d-1", "Succeeded", "2024-05-01T10:02:00.000Z")
    state.start(_record("d-2", "InProgress"))
    state.finish("d-2", "Failed", "2024-05-01T10:03:00.000Z")
    store.save_group(state)

    again = store.load_group(APP, GROUP)
    assert again == state
    assert again.last_successful == "d-1" and again.most_recent == "d-2"
    assert [r.deployment_id for r in again.history] == ["d-1", "d-2"]  # oldest first
    rec = again.record("d-2")
    assert rec is not None and rec.status == "Failed" and rec.appspec_filename == "appspec.yaml"
    assert again.record("d-9") is None
    assert store.groups() == [(APP, GROUP)]


def test_group_file_is_versioned_json_an_operator_can_read(store: StateStore, paths: Paths) -> None:
    state = GroupState(APP, GROUP)
    state.start(_record("d-1"))
    store.save_group(state)
    doc = json.loads(paths.group(APP, GROUP).group_file.read_text())
    assert doc["kind"] == "group" and doc["version"] == 1
    assert doc["most_recent"] == "d-1" and doc["history"][0]["revision"]["key"] == "d-1.tgz"


def test_history_is_bounded_but_keeps_the_last_successful_record(store: StateStore) -> None:
    state = GroupState(APP, GROUP)
    state.start(_record("d-0"))
    state.finish("d-0", "Succeeded", None)
    for i in range(1, HISTORY_LIMIT + 10):
        state.start(_record(f"d-{i}", "Failed"))
    store.save_group(state)

    again = store.load_group(APP, GROUP)
    assert len(again.history) == HISTORY_LIMIT + 1
    assert again.history[0].deployment_id == "d-0"  # old, but the last successful
    assert again.history[-1].deployment_id == f"d-{HISTORY_LIMIT + 9}"
    assert again.record("d-1") is None


def test_manifest_is_stored_as_given(store: StateStore, paths: Paths) -> None:
    manifest = {"deployment_id": "d-1", "entries": [{"path": "/srv/app/a", "type": "file", "sha256": "00"}]}
    store.save_manifest(APP, GROUP, manifest)
    assert store.load_manifest(APP, GROUP) == manifest
    doc = json.loads(paths.group(APP, GROUP).manifest_file.read_text())
    assert (doc["kind"], doc["version"]) == ("manifest", 1)


def test_report_and_deployment_record_round_trip(store: StateStore, paths: Paths) -> None:
    # A report may carry keys of its own named like the envelope's: they must survive.
    report = {"deployment_id": "d-1", "status": "Succeeded", "events": [], "kind": "mine", "version": 7}
    store.write_report(APP, GROUP, "d-1", report)
    assert store.read_report(APP, GROUP, "d-1") == report
    assert paths.group(APP, GROUP).deployment("d-1").report_file.is_file()

    info = DeploymentInfo(_record("d-1"), {"file_exists_behavior": "OVERWRITE"})
    store.save_deployment(APP, GROUP, info)
    assert store.load_deployment(APP, GROUP, "d-1") == info


def test_revision_dir_is_reported_only_while_it_exists(store: StateStore, paths: Paths) -> None:
    rev = paths.group(APP, GROUP).deployment("d-1").revision_dir
    rev.mkdir(parents=True)
    assert store.deployment_revision_dir(APP, GROUP, "d-1") == rev
    rev.rmdir()
    assert store.deployment_revision_dir(APP, GROUP, "d-1") is None


def test_unsafe_names_are_refused_before_touching_disk(store: StateStore, paths: Paths) -> None:
    with pytest.raises(UsageError, match="application name"):
        store.load_group("../etc", GROUP)
    with pytest.raises(UsageError, match="deployment id"):
        store.begin(APP, GROUP, "../../x")
    assert not paths.root.exists()


def test_a_temp_file_left_by_a_crashed_write_is_ignored(store: StateStore, paths: Paths) -> None:
    state = GroupState(APP, GROUP)
    state.start(_record("d-1"))
    store.save_group(state)
    gp = paths.group(APP, GROUP)
    # What a writer killed between write and rename leaves: a half-written temp file next to the real one.
    (gp.dir / ".group.json.4242.tmp").write_text('{"kind": "group", "vers')
    (gp.dir / ".inflight.json.4242.tmp").write_text("{")
    (gp.dir / ".manifest.json.4242.tmp").write_text("")

    assert store.load_group(APP, GROUP) == state
    assert store.load_manifest(APP, GROUP) is None
    assert store.find_interrupted() == []
    assert store.groups() == [(APP, GROUP)]
    state.start(_record("d-2"))
    store.save_group(state)
    assert store.load_group(APP, GROUP).most_recent == "d-2"


WRITER = """
import sys
from collections.abc import Callable
from pathlib import Path
from agent.paths import Paths
from agent.state import DeploymentRecord, StateStore
store = StateStore(Paths(Path(sys.argv[1])))
state = store.load_group("shop", "prod")
i = 0
while True:
    i += 1
    state.start(DeploymentRecord(f"d-{i}", "Succeeded", None, None, {"type": "local", "path": "/x" * 200}))
    store.save_group(state)
    if i == 1:
        print("ready", flush=True)
"""


def test_state_is_whole_after_the_writer_is_killed(paths: Paths, berth_env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(paths.root)], stdout=subprocess.PIPE, text=True, env=berth_env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()

    state = StateStore(paths).load_group(APP, GROUP)  # whichever write won, never a torn one
    assert state.most_recent is not None
    assert state.history[-1].deployment_id == state.most_recent


@pytest.mark.parametrize("name", ["group.json", "manifest.json", "inflight.json", "deployments/d-1/report.json"])
def test_a_file_from_a_newer_berth_is_refused_with_upgrade_advice(store: StateStore, paths: Paths, name: str) -> None:
    gp = paths.group(APP, GROUP)
    kind = {"group.json": "group", "manifest.json": "manifest", "inflight.json": "inflight"}.get(name, "report")
    path = gp.dir / name
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"kind": kind, "version": 2, "deployment_id": "d-1", "pid": 1}))
    readers: dict[str, Callable[[], object]] = {
        "group.json": lambda: store.load_group(APP, GROUP),
        "manifest.json": lambda: store.load_manifest(APP, GROUP),
        "inflight.json": store.find_interrupted,
        "deployments/d-1/report.json": lambda: store.read_report(APP, GROUP, "d-1"),
    }
    with pytest.raises(StateError) as err:
        readers[name]()
    assert str(path) in str(err.value)
    assert "upgrade berth" in str(err.value)


@pytest.mark.parametrize("content", ["{not json", "", '{"kind": "group", "version": 1, "history": "oops"}'])
def test_a_damaged_group_file_is_named_with_what_to_do(store: StateStore, paths: Paths, content: str) -> None:
    path = paths.group(APP, GROUP).group_file
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(StateError) as err:
        store.load_group(APP, GROUP)
    message = str(err.value)
    assert str(path) in message
    assert "move it aside" in message
    assert "forgets" in message  # and what moving it aside costs


def test_a_file_of_another_kind_is_refused(store: StateStore, paths: Paths) -> None:
    path = paths.group(APP, GROUP).manifest_file
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"kind": "group", "version": 1}))
    with pytest.raises(StateError, match="is not a berth manifest file"):
        store.load_manifest(APP, GROUP)


def test_a_damaged_deployment_record_names_the_deployment(store: StateStore, paths: Paths) -> None:
    path = paths.group(APP, GROUP).deployment("d-1").deployment_file
    path.parent.mkdir(parents=True)
    record = {"deployment_id": "d-1", "revision": {}}  # no status
    path.write_text(json.dumps({"kind": "deployment", "version": 1, "record": record}))
    with pytest.raises(StateError) as err:
        store.load_deployment(APP, GROUP, "d-1")
    assert str(path) in str(err.value) and "status" in str(err.value) and "rolled back to" in str(err.value)


def test_groups_lists_every_group_and_skips_foreign_entries(store: StateStore, paths: Paths) -> None:
    for app, group in [("shop", "prod"), ("shop", "beta"), ("blog", "prod")]:
        store.save_group(GroupState(app, group))
    (paths.groups_dir / "shop" / ".hidden").mkdir()
    (paths.groups_dir / "README").write_text("not a group")
    assert store.groups() == [("blog", "prod"), ("shop", "beta"), ("shop", "prod")]


def test_a_group_is_readable_by_a_fresh_store(paths: Paths) -> None:
    StateStore(paths).save_manifest(APP, GROUP, {"entries": []})
    assert StateStore(Paths(Path(str(paths.root)))).load_manifest(APP, GROUP) == {"entries": []}
