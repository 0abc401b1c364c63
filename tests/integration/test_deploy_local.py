"""``berth deploy-local`` end to end: real revisions, real archives, real hook processes, real state."""

from __future__ import annotations

import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.fakes.revisions import bundle, deploy, make_revision, markers, tree

pytestmark = pytest.mark.integration


def statuses(report: dict) -> dict[str, str]:
    return {ev["name"]: ev["status"] for ev in report["events"]}


@pytest.mark.parametrize("kind,top", [("directory", None), ("tar", None), ("tgz", None), ("zip", None),
                                      ("zip", "myapp-1.0")])
def test_every_bundle_type_deploys_the_same_files_and_events(tmp_path, env, kind, top):
    dest = tmp_path / "installed"
    rev = make_revision(tmp_path / "rev", version="v1", destination=dest)
    code, report = deploy(bundle(rev, kind, tmp_path / "bundles", top_folder=top), tmp_path / "state", env=env)
    assert code == 0, report
    assert report["status"] == "Succeeded"
    assert (dest / "index.html").read_text() == "<h1>v1</h1>\n"
    assert sorted(p.name for p in dest.iterdir()) == ["VERSION", "index.html"]
    # deploy-local runs every scriptable event (as codedeploy-local does); those without scripts are Skipped
    assert statuses(report) == {
        "BeforeBlockTraffic": "Skipped", "AfterBlockTraffic": "Skipped",
        "ApplicationStop": "Skipped", "DownloadBundle": "Succeeded", "BeforeInstall": "Succeeded",
        "Install": "Succeeded", "AfterInstall": "Succeeded", "ApplicationStart": "Succeeded",
        "ValidateService": "Succeeded", "BeforeAllowTraffic": "Skipped", "AfterAllowTraffic": "Skipped",
    }
    assert markers(env) == ["BeforeInstall v1", "AfterInstall v1", "ApplicationStart v1", "ValidateService v1"]
    for ev in report["events"]:
        assert ev["duration_ms"] is not None and ev["started_at"] and ev["ended_at"]


def test_second_deployment_runs_the_previous_revisions_stop_script(tmp_path, env):
    dest = tmp_path / "installed"
    state = tmp_path / "state"
    r1 = make_revision(tmp_path / "r1", version="v1", destination=dest)
    r2 = make_revision(tmp_path / "r2", version="v2", destination=dest, files={"index.html": "two\n"})
    assert deploy(r1, state, env=env)[0] == 0
    Path(env["BERTH_TEST_MARKERS"]).write_text("")
    code, report = deploy(r2, state, env=env)
    assert code == 0, report
    assert markers(env)[0] == "ApplicationStop v1"
    assert "ApplicationStop v2" not in markers(env)
    assert {e["name"]: e for e in report["events"]}["ApplicationStop"]["scripts_from"] == "previous"
    # v1 shipped VERSION, v2 does not: the file berth installed is gone, the new content is in place
    assert sorted(p.name for p in dest.iterdir()) == ["index.html"]
    assert (dest / "index.html").read_text() == "two\n"


def test_events_subset_and_custom_event(tmp_path, env):
    dest = tmp_path / "installed"
    rev = make_revision(tmp_path / "rev", version="v1", destination=dest,
                        events=("BeforeInstall", "ApplicationStart", "Warmup"))
    code, report = deploy(rev, tmp_path / "state", "--events", "BeforeInstall,ApplicationStart,Warmup", env=env)
    assert code == 0, report
    assert [ev["name"] for ev in report["events"]] == [
        "DownloadBundle", "BeforeInstall", "Install", "ApplicationStart", "Warmup"]
    assert markers(env) == ["BeforeInstall v1", "ApplicationStart v1", "Warmup v1"]


def test_bad_event_order_is_a_usage_error(tmp_path, env):
    rev = make_revision(tmp_path / "rev", version="v1", destination=tmp_path / "d")
    from tests.fakes.revisions import berth

    proc = berth(["deploy-local", "--bundle", str(rev), "--root", str(tmp_path / "s"),
                  "--events", "AfterInstall,BeforeInstall"], env=env)
    assert proc.returncode == 2
    assert "BeforeInstall" in proc.stderr


