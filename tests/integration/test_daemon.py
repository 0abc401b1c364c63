"""The agent daemon as a real process on a real spool folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.revisions import REPO, berth, make_revision

pytestmark = pytest.mark.integration


class Daemon:
    def __init__(self, tmp: Path, **config: Any) -> None:
        self.tmp = tmp
        self.root = tmp / "state"
        self.spool = self.root / "spool"
        self.markers = tmp / "markers.log"
        self.markers.touch()
        self.config = tmp / "agent.yml"
        settings = {"root": str(self.root), "log_dir": str(tmp / "log"), "poll_interval": 0.5,
                    "shutdown_grace": 30, "hook_kill_grace": 1, "instance_id": "test-host"}
        settings.update(config)
        self.config.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))
        self.proc: subprocess.Popen[str] | None = None
        self.env = dict(os.environ, PYTHONPATH=str(REPO), BERTH_TEST_MARKERS=str(self.markers))
        self.env.pop("NOTIFY_SOCKET", None)

    def start(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "agent", "run", "--config", str(self.config), *extra],
            env={**self.env, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        wait_for(lambda: (self.root / "status.json").exists(), 20, "agent start")
        return self.proc

    def send(self, revision: Path, *extra: str) -> str:
        proc = berth(["command", "send", "--spool", str(self.spool), "--bundle", str(revision), *extra],
                     env={"BERTH_TEST_MARKERS": str(self.markers)})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip().split()[-1]

    def report(self, deployment_id: str) -> dict[str, Any] | None:
        path = self.spool / "reports" / f"{deployment_id}.json"
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def final_report(self, deployment_id: str, timeout: float = 60) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            r = self.report(deployment_id)
            return r if r and r["status"] not in ("InProgress",) else None

        return wait_for(done, timeout, f"report of {deployment_id}")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def _event(report: dict[str, Any], name: str) -> str:
    return str({e["name"]: e["status"] for e in report["events"]}.get(name))


def wait_for(fn: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path)
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def revision(tmp_path: Path, version: str, **kw: Any) -> Path:
    return make_revision(tmp_path / f"rev-{version}", version=version, destination=tmp_path / "installed", **kw)


def test_command_is_picked_up_and_deployed_and_wait_follows_it(tmp_path, daemon):
    daemon.start()
    dep = daemon.send(revision(tmp_path, "v1"))
    waited = berth(["command", "wait", dep, "--spool", str(daemon.spool), "--timeout", "60"])
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "ApplicationStart" in waited.stdout
    report = daemon.final_report(dep)
    assert report["status"] == "Succeeded"
    assert report["instance_id"] == "test-host"
    assert report["agent_version"]
    assert (tmp_path / "installed" / "index.html").exists()
    status = json.loads(berth(["agent", "status", "--json", "--config", str(daemon.config)]).stdout)
    assert status["state"] == "idle"
    assert daemon.stop() == 0


def test_duplicate_command_is_not_run_twice(tmp_path, daemon):
    daemon.start()
    dep = daemon.send(revision(tmp_path, "v1"))
    first = daemon.final_report(dep)
    command = wait_for(lambda: next((daemon.spool / "done").glob("*.json"), None), 10, "command acked")
    runs = daemon.markers.read_text().count("ApplicationStart v1")
    (daemon.spool / "incoming" / "again.json").write_bytes(command.read_bytes())
    wait_for(lambda: not (daemon.spool / "incoming" / "again.json").exists(), 10, "redelivery claimed")
    time.sleep(1)
    assert daemon.markers.read_text().count("ApplicationStart v1") == runs == 1
    assert daemon.final_report(dep)["ended_at"] == first["ended_at"]


def _drop(daemon: Daemon, name: str, doc: Any) -> None:
    tmp = daemon.spool / "incoming" / f".{name}"
    tmp.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    tmp.rename(daemon.spool / "incoming" / name)


def _command_doc(daemon: Daemon, rev: Path) -> dict[str, Any]:
    dep = daemon.send(rev, "--expires-in", "3600")
    path = wait_for(lambda: next((daemon.spool / "done").glob("*.json"), None), 60, "first command done")
    daemon.final_report(dep)
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def test_bad_commands_are_rejected_with_a_reason(tmp_path, daemon):
    daemon.start()
    good = _command_doc(daemon, revision(tmp_path, "v1"))
    _drop(daemon, "garbage.json", "{not json")
    newer = dict(good, schema_version=99, command_id="c-newer", deployment_id="d-NEWER0001")
    _drop(daemon, "newer.json", newer)
    expired = dict(good, command_id="c-expired", deployment_id="d-EXPIRED01", expires_at="2001-01-01T00:00:00Z")
    _drop(daemon, "expired.json", expired)
    rejected = daemon.spool / "rejected"
    wait_for(lambda: len(list(rejected.glob("*.reason"))) >= 3, 20, "three rejections")
    reasons = {p.stem: p.read_text() for p in rejected.glob("*.reason")}
    assert "Malformed" in reasons["garbage"]
    assert "UnsupportedSchemaVersion" in reasons["newer"] and "1" in reasons["newer"]
    assert "Expired" in reasons["expired"]
    newer_report = daemon.final_report("d-NEWER0001")
    assert newer_report["status"] == "Rejected"
    assert daemon.final_report("d-EXPIRED01")["status"] == "Rejected"


def test_invalid_appspec_fails_with_its_reason(tmp_path, daemon):
    daemon.start()
    rev = revision(tmp_path, "v1")
    (rev / "appspec.yml").write_text("version: 1.0\nos: linux\n")
    report = daemon.final_report(daemon.send(rev))
    assert report["status"] == "Failed"
    diag = {e["name"]: e for e in report["events"]}["DownloadBundle"]["diagnostics"]
    assert diag["error_name"] == "AppSpecInvalid" and "version" in diag["message"]


def test_config_errors_exit_2_with_every_problem(tmp_path):
    config = tmp_path / "agent.yml"
    config.write_text("max_revisions: 0\nshutdown_grace: -1\nbogus: 1\n")
    proc = berth(["agent", "run", "--config", str(config)])
    assert proc.returncode == 2
    for key in ("max_revisions", "shutdown_grace", "bogus"):
        assert f"{config}: {key}:" in proc.stderr


def test_world_writable_spool_is_refused(tmp_path):
    d = Daemon(tmp_path)
    (d.spool / "incoming").mkdir(parents=True)
    (d.spool / "incoming").chmod(0o777)
    proc = berth(["agent", "run", "--config", str(d.config)])
    assert proc.returncode == 2
    assert "writable" in proc.stderr


def test_sigterm_lets_the_running_deployment_finish(tmp_path, daemon):
    daemon.start()
    rev = revision(tmp_path, "v1", scripts={"ApplicationStart": "#!/bin/sh\nsleep 2\necho done\n"})
    dep = daemon.send(rev)
    wait_for(lambda: (r := daemon.report(dep)) and _event(r, "ApplicationStart") == "InProgress", 30, "start hook")
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    assert daemon.final_report(dep)["status"] == "Succeeded"


def test_second_signal_cancels_the_deployment(tmp_path, daemon):
    daemon.start()
    rev = revision(tmp_path, "v1", scripts={"ApplicationStart": "#!/bin/sh\nsleep 120\n"})
    dep = daemon.send(rev)
    wait_for(lambda: (r := daemon.report(dep)) and _event(r, "ApplicationStart") == "InProgress", 30, "start hook")
    daemon.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(20) == 0
    report = daemon.final_report(dep)
    assert report["status"] == "Failed"
    ev = next(e for e in report["events"] if e["status"] == "Failed")
    assert ev["name"] == "ApplicationStart"
    assert ev["diagnostics"]["message"] == "agent stopping"


def test_kill_9_recovery(tmp_path, daemon):
    daemon.start()
    pidfile = tmp_path / "hook.pid"
    rev = revision(tmp_path, "v1", scripts={"AfterInstall": f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 300\n"})
    dep = daemon.send(rev)
    wait_for(pidfile.exists, 30, "hook started")
    time.sleep(0.2)
    hook_pid = int(pidfile.read_text())
    daemon.proc.kill()
    daemon.proc.wait()
    started = time.monotonic()
    daemon.start()
    report = daemon.final_report(dep, timeout=10)
    assert time.monotonic() - started < 5 + 2
    ev = {e["name"]: e for e in report["events"]}["AfterInstall"]
    assert ev["diagnostics"]["error_code"] == 7
    assert ev["diagnostics"]["error_name"] == "FailedAfterRestart"
    wait_for(lambda: not Path(f"/proc/{hook_pid}").exists() or
             Path(f"/proc/{hook_pid}/stat").read_text().split()[2] == "Z", 10, "orphaned hook ended")
    nxt = daemon.send(revision(tmp_path, "v2"), "--file-exists-behavior", "OVERWRITE")
    assert daemon.final_report(nxt)["status"] == "Succeeded"


def test_sd_notify_messages(tmp_path, daemon):
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(10)
    try:
        daemon.start(env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "200000"})
        got: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not ({"READY=1", "WATCHDOG=1"} <= set(got)
                                                   and any(m.startswith("STATUS=") for m in got)):
            got += sock.recv(4096).decode().splitlines()
        assert "READY=1" in got and "WATCHDOG=1" in got
        assert any(m.startswith("STATUS=") for m in got)
        daemon.proc.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in got:
            got += sock.recv(4096).decode().splitlines()
        assert daemon.proc.wait(10) == 0
    finally:
        sock.close()


def test_once_handles_waiting_commands_and_exits(tmp_path):
    d = Daemon(tmp_path)
    (d.spool / "incoming").mkdir(parents=True)
    for p in (d.root, d.spool, d.spool / "incoming"):
        p.chmod(0o750)
    dep = d.send(revision(tmp_path, "v1"))
    proc = berth(["agent", "run", "--once", "--config", str(d.config)], env={"BERTH_TEST_MARKERS": str(d.markers)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert d.final_report(dep, timeout=1)["status"] == "Succeeded"


def test_daemonize_writes_pidfile_and_stops_on_sigterm(tmp_path):
    d = Daemon(tmp_path)
    pidfile = tmp_path / "berth.pid"
    proc = berth(["agent", "run", "--daemonize", "--pidfile", str(pidfile), "--config", str(d.config)])
    assert proc.returncode == 0, proc.stderr
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "pidfile"))
    wait_for(lambda: (d.root / "status.json").exists(), 10, "daemon status")
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 15, "daemon exit")
    assert not pidfile.exists()


def test_periodic_drift_check_reaches_status_and_deployments_log(tmp_path):
    d = Daemon(tmp_path, drift_check_interval=0.5)
    d.start()
    try:
        dep = d.send(revision(tmp_path, "v1"))
        assert d.final_report(dep)["status"] == "Succeeded"
        (tmp_path / "installed" / "index.html").write_text("edited on the host\n")

        def drift() -> dict[str, Any] | None:
            status = json.loads((d.root / "status.json").read_text())
            found = status.get("drift")
            return found if found and not found["clean"] else None

        found = wait_for(drift, 15, "drift in status")
        assert "berth-local/default" in found["summary"]
        lines = [json.loads(x) for x in (tmp_path / "log" / "deployments.log").read_text().splitlines()]
        assert [(x["deployment_id"], x["status"]) for x in lines] == [(dep, "Succeeded")]
    finally:
        d.stop()
