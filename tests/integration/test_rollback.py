"""``berth rollback`` and the daemon's rollback command: a retained revision back in place, no download."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.revisions import berth, bundle, deploy, make_revision, markers, tree
from tests.integration.test_daemon import Daemon

pytestmark = pytest.mark.integration


def clear_markers(env: dict[str, str]) -> None:
    Path(env["BERTH_TEST_MARKERS"]).write_text("")


def rollback(state: Path, *extra: str, env: dict[str, str]) -> tuple[int, dict[str, Any] | None, str]:
    """``berth rollback --json``: (exit code, report or None, stderr)."""
    proc = berth(["rollback", "--root", str(state), "--json", *extra], env=env)
    try:
        report = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        raise AssertionError(f"not JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from None
    return proc.returncode, report, proc.stderr


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {ev["name"]: ev["status"] for ev in report["events"]}


def two_revisions(tmp_path: Path, dest: Path) -> tuple[Path, Path]:
    """v1 ships a binary file, an executable, a symlink and VERSION; v2 changes, adds and drops files."""
    r1 = make_revision(tmp_path / "r1", version="v1", destination=dest,
                       files={"index.html": "<h1>v1</h1>\n", "VERSION": "v1\n", "lib/util.py": "X = 1\n"})
    (r1 / "app" / "data.bin").write_bytes(os.urandom(200_000))
    (r1 / "app" / "run.sh").write_text("#!/bin/sh\necho v1\n")
    (r1 / "app" / "run.sh").chmod(0o750)
    (r1 / "app" / "current").symlink_to("index.html")
    r2 = make_revision(tmp_path / "r2", version="v2", destination=dest,
                       files={"index.html": "<h1>v2</h1>\n", "lib/util.py": "X = 2\n", "lib/new.py": "N = 1\n"})
    (r2 / "app" / "data.bin").write_bytes(os.urandom(100_000))
    (r2 / "app" / "current").symlink_to("lib")
    return r1, r2


def test_rollback_restores_the_first_revision_byte_for_byte_without_downloading(tmp_path, env):
    dest = tmp_path / "installed"
    state = tmp_path / "state"
    r1, r2 = two_revisions(tmp_path, dest)
    tgz1 = bundle(r1, "tgz", tmp_path / "bundles")
    tgz2 = bundle(r2, "tgz", tmp_path / "bundles")
    code, first = deploy(tgz1, state, env=env)
    assert code == 0, first
    v1_files = tree(dest)
    code, second = deploy(tgz2, state, env=env)
    assert code == 0, second
    assert tree(dest) != v1_files
    # the original bundle and its source folder are gone: a rollback that downloaded anything would fail
    tgz1.rename(tmp_path / "bundles" / "moved-away")
    os.rename(r1, tmp_path / "r1-moved-away")
    clear_markers(env)

    code, report, stderr = rollback(state, env=env)

    assert code == 0, (report, stderr)
    assert report is not None and report["status"] == "Succeeded"
    assert report["restores"] == first["deployment_id"]
    assert report["rolls_back"] == second["deployment_id"]
    assert report["revision"]["path"] == str(tgz1)  # names the original revision, which no longer exists
    assert tree(dest) == v1_files
    # full lifecycle: the replaced revision's stop script, then the restored revision's scripts
    assert markers(env) == ["ApplicationStop v2", "BeforeInstall v1", "AfterInstall v1", "ApplicationStart v1",
                            "ValidateService v1"]
    events = {e["name"]: e for e in report["events"]}
    assert events["ApplicationStop"]["scripts_from"] == "previous"
    assert statuses(report)["Install"] == "Succeeded"
    # the host now matches the restored install exactly
    verify = berth(["verify", "--root", str(state), "--json"])
    assert verify.returncode == 0, verify.stdout
    assert json.loads(verify.stdout)["deployment_id"] == report["deployment_id"]

    human = berth(["rollback", "--root", str(state)], env=env)  # and back again: the human output
    assert human.returncode == 0, human.stdout + human.stderr
    assert f"(replacing {report['deployment_id']})" in human.stdout
    assert "Succeeded" in human.stdout
    assert (dest / "index.html").read_text() == "<h1>v2</h1>\n"


def test_rollback_to_a_named_deployment(tmp_path, env):
    dest = tmp_path / "installed"
    state = tmp_path / "state"
    ids = []
    for n in (1, 2, 3):
        rev = make_revision(tmp_path / f"r{n}", version=f"v{n}", destination=dest, files={"VERSION": f"v{n}\n"})
        code, report = deploy(rev, state, env=env)
        assert code == 0, report
        ids.append(report["deployment_id"])
    clear_markers(env)
    code, report, stderr = rollback(state, "--to", ids[0], env=env)
    assert code == 0, stderr
    assert report is not None and report["restores"] == ids[0] and report["rolls_back"] == ids[2]
    assert (dest / "VERSION").read_text() == "v1\n"
    assert markers(env)[:2] == ["ApplicationStop v3", "BeforeInstall v1"]


def test_rollback_after_a_failed_deployment_goes_to_the_last_good_one(tmp_path, env):
    dest = tmp_path / "installed"
    state = tmp_path / "state"
    r1 = make_revision(tmp_path / "r1", version="v1", destination=dest)
    r2 = make_revision(tmp_path / "r2", version="v2", destination=dest, files={"index.html": "broken\n"},
                       scripts={"ValidateService": "#!/bin/sh\necho 'ValidateService v2' >> \"$BERTH_TEST_MARKERS\"\n"
                                "exit 1\n"})
    code, first = deploy(r1, state, env=env)
    assert code == 0, first
    code, failed = deploy(r2, state, env=env)
    assert code == 1 and statuses(failed)["ValidateService"] == "Failed"
    assert (dest / "index.html").read_text() == "broken\n"  # installed, then failed validation
    clear_markers(env)
    code, report, stderr = rollback(state, env=env)
    assert code == 0, stderr
    assert report is not None
    assert (report["restores"], report["rolls_back"]) == (first["deployment_id"], failed["deployment_id"])
    assert (dest / "index.html").read_text() == "<h1>v1</h1>\n"
    assert markers(env)[0] == "ApplicationStop v2"  # the broken revision is the one running: its stop script


def test_rollback_to_a_revision_retention_removed_is_a_clear_error(tmp_path, env):
    dest = tmp_path / "installed"
    state = tmp_path / "state"
    config = tmp_path / "agent.yml"
    config.write_text("max_revisions: 2\n")
    ids = []
    for n in (1, 2, 3):
        rev = make_revision(tmp_path / f"r{n}", version=f"v{n}", destination=dest)
        code, report = deploy(rev, state, "--config", str(config), env=env)
        assert code == 0, report
        ids.append(report["deployment_id"])
    before = tree(tmp_path)
    code, report, stderr = rollback(state, "--config", str(config), "--to", ids[0], env=env)
    assert code == 1
    assert report is None
    assert ids[0] in stderr and "no longer on this host" in stderr and "max_revisions" in stderr
    assert tree(tmp_path) == before  # nothing ran, nothing changed
    # the retained one still works
    code, report, stderr = rollback(state, "--config", str(config), "--to", ids[1], env=env)
    assert code == 0, stderr


def test_nothing_to_roll_back_to_and_unknown_deployment_are_errors(tmp_path, env):
    dest = tmp_path / "installed"
    state = tmp_path / "state"
    code, report, stderr = rollback(state, env=env)
    assert code == 1 and report is None and "no successful deployment" in stderr
    rev = make_revision(tmp_path / "r1", version="v1", destination=dest)
    assert deploy(rev, state, env=env)[0] == 0
    before = tree(dest)
    code, report, stderr = rollback(state, env=env)
    assert code == 1 and report is None and "no successful deployment before" in stderr
    code, _, stderr = rollback(state, "--to", "d-NOSUCHTHING", env=env)
    assert code == 1 and "d-NOSUCHTHING" in stderr and "not known" in stderr
    assert tree(dest) == before


def test_rollback_as_a_daemon_command(tmp_path):
    daemon = Daemon(tmp_path)
    dest = tmp_path / "installed"
    r1 = make_revision(tmp_path / "r1", version="v1", destination=dest, files={"VERSION": "v1\n"})
    r2 = make_revision(tmp_path / "r2", version="v2", destination=dest, files={"VERSION": "v2\n"})
    tgz1 = bundle(r1, "tgz", tmp_path / "bundles")
    tgz2 = bundle(r2, "tgz", tmp_path / "bundles")
    daemon.start()
    try:
        first = daemon.final_report(daemon.send(tgz1))
        second = daemon.final_report(daemon.send(tgz2))
        assert (first["status"], second["status"]) == ("Succeeded", "Succeeded")
        tgz1.unlink()
        daemon.markers.write_text("")
        sent = berth(["command", "rollback", "--spool", str(daemon.spool)])
        assert sent.returncode == 0, sent.stderr
        deployment_id = sent.stdout.split()[-1]
        waited = berth(["command", "wait", deployment_id, "--spool", str(daemon.spool), "--timeout", "60", "--json"])
        assert waited.returncode == 0, waited.stdout + waited.stderr
        report = json.loads(waited.stdout)
        assert report["status"] == "Succeeded"
        assert report["command_type"] == "rollback"
        assert (report["restores"], report["rolls_back"]) == (first["deployment_id"], second["deployment_id"])
        assert (dest / "VERSION").read_text() == "v1\n"
        assert daemon.markers.read_text().splitlines()[:2] == ["ApplicationStop v2", "BeforeInstall v1"]
        # a rollback to a deployment the host does not know is reported, not crashed on
        sent = berth(["command", "rollback", "--spool", str(daemon.spool), "--to", "d-NOSUCHTHING"])
        assert sent.returncode == 0, sent.stderr
        bad = daemon.final_report(sent.stdout.split()[-1])
        assert bad["status"] in ("Rejected", "Failed")
        assert "d-NOSUCHTHING" in json.dumps(bad)
        assert (dest / "VERSION").read_text() == "v1\n"
    finally:
        assert daemon.stop() == 0
