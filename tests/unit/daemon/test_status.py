"""The status file: atomic rewrite, round trip, stale and foreign files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.daemon.status import daemon_alive, read_status, write_status
from agent.errors import StateError


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    assert read_status(path) is None
    status = {"state": "deploying", "deployment_id": "d-1", "event": "Install", "version": "0.1.0", "pid": 5}
    write_status(path, status)
    assert read_status(path) == status
    write_status(path, {**status, "state": "idle", "event": None})
    assert read_status(path) == {**status, "state": "idle", "event": None}
    assert os.listdir(tmp_path) == ["status.json"]  # no temp file left behind
    assert path.stat().st_mode & 0o777 == 0o644


def test_foreign_and_newer_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    path.write_text("{")
    with pytest.raises(StateError, match="not valid JSON"):
        read_status(path)
    path.write_text(json.dumps({"kind": "something-else"}))
    with pytest.raises(StateError, match="not a berth agent-status file"):
        read_status(path)
    path.write_text(json.dumps({"kind": "agent-status", "schema_version": 99}))
    with pytest.raises(StateError, match="understands up to 1"):
        read_status(path)


def test_daemon_alive() -> None:
    assert daemon_alive({"pid": os.getpid()})
    assert not daemon_alive({"pid": None})
    assert not daemon_alive({"pid": 2**22 + 12345})  # above Linux's pid_max default