@pytest.mark.parametrize("where", ["command", "appspec"])
@pytest.mark.parametrize("behavior", ["DISALLOW", "OVERWRITE", "RETAIN"])
def test_file_exists_behavior(tmp_path, env, where, behavior):
    dest = tmp_path / "installed"
    dest.mkdir()
    (dest / "index.html").write_text("put there by hand\n")
    extra = {"file_exists_behavior": behavior} if where == "appspec" else None
    rev = make_revision(tmp_path / "rev", version="v1", destination=dest, appspec_extra=extra)
    args = ("--file-exists-behavior", behavior) if where == "command" else ()
    code, report = deploy(rev, tmp_path / "state", *args, env=env)
    if behavior == "DISALLOW":
        assert code == 1
        download = {e["name"]: e for e in report["events"]}["DownloadBundle"]
        diag = download["diagnostics"]
        assert diag["error_name"] == "FileConflict"
        assert str(dest / "index.html") in diag["message"]
        assert (dest / "index.html").read_text() == "put there by hand\n"
        assert not (dest / "VERSION").exists()
        assert markers(env) == []  # no hook ran
    elif behavior == "OVERWRITE":
        assert code == 0, report
        assert (dest / "index.html").read_text() == "<h1>v1</h1>\n"
    else:
        assert code == 0, report
        assert (dest / "index.html").read_text() == "put there by hand\n"
        assert (dest / "VERSION").read_text() == "v1\n"


def test_appspec_behavior_wins_over_command(tmp_path, env):
    dest = tmp_path / "installed"
    dest.mkdir()
    (dest / "index.html").write_text("keep me\n")
    rev = make_revision(tmp_path / "rev", version="v1", destination=dest,
                        appspec_extra={"file_exists_behavior": "RETAIN"})
    code, _ = deploy(rev, tmp_path / "state", "--file-exists-behavior", "OVERWRITE", env=env)
    assert code == 0
    assert (dest / "index.html").read_text() == "keep me\n"


def test_custom_appspec_file_name_and_a_missing_one(tmp_path, env):
    dest = tmp_path / "installed"
    rev = make_revision(tmp_path / "rev", version="v1", destination=dest, appspec_name="deploy/spec.yml")
    code, report = deploy(rev, tmp_path / "state", "--appspec-filename", "deploy/spec.yml", env=env)
    assert code == 0, report
    code, report = deploy(rev, tmp_path / "state2", "--appspec-filename", "nope.yml", env=env)
    assert code == 1
    diag = {e["name"]: e for e in report["events"]}["DownloadBundle"]["diagnostics"]
    assert diag["error_name"] == "AppSpecInvalid"
    assert "nope.yml" in diag["message"]


def test_retention_keeps_max_revisions(tmp_path, env):
    dest = tmp_path / "installed"
    state = tmp_path / "state"
    config = tmp_path / "agent.yml"
    config.write_text("max_revisions: 2\n")
    ids = []
    for n in range(4):
        rev = make_revision(tmp_path / f"r{n}", version=f"v{n}", destination=dest)
        code, report = deploy(rev, state, "--config", str(config), env=env)
        assert code == 0, report
        ids.append(report["deployment_id"])
    kept = sorted(p.name for p in (state / "groups/berth-local/default/deployments").iterdir())
    assert kept == sorted(ids[-2:])


def test_script_failure_reports_code_and_tail(tmp_path, env):
    dest = tmp_path / "installed"
    rev = make_revision(tmp_path / "rev", version="v1", destination=dest, scripts={
        "AfterInstall": "#!/bin/sh\necho starting migration\necho 'database is locked' >&2\nexit 1\n"})
    code, report = deploy(rev, tmp_path / "state", env=env)
    assert code == 1
    ev = {e["name"]: e for e in report["events"]}["AfterInstall"]
    assert ev["status"] == "Failed"
    assert ev["diagnostics"]["error_code"] == 4
    assert ev["diagnostics"]["script_name"] == "scripts/AfterInstall.sh"
    assert "database is locked" in ev["diagnostics"]["log_tail"]
    assert statuses(report)["ApplicationStart"] == "Skipped"


def test_script_timeout_and_one_that_ignores_sigterm(tmp_path, env):
    dest = tmp_path / "installed"
    config = tmp_path / "agent.yml"
    config.write_text("hook_kill_grace: 1\n")
    rev = make_revision(tmp_path / "rev", version="v1", destination=dest, timeout=1, scripts={
        "BeforeInstall": "#!/bin/sh\ntrap '' TERM\nwhile true; do sleep 0.1; done\n"})
    started = time.monotonic()
    code, report = deploy(rev, tmp_path / "state", "--config", str(config), env=env, timeout=60)
    elapsed = time.monotonic() - started
    assert code == 1
    diag = {e["name"]: e for e in report["events"]}["BeforeInstall"]["diagnostics"]
    assert diag["error_code"] == 3 and diag["error_name"] == "ScriptTimedOut"
    assert elapsed < 20  # timeout 1 s + grace 1 s, not forever


