"""``berth verify``: the host compared with the last install's manifest, as an operator runs it."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.revisions import berth, deploy, make_revision

pytestmark = pytest.mark.integration

FILES = {"index.html": "<h1>v1</h1>\n", "VERSION": "v1\n", "lib/a.py": "A = 1\n", "lib/b.py": "B = 2\n",
         "conf/app.conf": "port=8080\n"}


@pytest.fixture
def installed(tmp_path: Path) -> tuple[Path, Path]:
    """(install folder, state root) after one successful deployment of FILES plus a symlink."""
    dest = tmp_path / "installed"
    rev = make_revision(tmp_path / "rev", version="v1", destination=dest, files=FILES)
    (rev / "app" / "current").symlink_to("index.html")
    markers = tmp_path / "markers.log"
    markers.touch()
    code, report = deploy(rev, tmp_path / "state", env={"BERTH_TEST_MARKERS": str(markers)})
    assert code == 0, report
    return dest, tmp_path / "state"


def verify(state: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    proc = berth(["verify", "--root", str(state), "--json", *extra])
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from None


DRIFT_KEYS = ("modified", "missing", "type_changed", "mode_changed", "owner_changed", "retargeted", "unexpected")


def drift(doc: dict[str, Any]) -> dict[str, Any]:
    """Only the non-empty drift lists."""
    return {k: doc[k] for k in DRIFT_KEYS if doc[k]}


def test_clean_host_reports_clean(installed):
    _, state = installed
    code, doc = verify(state)
    assert code == 0
    assert doc["clean"] is True and drift(doc) == {}
    assert doc["checked"] >= len(FILES) + 1
    proc = berth(["verify", "--root", str(state)])
    assert proc.returncode == 0
    assert "clean" in proc.stdout


def test_edit_delete_chmod_and_add_are_each_reported_exactly(installed):
    dest, state = installed
    (dest / "index.html").write_text("<h1>hacked</h1>\n")
    (dest / "VERSION").unlink()
    (dest / "conf" / "app.conf").chmod(0o666)
    (dest / "lib" / "c.py").write_text("dropped in by hand\n")
    code, doc = verify(state)
    assert code == 1
    assert doc["clean"] is False
    assert drift(doc) == {
        "modified": [str(dest / "index.html")],
        "missing": [str(dest / "VERSION")],
        "mode_changed": [{"path": str(dest / "conf" / "app.conf"), "expected": "0644", "found": "0666"}],
        "unexpected": [str(dest / "lib" / "c.py")],
    }
    human = berth(["verify", "--root", str(state)])
    assert human.returncode == 1
    out = human.stdout
    assert f"modified:  {dest / 'index.html'}" in out
    assert f"missing:   {dest / 'VERSION'}" in out
    assert f"mode:      {dest / 'conf' / 'app.conf'} (expected 0644, found 0666)" in out
    assert f"unexpected: {dest / 'lib' / 'c.py'}" in out


def test_symlink_retargeted_and_file_replaced_by_folder(installed):
    dest, state = installed
    (dest / "current").unlink()
    (dest / "current").symlink_to("VERSION")
    (dest / "lib" / "b.py").unlink()
    (dest / "lib" / "b.py").mkdir()
    code, doc = verify(state)
    assert code == 1
    assert drift(doc) == {
        "retargeted": [{"path": str(dest / "current"), "expected": "index.html", "found": "VERSION"}],
        "type_changed": [{"path": str(dest / "lib" / "b.py"), "expected": "file", "found": "directory"}],
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owner_changed(installed):
    dest, state = installed
    nobody = pwd.getpwnam("nobody")
    os.chown(dest / "lib" / "a.py", nobody.pw_uid, -1)
    code, doc = verify(state)
    assert code == 1
    assert drift(doc) == {"owner_changed": [{"path": str(dest / "lib" / "a.py"), "expected": f"0:{os.getegid()}",
                                             "found": f"{nobody.pw_uid}:{os.getegid()}"}]}


def test_fast_path_misses_an_edit_that_restored_size_and_mtime_and_full_catches_it(installed):
    dest, state = installed
    target = dest / "lib" / "a.py"
    st = target.stat()
    target.write_text("A = 9\n")  # same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    code, fast = verify(state)
    assert code == 0 and fast["clean"] is True
    assert fast["hashed"] == 0  # nothing changed in size or mtime: no file was re-hashed
    code, full = verify(state, "--full")
    assert code == 1
    assert drift(full) == {"modified": [str(target)]}
    assert full["hashed"] == len(FILES)
    # an edit that leaves the mtime changed is caught without --full
    target.write_text("A = 7\n")
    code, fast = verify(state)
    assert code == 1 and drift(fast) == {"modified": [str(target)]}
    assert fast["hashed"] == 1


def test_files_outside_folders_berth_created_are_not_reported(tmp_path):
    dest = tmp_path / "installed"
    dest.mkdir()
    (dest / "uploads").mkdir()  # existed before berth: its content is the application's business
    rev = make_revision(tmp_path / "rev", version="v1", destination=dest)
    markers = tmp_path / "markers.log"
    markers.touch()
    assert deploy(rev, tmp_path / "state", env={"BERTH_TEST_MARKERS": str(markers)})[0] == 0
    (dest / "uploads" / "photo.jpg").write_text("jpeg\n")
    (dest / "server.log").write_text("log line\n")
    code, doc = verify(tmp_path / "state")
    assert code == 0, doc
    assert doc["clean"] is True


def test_verify_names_the_deployment_it_compares_with(tmp_path):
    dest = tmp_path / "installed"
    markers = tmp_path / "markers.log"
    markers.touch()
    state = tmp_path / "state"
    ids = []
    for version in ("v1", "v2"):
        rev = make_revision(tmp_path / version, version=version, destination=dest)
        code, report = deploy(rev, state, env={"BERTH_TEST_MARKERS": str(markers)})
        assert code == 0, report
        ids.append(report["deployment_id"])
    code, doc = verify(state)
    assert code == 0
    assert doc["deployment_id"] == ids[-1]
    assert (doc["application"], doc["deployment_group"]) == ("berth-local", "default")


def test_usage_errors_exit_2(installed, tmp_path):
    _, state = installed
    proc = berth(["verify", "--root", str(state), "--deployment-group", "nothing-here"])
    assert proc.returncode == 2
    assert "nothing was installed" in proc.stderr and "nothing-here" in proc.stderr
    proc = berth(["verify", "--root", str(tmp_path / "no-such-root")])
    assert proc.returncode == 2
    proc = berth(["verify", "--root", str(state), "--frobnicate"])
    assert proc.returncode == 2
