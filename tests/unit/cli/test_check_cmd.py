"""``berth agent check`` (run_check): configuration, folders, channel and stop timeout, as packages run it."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli.check_cmd import collect_checks, run_check
from tests.conftest import REPO


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "agent.yml"
    path.write_text(f"root: {tmp_path / 'state'}\nlog_dir: {tmp_path / 'logs'}\n{extra}")
    return path


def _by_name(config: Path, host_root: Path, **kw) -> dict[str, tuple[str, str]]:
    return {c.name: (c.status, c.detail) for c in collect_checks(config, host_root=host_root, **kw)}


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        yield srv.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_fresh_host_passes_and_says_folders_are_created_at_start(tmp_path: Path, capsys) -> None:
    assert run_check(_config(tmp_path), json_out=True) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True
    checks = {c["name"]: c for c in doc["checks"]}
    assert {"runtime", "config", "state", "logs", "channel", "systemd"} <= set(checks)
    assert "created when the agent starts" in checks["state"]["detail"]


def test_existing_safe_folders_pass(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir(mode=0o755)
    (tmp_path / "logs").mkdir(mode=0o750)
    checks = _by_name(_config(tmp_path), tmp_path)
    assert checks["state"][0] == "ok" and checks["logs"][0] == "ok"


def test_an_invalid_configuration_fails_loudly_with_every_problem(tmp_path: Path, capsys) -> None:
    config = tmp_path / "agent.yml"
    config.write_text("max_revisions: 0\nshutdown_grace: soon\n")
    assert run_check(config, json_out=False) == 1
    out = capsys.readouterr().out
    assert "FAIL  config" in out and "max_revisions" in out and "shutdown_grace" in out
    assert "1 problem" in out


def test_a_group_writable_state_folder_fails(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state").chmod(0o775)
    status, detail = _by_name(_config(tmp_path), tmp_path)["state"]
    assert status == "fail" and "chmod go-w" in detail


def test_a_parent_others_can_write_fails(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit: anyone could rename state/ away and put their own in its place
    config = tmp_path / "agent.yml"
    config.write_text(f"root: {shared / 'state'}\nlog_dir: {tmp_path / 'logs'}\n")
    status, detail = _by_name(config, tmp_path)["state"]
    assert status == "fail" and str(shared) in detail


def test_an_unreachable_sqs_endpoint_fails(tmp_path: Path) -> None:
    port = closed_port()
    config = _config(tmp_path, f"channel:\n  kind: sqs\n  queue_url: http://127.0.0.1:{port}/123/q\n")
    status, detail = _by_name(config, tmp_path)["channel"]
    assert status == "fail" and f"127.0.0.1:{port}" in detail


def test_a_reachable_sqs_endpoint_passes(tmp_path: Path, listening: int) -> None:
    config = _config(tmp_path, f"channel:\n  kind: sqs\n  queue_url: http://127.0.0.1:{listening}/123/q\n")
    assert _by_name(config, tmp_path)["channel"][0] == "ok"


def test_a_stop_timeout_shorter_than_the_grace_warns(tmp_path: Path, capsys) -> None:
    unit_dir = tmp_path / "host" / "usr/lib/systemd/system"
    unit_dir.mkdir(parents=True)
    (unit_dir / "berth-agent.service").write_text((REPO / "systemd" / "berth-agent.service").read_text())
    config = _config(tmp_path, "shutdown_grace: 600\n")
    status, detail = _by_name(config, tmp_path / "host")["systemd"]
    assert status == "warn" and "TimeoutStopSec=690s" in detail
