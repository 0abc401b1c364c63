"""permissions: which installed paths each entry reaches, and the tools it needs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent.errors import AppSpecInvalid, ToolMissing
from agent.install.installer import execute_install
from agent.model.appspec import Permission, SELinuxContext
from tests.unit.install.helpers import install, plan, spec, write_tree


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def rev(tmp_path: Path) -> Path:
    tree: dict[str, bytes | str] = {
        "a.sh": b"a", "b.txt": b"b", "c.log": b"c", "sub/d.sh": b"d", "sub/e.log": b"e", "link": "->b.txt"
    }
    root = write_tree(tmp_path / "rev", tree)
    for name in tree:
        if name != "link":
            os.chmod(root / name, 0o644)
    return root


def test_pattern_except_and_type_select_paths(rev: Path, tmp_path: Path) -> None:
    dest = tmp_path / "app"
    write_tree(dest, {"host.txt": b"not berth's"})
    os.chmod(dest / "host.txt", 0o644)
    d = str(dest)
    perms = (
        Permission(d, pattern="*.sh", mode=0o700),  # direct children only: a.sh, not sub/d.sh
        Permission(f"{d}/sub", types=("file",), mode=0o600),  # ** under sub
        Permission(d, types=("directory",), mode=0o750),  # sub
        Permission(d, pattern="*", except_=("*.sh", "sub"), types=("file",), mode=0o640),  # b.txt, c.log
    )
    install(spec(("/", d), permissions=perms), rev)
    modes = {p: _mode(dest / p) for p in ("a.sh", "b.txt", "c.log", "sub", "sub/d.sh", "sub/e.log", "host.txt")}
    assert modes == {
        "a.sh": 0o700,
        "b.txt": 0o640,
        "c.log": 0o640,
        "sub": 0o750,
        "sub/d.sh": 0o600,
        "sub/e.log": 0o600,
        "host.txt": 0o644,  # matched by name, but berth did not install it
    }
    assert os.path.islink(dest / "link")  # symlinks are never chmod-ed (that would follow them)


def test_except_applies_to_direct_children_as_in_codedeploy(rev: Path, tmp_path: Path) -> None:
    d = str(tmp_path / "app")
    install(spec(("/", d), permissions=(Permission(d, except_=("*.log",), types=("file",), mode=0o600),)), rev)
    assert _mode(tmp_path / "app/c.log") == 0o644
    assert _mode(tmp_path / "app/sub/e.log") == 0o600


def test_object_can_be_an_installed_file(rev: Path, tmp_path: Path) -> None:
    d = str(tmp_path / "app")
    install(spec(("/", d), permissions=(Permission(f"{d}/b.txt", mode=0o604),)), rev)
    assert _mode(tmp_path / "app/b.txt") == 0o604
    assert _mode(tmp_path / "app/c.log") == 0o644


def test_object_that_is_a_file_needs_pattern_star_star(rev: Path, tmp_path: Path) -> None:
    d = str(tmp_path / "app")
    p = plan(spec(("/", d), permissions=(Permission(f"{d}/b.txt", pattern="*.txt", mode=0o600),)), rev)
    with pytest.raises(AppSpecInvalid, match=r"permissions\[0\].*pattern must be '\*\*'"):
        p.raise_for_problems()


def test_two_entries_reaching_one_path_is_an_error(rev: Path, tmp_path: Path) -> None:
    d = str(tmp_path / "app")
    perms = (Permission(d, mode=0o600), Permission(f"{d}/sub", pattern="*.sh", mode=0o700))
    p = plan(spec(("/", d), permissions=perms), rev)
    assert p.appspec_problems == (
        (
            "permissions[1]",
            f"applies to {d}/sub/d.sh that permissions[0] already sets; each installed path may be matched by one "
            "entry only: narrow pattern/except/type so they do not overlap",
        ),
    )
    with pytest.raises(AppSpecInvalid):
        execute_install(p, None)
    assert not (tmp_path / "app").exists()


def test_default_acl_on_a_file_is_an_error(rev: Path, tmp_path: Path, fake_tools: Path) -> None:
    d = str(tmp_path / "app")
    p = plan(spec(("/", d), permissions=(Permission(d, acls=("d:u:nobody:r",)),)), rev, tool_path=str(fake_tools))
    assert p.appspec_problems and "directories only" in p.appspec_problems[0][1]


def test_missing_setfacl_is_reported_at_plan_time(rev: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-tools"
    empty.mkdir()
    d = str(tmp_path / "app")
    perms = (Permission(d, acls=("u:nobody:r",)), )
    p = plan(spec(("/", d), permissions=perms), rev, tool_path=str(empty))
    assert [r for r, _ in p.problems] == ["ToolMissing"]
    with pytest.raises(ToolMissing, match=r"permissions\[0\].*setfacl.*install the 'acl' package"):
        p.raise_for_problems()
    assert not (tmp_path / "app").exists()


def test_missing_semanage_and_restorecon_are_both_named(rev: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-tools"
    empty.mkdir()
    d = str(tmp_path / "app")
    perms = (Permission(d, context=SELinuxContext(None, "httpd_sys_content_t", None)),)
    p = plan(spec(("/", d), permissions=perms), rev, tool_path=str(empty))
    messages = " ".join(m for _, m in p.problems)
    assert "semanage" in messages and "restorecon" in messages


def test_problems_are_all_listed_at_once(rev: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-tools"
    empty.mkdir()
    d = tmp_path / "app"
    write_tree(d, {"b.txt": b"host"})
    perms = (Permission(str(d), acls=("u:nobody:r",), owner="no-such-user-berth"),)
    p = plan(spec(("/", str(d)), permissions=perms), rev, tool_path=str(empty))
    assert sorted(r for r, _ in p.problems) == ["FileConflict", "InstallFailed", "ToolMissing"]
    assert any("no-such-user-berth" in m and "does not exist" in m for _, m in p.problems)


@pytest.fixture
def fake_tools(tmp_path: Path) -> Path:
    """setfacl/semanage/restorecon stand-ins that log their argv and the file's mode when called."""
    tools = tmp_path / "tools"
    tools.mkdir()
    log = tmp_path / "tools.log"
    script = (
        f'#!/bin/sh\necho "$(basename "$0") $*" >> {log}\n'
        f'for a; do [ -f "$a" ] && stat -c "  %a %n" "$a" >> {log}; done\nexit 0\n'
    )
    for name in ("setfacl", "semanage", "restorecon"):
        (tools / name).write_text(script)
        os.chmod(tools / name, 0o755)
    return tools


