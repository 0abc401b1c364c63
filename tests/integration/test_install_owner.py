"""Ownership and ACLs on installed files only (needs root: chown to another user)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from agent.model.appspec import Permission
from tests.unit.install.helpers import install, plan, spec, write_tree

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root"),
]

NOBODY = 65534


def _owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def test_owner_by_name_and_by_id_only_on_installed_files(tmp_path: Path) -> None:
    rev = write_tree(tmp_path / "rev", {"a.txt": b"a", "run.sh": b"#!/bin/sh\n", "sub/b.txt": b"b"})
    os.chmod(rev / "run.sh", 0o755)
    dest = tmp_path / "app"
    write_tree(dest, {"host.txt": b"the host's", "sub/host2.txt": b"also the host's"})
    d = str(dest)
    perms = (
        Permission(d, pattern="*.txt", owner="nobody", group="nogroup"),
        Permission(d, pattern="*.sh", owner=str(NOBODY), group=str(NOBODY), mode=0o4750),
        Permission(f"{d}/sub", owner=str(NOBODY), mode=0o640),
    )
    first = install(spec(("/", d), permissions=perms), rev)
    assert _owner(dest / "a.txt") == (NOBODY, NOBODY)
    assert _owner(dest / "sub/b.txt") == (NOBODY, 0)
    # chown clears setuid; berth sets the owner first so the requested mode survives
    assert _owner(dest / "run.sh") == (NOBODY, NOBODY)
    assert stat.S_IMODE(os.stat(dest / "run.sh").st_mode) == 0o4750
    assert _owner(dest / "host.txt") == (0, 0)
    assert _owner(dest / "sub/host2.txt") == (0, 0)
    assert _owner(dest / "sub") == (0, 0)  # existed before: not berth's
    entry = first.manifest.entries[str(dest / "a.txt")]
    assert (entry.uid, entry.gid) == (NOBODY, NOBODY)

    # same revision again: owner and mode already right, so nothing is rewritten
    inode = os.stat(dest / "a.txt").st_ino
    again = install(spec(("/", d), permissions=perms), rev, first.manifest)
    assert (again.written, again.unchanged) == (0, 3)
    assert os.stat(dest / "a.txt").st_ino == inode


def test_owner_changed_on_the_host_is_rewritten(tmp_path: Path) -> None:
    rev = write_tree(tmp_path / "rev", {"a.txt": b"a"})
    d = str(tmp_path / "app")
    perms = (Permission(d, owner="nobody"),)
    first = install(spec(("/", d), permissions=perms), rev)
    os.chown(tmp_path / "app/a.txt", 0, 0)
    again = install(spec(("/", d), permissions=perms), rev, first.manifest)
    assert again.written == 1 and _owner(tmp_path / "app/a.txt")[0] == NOBODY


def test_unknown_user_is_reported_at_plan_time(tmp_path: Path) -> None:
    rev = write_tree(tmp_path / "rev", {"a.txt": b"a"})
    d = str(tmp_path / "app")
    p = plan(spec(("/", d), permissions=(Permission(d, owner="berth-no-such-user", group="berth-no-such-group"),)),
             rev)
    messages = [m for r, m in p.problems if r == "InstallFailed"]
    assert any("user 'berth-no-such-user' does not exist" in m for m in messages)
    assert any("group 'berth-no-such-group' does not exist" in m for m in messages)


def _acl_supported(probe: Path) -> bool:
    setfacl = shutil.which("setfacl")
    if setfacl is None:
        return False
    probe.write_bytes(b"")
    return subprocess.run([setfacl, "-m", "u:nobody:r", str(probe)], capture_output=True).returncode == 0


def test_acls_are_applied_with_setfacl(tmp_path: Path) -> None:
    if not _acl_supported(tmp_path / "probe"):
        pytest.skip("setfacl is not installed or this filesystem refuses ACLs")
    rev = write_tree(tmp_path / "rev", {"a.txt": b"a", "sub/b.txt": b"b"})
    dest = tmp_path / "app"
    d = str(dest)
    perms = (
        Permission(d, types=("file",), mode=0o640, acls=("u:nobody:rw",)),
        Permission(d, types=("directory",), acls=("d:u:nobody:r",)),
    )
    first = install(spec(("/", d), permissions=perms), rev)
    getfacl = shutil.which("getfacl")
    assert getfacl is not None
    out = subprocess.run([getfacl, "-p", str(dest / "sub/b.txt")], capture_output=True, text=True).stdout
    assert "user:nobody:rw-" in out
    out = subprocess.run([getfacl, "-p", str(dest / "sub")], capture_output=True, text=True).stdout
    assert "default:user:nobody:r--" in out
    # setfacl changed the group bits to the ACL mask; a redeploy still sees the files as unchanged
    assert stat.S_IMODE(os.stat(dest / "a.txt").st_mode) == 0o660
    again = install(spec(("/", d), permissions=perms), rev, first.manifest)
    assert (again.written, again.unchanged) == (0, 2)
    out = subprocess.run([getfacl, "-p", str(dest / "a.txt")], capture_output=True, text=True).stdout
    assert "user:nobody:rw-" in out


def test_setgid_folder_gives_its_group_as_cp_would(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    os.chown(www, 0, NOBODY)
    os.chmod(www, 0o2775)
    rev = write_tree(tmp_path / "rev", {"index.html": b"hi", "css/site.css": b"body{}"})
    first = install(spec(("/", str(www))), rev)
    assert _owner(www / "index.html") == (0, NOBODY)
    assert _owner(www / "css") == (0, NOBODY)
    assert os.stat(www / "css").st_mode & stat.S_ISGID  # a new folder keeps the setgid bit, as mkdir does
    assert _owner(www / "css/site.css") == (0, NOBODY)
    assert first.manifest.entries[str(www / "index.html")].gid == NOBODY
    again = install(spec(("/", str(www))), rev, first.manifest)
    assert (again.written, again.unchanged) == (0, 2)
