"""``berth deploy-local --plan`` (and the daemon's plan-only command): what a deployment would do, changing nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.revisions import berth, bundle, deploy, make_revision
from tests.integration.test_daemon import Daemon

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    markers = tmp_path / "markers.log"
    markers.touch()
    scratch = tmp_path / "tmpdir"  # berth's temporary folders land here, so a test can see they are gone
    scratch.mkdir()
    return {"BERTH_TEST_MARKERS": str(markers), "TMPDIR": str(scratch)}


def listing(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under ``root`` (itself included) with type, mode, owner, size, mtime and sha256 or link target.

    The ``tmpdir`` folder (berth's TMPDIR) is left out: the plan creates and removes its scratch folder there.
    """
    out: dict[str, tuple[Any, ...]] = {}
    for folder, dirs, files in os.walk(root):
        if folder == str(root):
            dirs[:] = [d for d in dirs if d != "tmpdir"]
        for name in ["", *dirs, *files]:
            p = os.path.join(folder, name) if name else folder
            st = os.lstat(p)
            if os.path.islink(p):
                what: str = "link:" + os.readlink(p)
            elif os.path.isfile(p):
                what = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            else:
                what = "dir"
            out[p] = (st.st_mode, st.st_uid, st.st_gid, st.st_size if what != "dir" else 0, st.st_mtime_ns, what)
    return out