def test_acls_and_context_run_after_mode_with_the_documented_commands(
    rev: Path, tmp_path: Path, fake_tools: Path
) -> None:
    d = str(tmp_path / "app")
    perms = (
        Permission(d, pattern="*.sh", mode=0o750, acls=("u:nobody:rx", "g:nogroup:r"),
                   context=SELinuxContext("system_u", "bin_t", "s0")),
    )
    install(spec(("/", d), permissions=perms), rev, tool_path=str(fake_tools))
    lines = (tmp_path / "tools.log").read_text().splitlines()
    assert lines == [
        f"setfacl -m u:nobody:rx {d}/a.sh",
        f"  750 {d}/a.sh",
        f"setfacl -m g:nogroup:r {d}/a.sh",
        f"  750 {d}/a.sh",
        f"semanage fcontext -a -t bin_t -s system_u -r s0 {d}/a.sh",
        f"  750 {d}/a.sh",
        f"restorecon {d}/a.sh",
        f"  750 {d}/a.sh",
    ]


def test_acls_batch_many_paths_per_call(rev: Path, tmp_path: Path, fake_tools: Path) -> None:
    d = str(tmp_path / "app")
    install(spec(("/", d), permissions=(Permission(d, types=("file",), acls=("u:nobody:r",)),)), rev,
            tool_path=str(fake_tools))
    calls = [line for line in (tmp_path / "tools.log").read_text().splitlines() if line.startswith("setfacl")]
    assert len(calls) == 1 and calls[0].count(d) == 5  # five installed files, one process


def test_failing_tool_is_reported_after_the_files_are_in_place(rev: Path, tmp_path: Path, fake_tools: Path) -> None:
    from agent.install.installer import PartialInstall

    (fake_tools / "setfacl").write_text("#!/bin/sh\necho 'setfacl: Option -m: Invalid argument' >&2\nexit 1\n")
    d = str(tmp_path / "app")
    with pytest.raises(PartialInstall, match=r"permissions\[0\]: setfacl -m u:bogus:r failed.*Invalid argument") as e:
        install(spec(("/", d), permissions=(Permission(d, acls=("u:bogus:r",)),)), rev, tool_path=str(fake_tools))
    assert (tmp_path / "app/b.txt").read_bytes() == b"b"
    assert f"{d}/b.txt" in e.value.manifest.entries
