"""Logging: JSON lines carrying the deployment context, deployments.log, idempotent set-up."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import UsageError
from agent.logs import bind_deployment, deployments_log, get_logger, setup_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_json_lines_carry_deployment_and_event(tmp_path: Path) -> None:
    setup_logging(log_dir=tmp_path, level="info", console=False)
    log = get_logger("agent.test")
    with bind_deployment("d-ABC"):
        log.info("fetching %s", "bundle", size=3)
        with bind_deployment("d-ABC", "AfterInstall"):
            logging.getLogger("agent.hooks").warning("script said %s", "hi")
    log.debug("not at info level")
    out = lines(tmp_path / "agent.log")
    assert [o["message"] for o in out] == ["fetching bundle", "script said hi"]
    assert out[0]["deployment_id"] == "d-ABC" and out[0]["size"] == 3 and "lifecycle_event" not in out[0]
    assert out[1]["lifecycle_event"] == "AfterInstall" and out[1]["level"] == "warning"
    assert out[1]["logger"] == "agent.hooks" and str(out[1]["timestamp"]).endswith("Z")


def test_setup_is_idempotent(tmp_path: Path) -> None:
    before = len(logging.getLogger().handlers)
    setup_logging(log_dir=tmp_path, level="info", console=False)
    setup_logging(log_dir=tmp_path, level="debug", console=True)
    assert len(logging.getLogger().handlers) == before + 2
    get_logger("agent.test").debug("once")
    assert [o["message"] for o in lines(tmp_path / "agent.log")] == ["once"]


def test_exceptions_are_one_json_line(tmp_path: Path) -> None:
    setup_logging(log_dir=tmp_path, level="info", console=False)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("agent.test").exception("failed")
    (entry,) = lines(tmp_path / "agent.log")
    assert "RuntimeError: boom" in str(entry["exception"])


def test_unwritable_log_dir_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="cannot write the log file"):
        setup_logging(log_dir=tmp_path / "file" / "logs", level="info", console=False)


def test_deployments_log_writes_one_json_line_each(tmp_path: Path) -> None:
    log = deployments_log(tmp_path)
    assert deployments_log(tmp_path) is log and len(log.handlers) == 1
    log.info({"deployment_id": "d-1", "status": "Succeeded"})
    log.info({"deployment_id": "d-2", "status": "Failed"})
    out = lines(tmp_path / "deployments.log")
    assert [(o["deployment_id"], o["status"]) for o in out] == [("d-1", "Succeeded"), ("d-2", "Failed")]
    assert all("timestamp" in o for o in out)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()


def test_a_log_moved_away_by_logrotate_is_reopened(tmp_path: Path) -> None:
    setup_logging(log_dir=tmp_path, level="info", console=False)
    log = get_logger("agent.test")
    log.info("before rotation")
    (tmp_path / "agent.log").rename(tmp_path / "agent.log.1")
    log.info("after rotation")
    assert [o["message"] for o in lines(tmp_path / "agent.log.1")] == ["before rotation"]
    assert [o["message"] for o in lines(tmp_path / "agent.log")] == ["after rotation"]
