"""`berth command send|rollback|wait` as a user runs them, against a spool whose agent is played by the test."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.channels.spool import SpoolChannel, SpoolReportSink, ensure_spool
from agent.model.command import parse_command
from agent.model.revision import LocalRevision
from tests.conftest import BERTH

pytestmark = pytest.mark.integration


def berth(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BERTH, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    ensure_spool(tmp_path / "spool", group=None)
    return tmp_path / "spool"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    folder = tmp_path / "rev"
    folder.mkdir()
    (folder / "appspec.yml").write_text("version: 0.0\nos: linux\n")
    return folder


def test_send_writes_a_valid_command_the_agent_can_claim(
    spool: Path, bundle: Path, berth_env: dict[str, str], tmp_path: Path
) -> None:
    archive = tmp_path / "rev.tar.gz"
    archive.write_bytes(b"not really")
    out = berth(berth_env, "command", "send", "--spool", str(spool), "--bundle", str(archive), "--application",
                "shop", "--deployment-group", "web", "--events", "BeforeInstall,AfterInstall", "--expires-in", "600")
    assert out.returncode == 0, out.stderr
    deployment_id = out.stdout.strip()
    assert deployment_id.startswith("d-")
    assert [p.name for p in (spool / "incoming").iterdir()] == [f"{deployment_id}.json"]

    channel = SpoolChannel(spool)
    channel.start()
    try:
        delivery = channel.receive(5)
    finally:
        channel.close()
    assert delivery is not None
    cmd = parse_command(delivery.command_bytes)
    assert (cmd.deployment_id, cmd.application, cmd.deployment_group, cmd.type) == (deployment_id, "shop", "web",
                                                                                    "deploy")
    assert cmd.revision == LocalRevision(path=str(archive), bundle_type="tgz")
    assert cmd.events == ("BeforeInstall", "AfterInstall") and cmd.expires_at is not None


def test_send_plan_with_a_folder_and_relative_path(spool: Path, bundle: Path, berth_env: dict[str, str]) -> None:
    out = subprocess.run([*BERTH, "command", "send", "--spool", str(spool), "--bundle", "rev", "--plan", "--json"],
                         env=berth_env, cwd=bundle.parent, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    cmd = json.loads(out.stdout)["command"]
    assert cmd["type"] == "plan" and cmd["application"] == "berth-local" and cmd["deployment_group"] == "default"
    assert cmd["revision"] == {"type": "local", "path": str(bundle), "bundle_type": "directory"}


def test_send_refuses_what_it_cannot_deliver(spool: Path, bundle: Path, berth_env: dict[str, str],
                                             tmp_path: Path) -> None:
    missing = berth(berth_env, "command", "send", "--spool", str(spool), "--bundle", str(tmp_path / "nope.zip"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    odd = tmp_path / "rev.rar"
    odd.write_bytes(b"x")
    unknown = berth(berth_env, "command", "send", "--spool", str(spool), "--bundle", str(odd))
    assert unknown.returncode == 2 and "--type" in unknown.stderr
    no_spool = berth(berth_env, "command", "send", "--spool", str(tmp_path), "--bundle", str(bundle))
    assert no_spool.returncode == 2 and "is not a berth spool" in no_spool.stderr
    bad_name = berth(berth_env, "command", "send", "--spool", str(spool), "--bundle", str(bundle),
                     "--application", "my app")
    assert bad_name.returncode == 2 and "application name 'my app' is not allowed" in bad_name.stderr
    assert list((spool / "incoming").iterdir()) == []


def test_rollback_writes_a_rollback_command(spool: Path, berth_env: dict[str, str]) -> None:
    out = berth(berth_env, "command", "rollback", "--spool", str(spool), "--deployment-group", "web",
                "--application", "shop", "--to", "d-OLD")
    assert out.returncode == 0, out.stderr
    cmd = parse_command((spool / "incoming" / f"{out.stdout.strip()}.json").read_bytes())
    assert (cmd.type, cmd.revision, cmd.rollback_to, cmd.deployment_group) == ("rollback", None, "d-OLD", "web")


# --- wait ------------------------------------------------------------------------------------------------------


def event(name: str, status: str, ms: int | None = None) -> dict[str, Any]:
    return {"name": name, "status": status, "duration_ms": ms, "started_at": None, "ended_at": None,
            "diagnostics": None, "scripts_from": None}


def play_deployment(spool: Path, deployment_id: str, final: str, started: threading.Event) -> None:
    """The agent's side: rewrite the report after every event, as the daemon does."""
    started.wait(10)
    sink = SpoolReportSink(spool)
    base = {"schema_version": 1, "deployment_id": deployment_id, "application": "a", "deployment_group": "g",
            "revision": {}, "started_at": "2024-05-01T12:00:00.000Z", "ended_at": None, "warnings": []}
    steps = [
        ("InProgress", [event("DownloadBundle", "InProgress")]),
        ("InProgress", [event("DownloadBundle", "Succeeded", 120), event("AfterInstall", "InProgress")]),
    ]
    last = event("AfterInstall", final, 1500)
    if final == "Failed":
        last["diagnostics"] = {"error_code": 4, "error_name": "ScriptFailed", "script_name": "scripts/check.sh",
                               "message": "script exited with code 3", "log_tail": "checking...\nbroken\n"}
    steps.append((final, [event("DownloadBundle", "Succeeded", 120), last]))
    for status, events in steps:
        sink.publish({**base, "status": status, "events": events})
        time.sleep(0.3)