def plan(bundle_path: Path, root: Path, *extra: str, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    proc = berth(["deploy-local", "--plan", "--json", "--bundle", str(bundle_path), "--root", str(root), *extra],
                 env=env)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"no JSON plan (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from None


def reasons(doc: dict[str, Any]) -> list[str]:
    return [p["reason"] for p in doc["problems"]]


@pytest.fixture
def small_mount(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs as the install destination (root only; skipped where mounting fails)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    dest = tmp_path / "installed"
    dest.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(dest)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield dest
    finally:
        subprocess.run(["umount", "-l", str(dest)])


def test_plan_lists_conflict_missing_script_and_free_space_and_changes_nothing(tmp_path, env, small_mount):
    dest = small_mount
    state = tmp_path / "state"
    r1 = make_revision(tmp_path / "r1", version="v1", destination=dest)
    code, first = deploy(r1, state, env=env)
    assert code == 0, first
    (dest / "extra.txt").write_text("someone else's\n")
    r2 = make_revision(tmp_path / "r2", version="v2", destination=dest, files={
        "index.html": "v2\n", "extra.txt": "shipped\n", "blob.bin": "x" * (3 * 1024 * 1024)})
    (r2 / "scripts" / "AfterInstall.sh").unlink()
    Path(env["BERTH_TEST_MARKERS"]).write_text("")
    before = listing(tmp_path)

    code, doc = plan(r2, state, env=env)

    assert code == 1
    assert doc["would_succeed"] is False
    assert sorted(reasons(doc)) == ["AppSpecInvalid", "FileConflict", "InstallFailed"]
    problems = {p["reason"]: p["message"] for p in doc["problems"]}
    assert "scripts/AfterInstall.sh" in problems["AppSpecInvalid"] and "does not exist" in problems["AppSpecInvalid"]
    assert str(dest / "extra.txt") in problems["FileConflict"]
    assert "not enough free space" in problems["InstallFailed"]
    install = doc["install"]
    assert install["conflicts"] == [{"path": str(dest / "extra.txt"), "resolution": "fail",
                                     "reason": "exists and was not installed by this deployment group's last install"}]
    [space] = install["space"]
    assert space["bytes_needed"] > 3 * 1024 * 1024 > 1024 * 1024 >= space["bytes_free"]
    # nothing changed: not the installed files, not the state root, not even a marker; the scratch folder is gone
    assert listing(tmp_path) == before
    assert Path(env["BERTH_TEST_MARKERS"]).read_text() == ""
    assert list(Path(env["TMPDIR"]).iterdir()) == []

    human = berth(["deploy-local", "--plan", "--bundle", str(r2), "--root", str(state)], env=env)
    assert human.returncode == 1
    out = human.stdout
    assert "the deployment would FAIL" in out
    assert f"conflict  {dest / 'extra.txt'}" in out and "-> fail" in out
    assert "scripts/AfterInstall.sh" in out
    assert f"space on {dest}: needs" in out
    assert listing(tmp_path) == before


def test_plan_of_a_good_revision_says_what_the_deployment_then_does(tmp_path, env):
    dest = tmp_path / "installed"
    state = tmp_path / "state"
    r1 = make_revision(tmp_path / "r1", version="v1", destination=dest,
                       files={"index.html": "one\n", "VERSION": "v1\n", "same.txt": "same\n"})
    code, first = deploy(r1, state, env=env)
    assert code == 0, first
    r2 = make_revision(tmp_path / "r2", version="v2", destination=dest, files={
        "index.html": "two two\n", "same.txt": "same\n", "conf/app.conf": "secret=1\n"},
        appspec_extra={"permissions": [
            {"object": str(dest / "conf"), "pattern": "**", "mode": "600", "type": ["file"]}]})
    tgz = bundle(r2, "tgz", tmp_path / "bundles")
    before = listing(tmp_path)

    code, doc = plan(tgz, state, env=env)

    assert code == 0, doc
    assert doc["would_succeed"] is True and doc["problems"] == []
    assert listing(tmp_path) == before
    assert list(Path(env["TMPDIR"]).iterdir()) == []
    install = doc["install"]
    files = {i["destination"]: (i["action"], i["size"]) for i in install["items"] if i["type"] == "file"}
    assert files == {
        str(dest / "index.html"): ("replace", 8),
        str(dest / "same.txt"): ("unchanged", 5),
        str(dest / "conf" / "app.conf"): ("add", 9),
    }
    assert install["removals"] == [{"path": str(dest / "VERSION"), "type": "file", "size": 3}]
    assert install["dirs_to_create"] == [str(dest / "conf")]
    assert [c["path"] for c in install["permission_changes"]] == [str(dest / "conf" / "app.conf")]
    assert "mode 0600" in install["permission_changes"][0]["what"]
    [space] = install["space"]
    assert 0 < space["bytes_needed"] <= space["bytes_free"]
    # hooks in order, and from which revision: ApplicationStop is the previous deployment's script
    scripted = [(e["name"], e["scripts_from"], e["revision"], [s["location"] for s in e["scripts"]])
                for e in doc["events"] if e["run_by"] == "scripts"]
    assert scripted == [
        ("ApplicationStop", "previous", first["deployment_id"], ["scripts/ApplicationStop.sh"]),
        ("BeforeInstall", "current", doc["deployment_id"], ["scripts/BeforeInstall.sh"]),
        ("AfterInstall", "current", doc["deployment_id"], ["scripts/AfterInstall.sh"]),
        ("ApplicationStart", "current", doc["deployment_id"], ["scripts/ApplicationStart.sh"]),
        ("ValidateService", "current", doc["deployment_id"], ["scripts/ValidateService.sh"]),
    ]
    assert [e["name"] for e in doc["events"] if e["run_by"] == "berth"] == ["DownloadBundle", "Install"]

    human = berth(["deploy-local", "--plan", "--bundle", str(tgz), "--root", str(state)], env=env)
    assert human.returncode == 0, human.stderr
    assert f"remove    {dest / 'VERSION'} (3 B)" in human.stdout
    assert f"replace   {dest / 'index.html'} (8 B)" in human.stdout
    assert "ApplicationStop" in human.stdout and f"previous revision {first['deployment_id']}" in human.stdout
    assert "the deployment would proceed" in human.stdout

    # the real deployment does what the plan said
    code, report = deploy(tgz, state, env=env)
    assert code == 0, report
    assert sorted(p.name for p in dest.iterdir()) == ["conf", "index.html", "same.txt"]
    assert (dest / "conf" / "app.conf").stat().st_mode & 0o777 == 0o600
    assert report["install"] == {"written": 2, "unchanged": 1, "removed": 1}


@pytest.mark.parametrize("behavior,resolution,code", [("DISALLOW", "fail", 1), ("OVERWRITE", "overwrite", 0),
                                                      ("RETAIN", "retain", 0)])
def test_plan_shows_how_file_exists_behavior_resolves_each_conflict(tmp_path, env, behavior, resolution, code):
    dest = tmp_path / "installed"
    dest.mkdir()
    (dest / "index.html").write_text("by hand\n")
    rev = make_revision(tmp_path / "rev", version="v1", destination=dest)
    before = listing(tmp_path)
    got, doc = plan(rev, tmp_path / "state", "--file-exists-behavior", behavior, env=env)
    assert got == code, doc
    assert doc["file_exists_behavior"] == behavior
    assert [(c["path"], c["resolution"]) for c in doc["install"]["conflicts"]] == [(str(dest / "index.html"),
                                                                                      resolution)]
    assert listing(tmp_path) == before
    assert not (tmp_path / "state").exists()  # a plan does not even create the state root


def test_plan_of_a_broken_bundle_and_a_bad_appspec_fail_with_their_reasons(tmp_path, env):
    dest = tmp_path / "installed"
    rev = make_revision(tmp_path / "rev", version="v1", destination=dest)
    (rev / "appspec.yml").write_text("version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: x.sh\n"
                                     "      timeout: soon\n")
    code, doc = plan(rev, tmp_path / "state", env=env)
    assert code == 1
    assert reasons(doc) and set(reasons(doc)) == {"AppSpecInvalid"}
    assert any("timeout" in p["message"] for p in doc["problems"])
    broken = tmp_path / "broken.tgz"
    broken.write_bytes(b"this is not a gzip file")
    code, doc = plan(broken, tmp_path / "state", env=env)
    assert code == 1
    assert doc["problems"] and doc["install"] is None
    assert not dest.exists()
    assert list(Path(env["TMPDIR"]).iterdir()) == []


def test_daemon_reports_a_plan_only_command_and_changes_nothing(tmp_path, env):
    daemon = Daemon(tmp_path)
    dest = tmp_path / "installed"
    dest.mkdir()
    (dest / "index.html").write_text("by hand\n")
    rev = make_revision(tmp_path / "rev", version="v1", destination=dest)
    daemon.start(env={"TMPDIR": env["TMPDIR"]})
    try:
        sent = berth(["command", "send", "--plan", "--spool", str(daemon.spool), "--bundle", str(rev)], env=env)
        assert sent.returncode == 0, sent.stderr
        deployment_id = sent.stdout.split()[-1]
        waited = berth(["command", "wait", deployment_id, "--spool", str(daemon.spool), "--timeout", "60", "--json"])
        assert waited.returncode == 1, waited.stdout + waited.stderr  # the deployment would fail: the conflict
        report = json.loads(waited.stdout)
        assert report["status"] == "Failed"
        assert report["plan"]["would_succeed"] is False
        assert [c["path"] for c in report["plan"]["install"]["conflicts"]] == [str(dest / "index.html")]
        assert (dest / "index.html").read_text() == "by hand\n"
        assert sorted(p.name for p in dest.iterdir()) == ["index.html"]
        assert Path(env["BERTH_TEST_MARKERS"]).read_text() == ""
        assert list(Path(env["TMPDIR"]).iterdir()) == []
    finally:
        assert daemon.stop() == 0


def test_plan_shows_the_health_gate_and_warns_when_the_previous_revision_is_gone(tmp_path, env):
    dest = tmp_path / "installed"
    state = tmp_path / "state"
    code, first = deploy(make_revision(tmp_path / "r1", version="v1", destination=dest), state, env=env)
    assert code == 0, first
    shutil.rmtree(state / "groups" / "berth-local" / "default" / "deployments" / first["deployment_id"] / "revision")
    rev = make_revision(tmp_path / "r2", version="v2", destination=dest, appspec_extra={"berth": {
        "health_check": {"url": "http://127.0.0.1:8080/health", "retries": 5}, "auto_rollback": True}})
    code, doc = plan(rev, state, env=env)
    assert code == 0, doc
    assert doc["health_check"] == {"url": "http://127.0.0.1:8080/health", "expected_status": 200,
                                   "body_contains": None, "timeout": 5.0, "retries": 5, "interval": 2.0}
    assert doc["auto_rollback"] is True
    assert any(first["deployment_id"] in w and "stop scripts cannot run" in w for w in doc["warnings"])
    stop = next(e for e in doc["events"] if e["name"] == "ApplicationStop")
    assert stop["run_by"] == "skipped"
    human = berth(["deploy-local", "--plan", "--bundle", str(rev), "--root", str(state)], env=env)
    assert "GET http://127.0.0.1:8080/health expecting 200 (5 tries" in human.stdout
    assert "auto_rollback: on" in human.stdout