@pytest.mark.parametrize("problem", ["missing-script", "invalid-appspec", "conflict", "hostile-archive"])
def test_bad_revision_leaves_the_old_application_alone(tmp_path, env, problem):
    dest = tmp_path / "installed"
    state = tmp_path / "state"
    r1 = make_revision(tmp_path / "r1", version="v1", destination=dest)
    assert deploy(r1, state, env=env)[0] == 0
    before = tree(dest)
    Path(env["BERTH_TEST_MARKERS"]).write_text("")
    r2 = make_revision(tmp_path / "r2", version="v2", destination=dest, files={"index.html": "v2\n"})
    target: Path = r2
    if problem == "missing-script":
        (r2 / "scripts" / "AfterInstall.sh").unlink()
    elif problem == "invalid-appspec":
        (r2 / "appspec.yml").write_text("version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: x\n"
                                        "      timeout: soon\n")
    elif problem == "conflict":
        (tmp_path / "other").mkdir()
        (r2 / "app" / "extra.txt").write_text("new\n")
        (dest / "extra.txt").write_text("someone else's\n")
        before = tree(dest)
    else:
        target = tmp_path / "evil.tgz"
        with tarfile.open(target, "w:gz") as tf:
            info = tarfile.TarInfo("../../escape.txt")
            data = b"owned\n"
            info.size = len(data)
            import io

            tf.addfile(info, io.BytesIO(data))
    code, report = deploy(target, state, env=env)
    assert code == 1
    failed = [e for e in report["events"] if e["status"] == "Failed"]
    assert [e["name"] for e in failed] == ["DownloadBundle"]
    assert failed[0]["diagnostics"]["error_name"] in {"AppSpecInvalid", "FileConflict", "ArchiveUnsafe"}
    assert tree(dest) == before
    assert markers(env) == []  # ApplicationStop of v1 never ran
    assert not (tmp_path / "escape.txt").exists()


def test_non_executable_script_runs_with_a_warning(tmp_path, env):
    dest = tmp_path / "installed"
    rev = make_revision(tmp_path / "rev", version="v1", destination=dest)
    (rev / "scripts" / "AfterInstall.sh").chmod(0o644)
    code, report = deploy(rev, tmp_path / "state", env=env)
    assert code == 0, report
    assert "AfterInstall v1" in markers(env)
    assert any("AfterInstall.sh" in w for w in report["warnings"])


def test_background_server_does_not_hang_the_deployment(tmp_path, env):
    dest = tmp_path / "installed"
    pidfile = tmp_path / "server.pid"
    rev = make_revision(tmp_path / "rev", version="v1", destination=dest, scripts={
        "ApplicationStart": f"#!/bin/sh\nsleep 300 &\necho $! > {pidfile}\necho started\n"})
    started = time.monotonic()
    code, report = deploy(rev, tmp_path / "state", env=env, timeout=60)
    assert code == 0, report
    assert time.monotonic() - started < 15
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, 0)  # still running
    finally:
        os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(os.geteuid() != 0, reason="runas needs root")
def test_runas_switches_uid_gid_groups_and_home(tmp_path, env):
    import pwd

    nobody = pwd.getpwnam("nobody")
    out = tmp_path / "who"
    out.touch()
    out.chmod(0o666)
    for folder in (tmp_path, *tmp_path.parents):  # pytest's temp folders are 0700: let nobody traverse them
        if str(folder) in ("/", "/tmp"):
            break
        folder.chmod(0o755)
    rev = make_revision(tmp_path / "rev", version="v1", destination=tmp_path / "installed", events=())
    script = rev / "scripts" / "who.sh"
    script.write_text(f'#!/bin/sh\necho "$(id -u) $(id -g) $(id -G) $HOME $USER" > {out}\n')
    script.chmod(0o755)
    spec = (rev / "appspec.yml").read_text().replace(
        "hooks: {}", "hooks:\n  AfterInstall:\n  - location: scripts/who.sh\n    runas: nobody\n")
    (rev / "appspec.yml").write_text(spec)
    # the revision must be readable by nobody: berth's state root lives under tmp_path
    code, report = deploy(rev, tmp_path / "state", env=env)
    assert code == 0, report
    uid, gid, *rest = out.read_text().split()
    assert (int(uid), int(gid)) == (nobody.pw_uid, nobody.pw_gid)
    assert rest[-2:] == [nobody.pw_dir, "nobody"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_filesystem_keeps_the_old_files(tmp_path, env):
    dest = tmp_path / "installed"
    dest.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(dest)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        state = tmp_path / "state"
        r1 = make_revision(tmp_path / "r1", version="v1", destination=dest)
        assert deploy(r1, state, env=env)[0] == 0
        before = tree(dest)
        big = {"index.html": "v2\n", "blob.bin": "x" * (3 * 1024 * 1024)}
        r2 = make_revision(tmp_path / "r2", version="v2", destination=dest, files=big)
        code, report = deploy(r2, state, env=env)
        assert code == 1
        failed = next(e for e in report["events"] if e["status"] == "Failed")
        assert failed["name"] in {"Install", "DownloadBundle"}
        assert "No space left" in failed["diagnostics"]["message"] or "space" in failed["diagnostics"]["message"]
        assert tree(dest) == before
    finally:
        subprocess.run(["umount", "-l", str(dest)])