@pytest.mark.parametrize(("final", "code"), [("Succeeded", 0), ("Failed", 1)])
def test_wait_follows_the_report_live(spool: Path, berth_env: dict[str, str], final: str, code: int) -> None:
    started = threading.Event()
    agent = threading.Thread(target=play_deployment, args=(spool, "d-WAITME", final, started))
    agent.start()
    proc = subprocess.Popen([*BERTH, "command", "wait", "d-WAITME", "--spool", str(spool), "--timeout", "60"],
                            env=berth_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started.set()
    stdout, stderr = proc.communicate(timeout=60)
    agent.join()
    assert proc.returncode == code, stderr
    assert "... DownloadBundle" in stdout and "ok DownloadBundle (0.12s)" in stdout
    assert stdout.index("... AfterInstall") > stdout.index("ok DownloadBundle")
    assert f"deployment d-WAITME: {final}" in stdout
    if final == "Failed":
        assert "FAILED AfterInstall (1.50s)" in stdout and "ScriptFailed" in stdout and "broken" in stdout


def test_wait_json_prints_only_the_final_report(spool: Path, berth_env: dict[str, str]) -> None:
    started = threading.Event()
    started.set()
    play_deployment(spool, "d-DONE", "Succeeded", started)
    out = berth(berth_env, "command", "wait", "d-DONE", "--spool", str(spool), "--json")
    assert out.returncode == 0
    assert json.loads(out.stdout)["status"] == "Succeeded"


def test_wait_times_out_with_exit_3(spool: Path, berth_env: dict[str, str]) -> None:
    SpoolReportSink(spool).publish({"deployment_id": "d-SLOW", "status": "InProgress",
                                    "events": [event("ApplicationStart", "InProgress")]})
    out = berth(berth_env, "command", "wait", "d-SLOW", "--spool", str(spool), "--timeout", "0.5")
    assert out.returncode == 3
    assert "timed out after 0.5 s waiting for d-SLOW (still InProgress)" in out.stderr
    nothing = berth(berth_env, "command", "wait", "d-NEVER", "--spool", str(spool), "--timeout", "0.3")
    assert nothing.returncode == 3 and "is the agent running?" in nothing.stderr


def test_wait_reports_a_rejection(spool: Path, berth_env: dict[str, str]) -> None:
    SpoolReportSink(spool).publish({
        "deployment_id": "d-LATE", "status": "Rejected", "reason": "CommandExpired",
        "message": "the command expired at 2024-05-01T12:00:00Z", "events": [],
    })
    out = berth(berth_env, "command", "wait", "d-LATE", "--spool", str(spool))
    assert out.returncode == 1 and "CommandExpired" in out.stdout
    (spool / "rejected" / "d-GARBLED.reason").write_text("MalformedCommand: command is not valid JSON\n")
    garbled = berth(berth_env, "command", "wait", "d-GARBLED", "--spool", str(spool), "--timeout", "5")
    assert garbled.returncode == 1 and "MalformedCommand" in garbled.stderr
