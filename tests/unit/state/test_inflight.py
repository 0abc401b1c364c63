"""The in-flight marker: written at start, updated per event, and found after the agent that wrote it died."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from agent.errors import StateError
from agent.fsutil import write_state
from agent.paths import Paths
from agent.state import StateStore
from agent.state.procinfo import start_ticks

from .conftest import APP, GROUP


def _marker_doc(paths: Paths) -> dict[str, object]:
    doc: dict[str, object] = json.loads(paths.group(APP, GROUP).inflight_file.read_text())
    return doc


def _rewrite_marker(paths: Paths, **changes: object) -> None:
    doc = _marker_doc(paths)
    doc.update(changes)
    write_state(paths.group(APP, GROUP).inflight_file, "inflight", 1, {k: v for k, v in doc.items()
                                                                        if k not in {"kind", "version"}})


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_marker_follows_the_deployment_and_is_removed_at_the_end(store: StateStore, paths: Paths) -> None:
    store.begin(APP, GROUP, "d-1", command_id="cmd-7")
    doc = _marker_doc(paths)
    assert (doc["kind"], doc["version"]) == ("inflight", 1)
    assert doc["deployment_id"] == "d-1" and doc["command_id"] == "cmd-7"
    assert doc["pid"] == os.getpid() and doc["event"] is None and doc["started_at"]

    store.mark_event(APP, GROUP, "BeforeInstall", pgid=os.getpid())
    doc = _marker_doc(paths)
    assert (doc["event"], doc["pgid"]) == ("BeforeInstall", os.getpid())
    store.mark_event(APP, GROUP, "Install")
    doc = _marker_doc(paths)
    assert (doc["event"], doc["pgid"], doc["deployment_id"]) == ("Install", None, "d-1")

    store.end(APP, GROUP)
    assert not paths.group(APP, GROUP).inflight_file.exists()
    store.end(APP, GROUP)  # ending twice is harmless


def test_another_store_instance_can_update_the_marker(store: StateStore, paths: Paths) -> None:
    store.begin(APP, GROUP, "d-1")
    StateStore(paths).mark_event(APP, GROUP, "AfterInstall")
    assert _marker_doc(paths)["event"] == "AfterInstall"


def test_marking_an_event_with_no_deployment_in_flight_is_an_error(store: StateStore) -> None:
    with pytest.raises(StateError, match=r"no deployment of shop/prod is in flight"):
        store.mark_event(APP, GROUP, "Install")


def test_a_live_deployment_is_not_interrupted(store: StateStore) -> None:
    store.begin(APP, GROUP, "d-1")  # held by this very process
    assert store.find_interrupted() == []


def test_a_marker_whose_agent_died_is_found(store: StateStore, paths: Paths) -> None:
    store.begin(APP, GROUP, "d-1", command_id="cmd-1")
    store.mark_event(APP, GROUP, "ApplicationStart", pgid=4321)
    dead = _dead_pid()
    _rewrite_marker(paths, pid=dead, pid_start=12345)

    fresh = StateStore(paths)  # what a restarted agent sees
    [marker] = fresh.find_interrupted()
    assert (marker.application, marker.deployment_group, marker.deployment_id) == (APP, GROUP, "d-1")
    assert (marker.event, marker.pgid, marker.pid, marker.command_id) == ("ApplicationStart", 4321, dead, "cmd-1")
    assert marker.started_at


def test_a_marker_without_start_time_falls_back_to_pid_existence(store: StateStore, paths: Paths) -> None:
    store.begin(APP, GROUP, "d-1")
    _rewrite_marker(paths, pid=_dead_pid(), pid_start=None, boot_id=None)
    assert [m.deployment_id for m in store.find_interrupted()] == ["d-1"]
    _rewrite_marker(paths, pid=os.getpid())
    assert store.find_interrupted() == []


def test_a_reused_pid_does_not_keep_a_marker_alive(store: StateStore, paths: Paths) -> None:
    store.begin(APP, GROUP, "d-1")
    # Same pid as a live process (this one) but another start time: the agent that wrote it is gone.
    own = start_ticks(os.getpid())
    assert own is not None
    _rewrite_marker(paths, pid_start=own - 1)
    assert [m.deployment_id for m in store.find_interrupted()] == ["d-1"]


def test_a_marker_from_an_earlier_boot_is_interrupted(store: StateStore, paths: Paths) -> None:
    store.begin(APP, GROUP, "d-1")
    _rewrite_marker(paths, boot_id="00000000-0000-0000-0000-000000000000")
    assert [m.deployment_id for m in store.find_interrupted()] == ["d-1"]


def test_markers_of_every_group_are_searched(store: StateStore, paths: Paths) -> None:
    for group in ("prod", "beta"):
        store.begin(APP, group, f"d-{group}")
    doc_path = paths.group(APP, "beta").inflight_file
    doc = json.loads(doc_path.read_text())
    doc["pid"] = _dead_pid()
    doc_path.write_text(json.dumps(doc))
    assert [(m.deployment_group, m.deployment_id) for m in store.find_interrupted()] == [("beta", "d-beta")]


def test_begin_replaces_a_stale_marker(store: StateStore, paths: Paths) -> None:
    store.begin(APP, GROUP, "d-1")
    _rewrite_marker(paths, pid=_dead_pid())
    store.begin(APP, GROUP, "d-2")
    assert _marker_doc(paths)["deployment_id"] == "d-2"
    assert store.find_interrupted() == []


def test_a_damaged_marker_is_named(store: StateStore, paths: Paths) -> None:
    path = paths.group(APP, GROUP).inflight_file
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"kind": "inflight", "version": 1, "deployment_id": "d-1", "pid": "twelve"}))
    with pytest.raises(StateError) as err:
        store.find_interrupted()
    assert str(path) in str(err.value) and "pid" in str(err.value)


def test_a_hook_process_group_is_offered_only_while_it_is_the_same_group(store: StateStore, paths: Paths) -> None:
    script = subprocess.Popen(["sleep", "60"], start_new_session=True)  # a hook script in its own group
    try:
        store.begin(APP, GROUP, "d-1")
        store.mark_event(APP, GROUP, "ApplicationStart", pgid=script.pid)
        _rewrite_marker(paths, pid=_dead_pid())
        [marker] = store.find_interrupted()
        assert store.orphaned_hook_group(marker) == script.pid

        _rewrite_marker(paths, pgid_start=(marker.pgid_start or 0) - 1)  # the id now names someone else
        [other] = store.find_interrupted()
        assert store.orphaned_hook_group(other) is None
    finally:
        script.kill()
        script.wait()
    assert store.orphaned_hook_group(marker) is None  # the group is gone
