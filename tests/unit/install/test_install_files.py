"""What lands where: directory and file sources, the whole revision, symlinks, conflicts and cleanup."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.errors import AppSpecInvalid, FileConflict, UsageError
from agent.install.installer import execute_install
from agent.install.manifest import Manifest
from tests.unit.install.helpers import install, plan, read_tree, snapshot, spec, temp_files, write_tree

REV = {
    "appspec.yml": b"version: 0.0\n",
    "app/main.py": b"print('v1')\n",
    "app/lib/util.py": b"x = 1\n",
    "config/app.conf": b"port=80\n",
    "scripts/start.sh": b"#!/bin/sh\n",
}


@pytest.fixture
def rev(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "rev", REV)


def test_directory_source_copies_its_contents(rev: Path, tmp_path: Path) -> None:
    dest = tmp_path / "srv" / "app"
    result = install(spec(("app", str(dest))), rev)
    assert read_tree(dest) == {"main.py": b"print('v1')\n", "lib/util.py": b"x = 1\n"}
    assert result.written == 2
    # berth created srv, srv/app and srv/app/lib, and says so
    created = set(result.manifest.created_dirs)
    assert {str(tmp_path / "srv"), str(dest), str(dest / "lib")} <= created
    assert str(tmp_path) not in created


def test_file_source_goes_to_destination_slash_basename(rev: Path, tmp_path: Path) -> None:
    dest = tmp_path / "etc"
    install(spec(("config/app.conf", str(dest))), rev)
    assert read_tree(dest) == {"app.conf": b"port=80\n"}


def test_source_slash_is_the_whole_revision_including_the_appspec(rev: Path, tmp_path: Path) -> None:
    dest = tmp_path / "all"
    install(spec(("/", str(dest))), rev)
    assert read_tree(dest) == REV


def test_leading_slash_source_is_still_revision_relative(rev: Path, tmp_path: Path) -> None:
    install(spec(("/config", str(tmp_path / "c"))), rev)
    assert read_tree(tmp_path / "c") == {"app.conf": b"port=80\n"}


def test_file_modes_and_mtimes_of_the_revision_are_kept(rev: Path, tmp_path: Path) -> None:
    os.chmod(rev / "scripts/start.sh", 0o750)
    os.utime(rev / "scripts/start.sh", ns=(1_000_000_000, 1_500_000_000))
    install(spec(("scripts", str(tmp_path / "s"))), rev)
    st = os.stat(tmp_path / "s/start.sh")
    assert (st.st_mode & 0o7777, st.st_mtime_ns) == (0o750, 1_500_000_000)


def test_symlinks_stay_symlinks(tmp_path: Path) -> None:
    rev = write_tree(tmp_path / "rev", {"a.txt": b"a", "link": "->a.txt", "abs": "->/etc/hostname", "d/x": b"x"})
    os.symlink("d", rev / "dirlink")
    dest = tmp_path / "dest"
    result = install(spec(("/", str(dest))), rev)
    assert os.readlink(dest / "link") == "a.txt"
    assert os.readlink(dest / "abs") == "/etc/hostname"
    assert os.readlink(dest / "dirlink") == "d"  # a symlink to a folder is not followed
    assert result.manifest.entries[str(dest / "link")].type == "symlink"
    assert result.manifest.entries[str(dest / "link")].target == "a.txt"


def test_disallow_lists_every_conflict_and_touches_nothing(rev: Path, tmp_path: Path) -> None:
    dest = tmp_path / "all"
    write_tree(dest, {"app/main.py": b"mine", "config/app.conf": b"mine too", "unrelated": b"keep"})
    before = snapshot(tmp_path / "all")
    p = plan(spec(("/", str(dest))), rev)
    conflicting = {c.path for c in p.conflicts if c.resolution == "fail"}
    assert conflicting == {str(dest / "app/main.py"), str(dest / "config/app.conf")}
    assert [r for r, _ in p.problems] == ["FileConflict", "FileConflict"]
    with pytest.raises(FileConflict) as caught:
        p.raise_for_problems()
    assert str(dest / "app/main.py") in str(caught.value) and str(dest / "config/app.conf") in str(caught.value)
    with pytest.raises(FileConflict):
        execute_install(p, None)
    assert snapshot(tmp_path / "all") == before


def test_a_directory_where_a_file_must_go_conflicts_whatever_the_behaviour(rev: Path, tmp_path: Path) -> None:
    dest = tmp_path / "etc"
    (dest / "app.conf").mkdir(parents=True)
    (tmp_path / "other").write_bytes(b"file")  # a file where the revision needs a directory
    for behavior in ("DISALLOW", "OVERWRITE", "RETAIN"):
        p = plan(spec(("config/app.conf", str(dest)), ("app", str(tmp_path / "other"))), rev, behavior=behavior)
        reasons = {c.path: c.reason for c in p.conflicts}
        assert "is a directory where the revision has a file" in reasons[str(dest / "app.conf")]
        assert "is a file where the revision needs a directory" in reasons[str(tmp_path / "other")]
        with pytest.raises(FileConflict):
            p.raise_for_problems()


def test_overwrite_takes_ownership_and_the_next_cleanup_removes_it(rev: Path, tmp_path: Path) -> None:
    dest = tmp_path / "etc"
    write_tree(dest, {"app.conf": b"hand made"})
    first = install(spec(("config/app.conf", str(dest))), rev, behavior="OVERWRITE")
    assert (dest / "app.conf").read_bytes() == b"port=80\n"
    assert str(dest / "app.conf") in first.manifest.entries
    # the next revision no longer ships it: it belongs to the deployment now, so it goes
    rev2 = write_tree(tmp_path / "rev2", {"config/other.conf": b"x"})
    second = install(spec(("config/other.conf", str(dest))), rev2, first.manifest)
    assert read_tree(dest) == {"other.conf": b"x"}
    assert second.removed == 1


def test_retain_keeps_the_existing_file_and_never_owns_it(rev: Path, tmp_path: Path) -> None:
    dest = tmp_path / "etc"
    write_tree(dest, {"app.conf": b"hand made"})
    rev = write_tree(rev, {"config/new.conf": b"new"})
    first = install(spec(("config", str(dest))), rev, behavior="RETAIN")
    assert read_tree(dest) == {"app.conf": b"hand made", "new.conf": b"new"}
    assert first.manifest.retained == (str(dest / "app.conf"),)
    assert str(dest / "app.conf") not in first.manifest.entries
    # a later revision without the file: cleanup never removes a retained file
    rev2 = write_tree(tmp_path / "rev2", {"config/new.conf": b"new2"})
    install(spec(("config", str(dest))), rev2, first.manifest)
    assert read_tree(dest) == {"app.conf": b"hand made", "new.conf": b"new2"}


def test_cleanup_removes_old_files_and_emptied_dirs_but_never_foreign_files(tmp_path: Path) -> None:
    dest = tmp_path / "app"
    rev1 = write_tree(tmp_path / "r1", {"keep.txt": b"1", "old/a.txt": b"a", "old/deep/b.txt": b"b", "gone/c": b"c"})
    first = install(spec(("/", str(dest))), rev1)
    (dest / "gone" / "notes.txt").write_bytes(b"the operator's file")
    rev2 = write_tree(tmp_path / "r2", {"keep.txt": b"2"})
    second = install(spec(("/", str(dest))), rev2, first.manifest)
    assert read_tree(dest) == {"keep.txt": b"2", "gone/notes.txt": b"the operator's file"}
    assert not (dest / "old").exists()
    assert second.removed == 5  # old/a.txt, old/deep/b.txt, gone/c, old/deep, old
    assert any("gone" in w and "did not install" in w for w in second.warnings)
    # the folder berth created but could not remove stays berth's, so a later cleanup can finish the job
    assert str(dest / "gone") in second.manifest.created_dirs
    assert not temp_files(tmp_path)


def test_unchanged_files_are_left_in_place_but_host_edits_are_rewritten(rev: Path, tmp_path: Path) -> None:
    dest = tmp_path / "app"
    first = install(spec(("app", str(dest))), rev)
    inode_main = os.stat(dest / "main.py").st_ino
    inode_util = os.stat(dest / "lib/util.py").st_ino
    (dest / "lib/util.py").write_bytes(b"x = 2\n")  # same size, edited on the host
    p = plan(spec(("app", str(dest))), rev, first.manifest)
    actions = {i.destination: i.action for i in p.items if i.type == "file"}
    assert actions == {str(dest / "main.py"): "unchanged", str(dest / "lib/util.py"): "replace"}
    second = execute_install(p, first.manifest)
    assert (second.written, second.unchanged) == (1, 1)
    assert os.stat(dest / "main.py").st_ino == inode_main
    assert os.stat(dest / "lib/util.py").st_ino != inode_util
    assert (dest / "lib/util.py").read_bytes() == b"x = 1\n"


def test_a_mode_change_alone_is_not_unchanged(rev: Path, tmp_path: Path) -> None:
    dest = tmp_path / "app"
    first = install(spec(("app", str(dest))), rev)
    os.chmod(dest / "main.py", 0o600)
    p = plan(spec(("app", str(dest))), rev, first.manifest)
    assert {i.destination: i.action for i in p.items}[str(dest / "main.py")] == "replace"


def test_file_becomes_directory_and_back(tmp_path: Path) -> None:
    dest = tmp_path / "app"
    first = install(spec(("/", str(dest))), write_tree(tmp_path / "r1", {"conf": b"flat", "x": b"x"}))
    second = install(spec(("/", str(dest))), write_tree(tmp_path / "r2", {"conf/a": b"nested", "x": b"x"}),
                     first.manifest)
    assert read_tree(dest) == {"conf/a": b"nested", "x": b"x"}
    third = install(spec(("/", str(dest))), write_tree(tmp_path / "r3", {"conf": b"flat again", "x": b"x"}),
                    second.manifest)
    assert read_tree(dest) == {"conf": b"flat again", "x": b"x"}
    assert str(dest / "conf") not in third.manifest.created_dirs
    assert not temp_files(tmp_path)


def test_a_destination_appearing_after_the_plan_is_a_conflict_under_disallow(rev: Path, tmp_path: Path) -> None:
    dest = tmp_path / "etc"
    dest.mkdir()
    p = plan(spec(("config", str(dest))), rev)
    (dest / "app.conf").write_bytes(b"written by a BeforeInstall script")
    with pytest.raises(FileConflict, match="appeared after the install was planned"):
        execute_install(p, None)
    assert read_tree(dest) == {"app.conf": b"written by a BeforeInstall script"}
    assert not temp_files(tmp_path)


def test_two_sources_on_one_destination_is_an_appspec_problem(rev: Path, tmp_path: Path) -> None:
    rev = write_tree(rev, {"other/app.conf": b"other"})
    p = plan(spec(("config", str(tmp_path / "d")), ("other", str(tmp_path / "d"))), rev)
    with pytest.raises(AppSpecInvalid, match=r"files\[1\].*app.conf.*files\[0\]"):
        p.raise_for_problems()


def test_missing_source_is_an_appspec_problem(rev: Path, tmp_path: Path) -> None:
    p = plan(spec(("nope", str(tmp_path / "d"))), rev)
    assert p.appspec_problems and p.appspec_problems[0][0] == "files[0].source"


def test_unknown_behaviour_is_a_usage_error(rev: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="DISALLOW"):
        plan(spec(("app", str(tmp_path / "d"))), rev, behavior="CLOBBER")


def test_plan_is_json_and_reports_space(rev: Path, tmp_path: Path) -> None:
    p = plan(spec(("/", str(tmp_path / "all"))), rev)
    doc = json.loads(json.dumps(p.to_dict()))
    assert doc["counts"]["add"] == len(REV)
    assert {i["source"] for i in doc["items"] if i["type"] == "file"} == set(REV)
    assert doc["space"] and doc["space"][0]["bytes_needed"] > 0 and doc["space"][0]["bytes_free"] > 0
    assert str(tmp_path / "all") in doc["dirs_to_create"]
    assert not (tmp_path / "all").exists()  # planning touched nothing


def test_a_temp_file_left_by_a_dead_run_with_our_pid_is_taken_over(rev: Path, tmp_path: Path) -> None:
    dest = tmp_path / "etc"
    first = install(spec(("config", str(dest))), rev)
    stale = dest / f".berth-tmp-app.conf-{os.getpid()}"
    stale.write_bytes(b"half written")
    rev2 = write_tree(tmp_path / "rev2", {"config/app.conf": b"port=81\n"})
    install(spec(("config", str(dest))), rev2, first.manifest)
    assert read_tree(dest) == {"app.conf": b"port=81\n"}


def test_intent_manifest_turns_leftovers_of_an_interrupted_install_into_berths(rev: Path, tmp_path: Path) -> None:
    dest = tmp_path / "app"
    p = plan(spec(("app", str(dest))), rev)
    intent = p.intent_manifest()
    # the agent died after putting one file in place
    write_tree(dest, {"main.py": b"print('v1')\n"})
    again = plan(spec(("app", str(dest))), rev, Manifest.empty().merged(intent))
    assert not again.problems
    result = execute_install(again, Manifest.empty().merged(intent))
    assert read_tree(dest) == {"main.py": b"print('v1')\n", "lib/util.py": b"x = 1\n"}
    assert result.unchanged == 1


def test_retain_applies_to_a_file_that_appeared_after_the_plan(rev: Path, tmp_path: Path) -> None:
    dest = tmp_path / "etc"
    dest.mkdir()
    p = plan(spec(("config", str(dest))), rev, behavior="RETAIN")
    (dest / "app.conf").write_bytes(b"made meanwhile")
    result = execute_install(p, None)
    assert read_tree(dest) == {"app.conf": b"made meanwhile"}
    assert result.manifest.retained == (str(dest / "app.conf"),)
