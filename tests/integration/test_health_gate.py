"""berth's health gate (appspec ``berth: health_check``) and automatic rollback, with the example web app."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.revisions import copy_example, deploy

pytestmark = pytest.mark.integration

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_health(port: int) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of the web app's /health; (0, {}) when nothing answers."""
    try:
        with _OPENER.open(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, {}


def wait_until_serving(port: int, version: str, seconds: float) -> tuple[int, dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while True:
        answer = get_health(port)
        if (answer[0] == 200 and answer[1].get("version") == version) or time.monotonic() >= deadline:
            return answer
        time.sleep(0.1)


@dataclass
class WebApp:
    tmp: Path
    install_dir: Path
    state: Path
    port: int
    env: dict[str, str]

    def revision(self, version: str, *, health_status: int | None = None, auto_rollback: bool = True,
                 validate_always_passes: bool = False) -> Path:
        """A copy of appspec_examples/webapp with VERSION ``version`` and berth's health gate in its appspec."""
        rev = copy_example("webapp", self.tmp / f"webapp-{version}", self.install_dir)
        (rev / "VERSION").write_text(version + "\n")
        if health_status is not None:
            (rev / "HEALTH_STATUS").write_text(f"{health_status}\n")
        if validate_always_passes:  # a weak ValidateService script: only berth's health check can notice
            (rev / "scripts" / "validate.sh").write_text("#!/bin/sh\necho \"ValidateService: trusting the app\"\n")
        spec = yaml.safe_load((rev / "appspec.yml").read_text())
        spec["berth"] = {
            "health_check": {"url": f"http://127.0.0.1:{self.port}/health", "expected_status": 200,
                             "body_contains": '"status": "ok"', "timeout": 2, "retries": 3, "interval": 0.5},
            "auto_rollback": auto_rollback,
        }
        (rev / "appspec.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
        return rev

    def deploy(self, rev: Path) -> tuple[int, dict[str, Any]]:
        return deploy(rev, self.state, env=self.env, timeout=180)

    def stop_servers(self) -> None:
        """Stop every server started from this install folder (its pidfile, then any process running its code)."""
        script = self.install_dir / "scripts" / "stop_server.sh"
        if script.exists():
            subprocess.run([str(script)], env={**os.environ, **self.env}, capture_output=True, timeout=30)
        server = str(self.install_dir / "server.py").encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if server in (proc / "cmdline").read_bytes().split(b"\0"):
                    os.kill(int(proc.name), signal.SIGKILL)


@pytest.fixture
def webapp(tmp_path: Path) -> Iterator[WebApp]:
    app = WebApp(tmp_path, tmp_path / "opt" / "webapp", tmp_path / "state", free_port(),
                 {"WEBAPP_PORT": "", "BERTH_TEST_MARKERS": str(tmp_path / "markers.log")})
    app.env["WEBAPP_PORT"] = str(app.port)
    try:
        yield app
    finally:
        app.stop_servers()


def events(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in report["events"]}


def test_failing_validation_rolls_back_to_the_previous_revision_which_serves_again(webapp):
    code, first = webapp.deploy(webapp.revision("1"))
    assert code == 0, first
    assert events(first)["HealthCheck"]["status"] == "Succeeded"
    assert get_health(webapp.port) == (200, {"status": "ok", "version": "1"})

    code, report = webapp.deploy(webapp.revision("2", health_status=500))

    assert code == 1
    # the previous revision is serving again as soon as the deployment returns (a few seconds at most)
    assert wait_until_serving(webapp.port, "1", 5) == (200, {"status": "ok", "version": "1"})
    assert report["status"] == "Failed"
    assert events(report)["ValidateService"]["status"] == "Failed"
    assert report["rolled_back_to"] == first["deployment_id"]
    rollback = report["rollback"]
    assert rollback["status"] == "Succeeded"
    assert rollback["restores"] == first["deployment_id"]
    assert rollback["rolls_back"] == report["deployment_id"]
    rb_events = events(rollback)
    # the broken revision's stop script stopped its server; the old revision was installed, started and checked
    assert rb_events["ApplicationStop"]["status"] == "Succeeded"
    assert rb_events["ApplicationStop"]["scripts_from"] == "previous"
    for name in ("DownloadBundle", "Install", "ApplicationStart", "ValidateService", "HealthCheck"):
        assert rb_events[name]["status"] == "Succeeded", name
    assert (webapp.install_dir / "VERSION").read_text() == "1\n"
    assert not (webapp.install_dir / "HEALTH_STATUS").exists()
    # the stored report says the same
    stored = json.loads((webapp.state / "groups" / "berth-local" / "default" / "deployments" /
                         report["deployment_id"] / "report.json").read_text())["report"]
    assert stored["status"] == "Failed" and stored["rolled_back_to"] == first["deployment_id"]


def test_failing_health_check_alone_triggers_the_rollback(webapp):
    code, first = webapp.deploy(webapp.revision("1"))
    assert code == 0, first
    code, report = webapp.deploy(webapp.revision("2", health_status=500, validate_always_passes=True))
    assert code == 1
    assert wait_until_serving(webapp.port, "1", 5) == (200, {"status": "ok", "version": "1"})
    ev = events(report)
    assert ev["ValidateService"]["status"] == "Succeeded"
    assert ev["HealthCheck"]["status"] == "Failed"
    diag = ev["HealthCheck"]["diagnostics"]
    assert diag["error_name"] == "HealthCheckFailed"
    assert "answered 500, expected 200" in diag["message"] and "3 attempt" in diag["message"]
    assert report["rolled_back_to"] == first["deployment_id"]
    assert report["rollback"]["status"] == "Succeeded"


def test_without_auto_rollback_the_failure_is_reported_and_left_alone(webapp):
    code, first = webapp.deploy(webapp.revision("1"))
    assert code == 0, first
    code, report = webapp.deploy(webapp.revision("2", health_status=500, auto_rollback=False,
                                                 validate_always_passes=True))
    assert code == 1
    assert events(report)["HealthCheck"]["status"] == "Failed"
    assert "rolled_back_to" not in report and "rollback" not in report
    assert get_health(webapp.port) == (500, {"status": "failing", "version": "2"})


def test_first_deployment_that_fails_has_nothing_to_roll_back_to(webapp):
    code, report = webapp.deploy(webapp.revision("1", health_status=503, validate_always_passes=True))
    assert code == 1
    assert report["status"] == "Failed"
    assert events(report)["HealthCheck"]["status"] == "Failed"
    assert "rolled_back_to" not in report
