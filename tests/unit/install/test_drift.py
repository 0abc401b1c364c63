"""check_drift: each kind of drift against a real install's manifest, the fast path and --full."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from agent.install.drift import DriftReport, check_drift
from agent.install.manifest import Manifest, ManifestEntry
from tests.unit.install.helpers import install, spec, write_tree

REV = {
    "app/index.html": b"<h1>v1</h1>\n",
    "app/VERSION": b"v1\n",
    "app/lib/a.py": b"A = 1\n",
    "app/lib/b.py": b"B = 2\n",
    "app/current": "->index.html",
}


@pytest.fixture
def installed(tmp_path: Path) -> tuple[Path, Manifest]:
    rev = write_tree(tmp_path / "rev", REV)
    dest = tmp_path / "srv" / "app"
    result = install(spec(("app", str(dest))), rev)
    return dest, result.manifest


def test_a_fresh_install_is_clean(installed):
    _, manifest = installed
    report = check_drift(manifest)
    assert report.clean
    assert report.checked == len(manifest.entries)
    assert report.hashed == 0
    assert report.summary() == f"clean ({report.checked} paths checked)"
    assert check_drift(manifest, full=True).clean


def test_each_kind_of_drift_is_reported_once(installed):
    dest, manifest = installed
    (dest / "index.html").write_text("<h1>changed</h1>\n")
    (dest / "VERSION").unlink()
    (dest / "lib" / "a.py").chmod(0o600)
    (dest / "current").unlink()
    (dest / "current").symlink_to("VERSION")
    (dest / "lib" / "b.py").unlink()
    (dest / "lib" / "b.py").symlink_to("a.py")
    (dest / "lib" / "new.py").write_text("added by hand\n")
    report = check_drift(manifest)
    assert not report.clean
    assert report.modified == [str(dest / "index.html")]
    assert report.missing == [str(dest / "VERSION")]
    assert report.mode_changed == [{"path": str(dest / "lib" / "a.py"), "expected": "0644", "found": "0600"}]
    assert report.retargeted == [{"path": str(dest / "current"), "expected": "index.html", "found": "VERSION"}]
    assert report.type_changed == [{"path": str(dest / "lib" / "b.py"), "expected": "file", "found": "symlink"}]
    assert report.unexpected == [str(dest / "lib" / "new.py")]
    assert report.owner_changed == []
    doc = report.to_dict()
    assert doc["clean"] is False
    assert doc["summary"] == ("drift: 1 modified, 1 missing, 1 type changed, 1 mode changed, 1 retargeted, "
                              "1 unexpected")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owner_change(installed):
    dest, manifest = installed
    nobody = pwd.getpwnam("nobody")
    os.chown(dest / "lib" / "a.py", nobody.pw_uid, nobody.pw_gid)
    report = check_drift(manifest)
    assert report.owner_changed == [{"path": str(dest / "lib" / "a.py"),
                                     "expected": f"{os.geteuid()}:{os.getegid()}",
                                     "found": f"{nobody.pw_uid}:{nobody.pw_gid}"}]
    assert report.modified == [] and report.mode_changed == []


def test_fast_path_trusts_size_and_mtime_and_full_does_not(installed):
    dest, manifest = installed
    path = dest / "lib" / "a.py"
    st = path.stat()
    path.write_bytes(b"A = 9\n")  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    fast = check_drift(manifest)
    assert fast.clean and fast.hashed == 0
    full = check_drift(manifest, full=True)
    assert full.modified == [str(path)]
    assert full.hashed == 4  # every regular file; symlinks need no hash


def test_touched_but_identical_file_is_rehashed_and_clean(installed):
    dest, manifest = installed
    os.utime(dest / "VERSION", ns=(1, 1))
    report = check_drift(manifest)
    assert report.clean
    assert report.hashed == 1


def test_a_size_change_is_modified_even_with_the_old_mtime(installed):
    dest, manifest = installed
    path = dest / "VERSION"
    st = path.stat()
    path.write_bytes(b"v1 and more\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert check_drift(manifest).modified == [str(path)]


def test_unexpected_only_in_folders_berth_created_and_retained_files_are_not_unexpected(tmp_path):
    rev = write_tree(tmp_path / "rev", {"app/index.html": b"new\n", "app/data/seed.txt": b"seed\n"})
    dest = tmp_path / "existing"
    dest.mkdir()
    (dest / "index.html").write_text("kept by RETAIN\n")
    result = install(spec(("app", str(dest))), rev, behavior="RETAIN")
    manifest = result.manifest
    assert str(dest / "index.html") in manifest.retained
    (dest / "notes.txt").write_text("the operator's own file, in a folder berth did not create\n")
    (dest / "data" / "upload.bin").write_bytes(b"\0")
    report = check_drift(manifest)
    assert report.unexpected == [str(dest / "data" / "upload.bin")]
    assert report.modified == [] and report.missing == []


def test_a_created_folder_that_vanished_is_missing_not_an_error(installed):
    dest, manifest = installed
    for name in ("a.py", "b.py"):
        (dest / "lib" / name).unlink()
    (dest / "lib").rmdir()
    report = check_drift(manifest)
    assert sorted(report.missing) == [str(dest / "lib"), str(dest / "lib" / "a.py"), str(dest / "lib" / "b.py")]
    assert report.unexpected == []


def test_unreadable_file_counts_as_modified(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"data")
    st = path.lstat()
    entry = ManifestEntry(str(path), "file", st.st_mode & 0o7777, st.st_uid, st.st_gid, "0" * 64, None, 4, 0)
    report = check_drift(Manifest({entry.path: entry}, (), ()))
    assert report.modified == [str(path)]


def test_empty_manifest_is_clean():
    report = check_drift(Manifest.empty())
    assert report == DriftReport()
    assert report.clean and report.checked == 0
