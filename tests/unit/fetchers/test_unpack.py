"""Revisions unpack faithfully: contents, permission bits, mtimes, symlinks, the single-top-folder rule."""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import stat
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import ArchiveCorrupt, ArchiveUnsafe, RevisionUnavailable, UsageError
from agent.fetchers import unpack as unpack_module
from agent.fetchers.unpack import Limits, UnpackResult, guess_bundle_type, unpack

from .archives import MTIME, snapshot, tar_bytes, tinfo, write_tar, write_zip, zinfo

REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
SCRIPT = b"#!/bin/sh\necho hello\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def app_members() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    return [
        (tinfo("scripts", DIR, mode=0o750), None),
        (tinfo("scripts/start.sh", mode=0o755), SCRIPT),
        (tinfo("scripts/suid.sh", mode=0o4755), SCRIPT),
        (tinfo("config/secret.conf", mode=0o640, uid=1234, gid=5678, uname="bob", gname="staff"), b"k=v\n"),
        (tinfo("readonly", DIR, mode=0o555), None),
        (tinfo("readonly/inside.txt", mode=0o444), b"ro\n"),
        (tinfo("releases/v1/app.py"), b"print(1)\n"),
        (tinfo("current", SYM, linkname="releases/v1"), None),
        (tinfo("releases/v1/up", SYM, linkname="../../scripts/start.sh"), None),
        (tinfo("dangling", SYM, linkname="not/yet/there"), None),
        (tinfo("hard.sh", LNK, linkname="scripts/start.sh"), None),
        (tinfo("empty", DIR), None),
    ]


def check_app(root: Path) -> None:
    assert (root / "scripts/start.sh").read_bytes() == SCRIPT
    assert mode(root / "scripts/start.sh") == 0o755 and os.access(root / "scripts/start.sh", os.X_OK)
    assert mode(root / "scripts/suid.sh") == 0o755  # setuid dropped, the rest kept
    assert mode(root / "config/secret.conf") == 0o640
    assert mode(root / "scripts") == 0o750
    assert mode(root / "readonly") == 0o555 and (root / "readonly/inside.txt").read_bytes() == b"ro\n"
    assert (root / "config/secret.conf").stat().st_uid == os.getuid()  # never the archive's owner
    assert int((root / "scripts/start.sh").stat().st_mtime) == MTIME
    assert int((root / "scripts").stat().st_mtime) == MTIME  # folders too, after their contents went in
    assert os.readlink(root / "current") == "releases/v1"
    assert (root / "current/app.py").read_bytes() == b"print(1)\n"
    assert (root / "releases/v1/up").read_bytes() == SCRIPT
    assert os.readlink(root / "dangling") == "not/yet/there"
    assert (root / "hard.sh").stat().st_ino == (root / "scripts/start.sh").stat().st_ino
    assert (root / "empty").is_dir()
    assert mode(root) == 0o755


@pytest.mark.parametrize("suffix", ["tar", "tgz"])
@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_tar_contents_modes_links(tmp_path: Path, suffix: str, fmt: int) -> None:
    source = write_tar(tmp_path / f"app.{suffix}", app_members(), fmt=fmt)
    result = unpack(source, suffix, tmp_path / "rev")
    assert result == UnpackResult(root=tmp_path / "rev", files=6, total_bytes=3 * len(SCRIPT) - len(SCRIPT) + 16)
    check_app(tmp_path / "rev")
    assert sorted(os.listdir(tmp_path)) == [f"app.{suffix}", "rev"]


def test_zip_contents_modes_links(tmp_path: Path) -> None:
    source = write_zip(
        tmp_path / "app.zip",
        [
            (zinfo("scripts/", 0o750, stat.S_IFDIR), b""),
            (zinfo("scripts/start.sh", 0o755), SCRIPT),
            (zinfo("scripts/suid.sh", 0o4755), SCRIPT),
            (zinfo("config/secret.conf", 0o640), b"k=v\n"),
            (zinfo("current", 0o777, stat.S_IFLNK), b"scripts"),
            (zinfo("windows.txt", None), b"made without unix modes\n"),
        ],
    )
    root = unpack(source, "zip", tmp_path / "rev").root
    assert mode(root / "scripts/start.sh") == 0o755 and os.access(root / "scripts/start.sh", os.X_OK)
    assert mode(root / "scripts/suid.sh") == 0o755
    assert mode(root / "config/secret.conf") == 0o640
    assert mode(root / "scripts") == 0o750
    assert mode(root / "windows.txt") == 0o644
    assert os.readlink(root / "current") == "scripts"
    assert (root / "current/start.sh").read_bytes() == SCRIPT
    local_time = time.mktime((2020, 9, 13, 12, 26, 40, 0, 0, -1))  # zip stores local time; zinfo() uses this one
    assert (root / "scripts/start.sh").stat().st_mtime == local_time


def test_directory_bundle_is_copied(tmp_path: Path) -> None:
    source = tmp_path / "tree"
    (source / "scripts").mkdir(parents=True)
    (source / "scripts/start.sh").write_bytes(SCRIPT)
    (source / "scripts/start.sh").chmod(0o755)
    (source / "secret").write_bytes(b"s\n")
    (source / "secret").chmod(0o600)
    (source / "empty").mkdir()
    (source / "run").symlink_to("scripts/start.sh")
    os.utime(source / "secret", (MTIME, MTIME))
    before = snapshot(source)
    result = unpack(source, "directory", tmp_path / "rev")
    root = result.root
    assert result.files == 2 and result.total_bytes == len(SCRIPT) + 2
    assert mode(root / "scripts/start.sh") == 0o755 and mode(root / "secret") == 0o600
    assert int((root / "secret").stat().st_mtime) == MTIME
    assert os.readlink(root / "run") == "scripts/start.sh" and (root / "empty").is_dir()
    assert snapshot(root) == before  # the same tree
    assert snapshot(source) == before  # the source is untouched


@pytest.mark.parametrize("bundle_type", ["tar", "tgz", "zip", "directory"])
@pytest.mark.parametrize("appspec", ["appspec.yml", "appspec.yaml", None])
def test_single_top_folder_rule(tmp_path: Path, bundle_type: str, appspec: str | None) -> None:
    files = {"repo-abc123/scripts/start.sh": SCRIPT, "repo-abc123/README": b"hi\n"}
    if appspec:
        files[f"repo-abc123/{appspec}"] = b"version: 0.0\nos: linux\n"
    source = _bundle(tmp_path, bundle_type, files)
    root = unpack(source, bundle_type, tmp_path / "rev").root
    if appspec:
        assert sorted(os.listdir(root)) == sorted(["README", "scripts", appspec])
    else:
        assert os.listdir(root) == ["repo-abc123"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([source.name, "rev"])  # no temporary left


def test_single_folder_rule_needs_exactly_one_entry(tmp_path: Path) -> None:
    members = [(tinfo("proj/appspec.yml"), b"v\n"), (tinfo("top-link", SYM, linkname="proj"), None)]
    root = unpack(write_tar(tmp_path / "a.tar", members), "tar", tmp_path / "rev").root
    assert sorted(os.listdir(root)) == ["proj", "top-link"]


def test_custom_appspec_name(tmp_path: Path) -> None:
    source = write_tar(tmp_path / "a.tar", [(tinfo("proj/deploy.yml"), b"v\n")])
    root = unpack(source, "tar", tmp_path / "rev", appspec_names=["deploy.yml"]).root
    assert os.listdir(root) == ["deploy.yml"]


def test_github_style_tarball(tmp_path: Path) -> None:
    """GitHub serves a pax tarball with a global header (the commit id) and one top folder."""
    members = [
        (tinfo("owner-repo-0123abc", DIR), None),
        (tinfo("owner-repo-0123abc/appspec.yml"), b"version: 0.0\n"),
        (tinfo("owner-repo-0123abc/scripts/start.sh", mode=0o755), SCRIPT),
        (tinfo("owner-repo-0123abc/link", SYM, linkname="scripts/start.sh"), None),
    ]
    source = write_tar(tmp_path / "gh.tgz", members, fmt=tarfile.PAX_FORMAT, pax_headers={"comment": "0123abc"})
    root = unpack(source, "tgz", tmp_path / "rev").root
    assert sorted(os.listdir(root)) == ["appspec.yml", "link", "scripts"]
    assert (root / "link").read_bytes() == SCRIPT and mode(root / "scripts/start.sh") == 0o755


def test_global_pax_header_applies_to_later_members(tmp_path: Path) -> None:
    members = [(tinfo(f"f{i}"), b"x") for i in range(3)]
    source = write_tar(tmp_path / "g.tar", members, fmt=tarfile.PAX_FORMAT, pax_headers={"mtime": "1234567890"})
    root = unpack(source, "tar", tmp_path / "rev").root
    assert {int((root / f"f{i}").stat().st_mtime) for i in range(3)} == {1234567890}  # as tar(1) and tarfile read it


@pytest.mark.parametrize("bundle_type", ["tar", "tgz", "zip"])
def test_empty_archive(tmp_path: Path, bundle_type: str) -> None:
    source = write_zip(tmp_path / "e.zip", []) if bundle_type == "zip" else write_tar(tmp_path / f"e.{bundle_type}", [])
    result = unpack(source, bundle_type, tmp_path / "rev")
    assert result.files == 0 and result.total_bytes == 0 and os.listdir(result.root) == []


def test_later_members_replace_earlier_ones(tmp_path: Path) -> None:
    members = [
        (tinfo("f"), b"first"),
        (tinfo("f"), b"second"),
        (tinfo("g"), b"file"),
        (tinfo("g", SYM, linkname="f"), None),
        (tinfo("h", SYM, linkname="f"), None),
        (tinfo("h"), b"file again"),
    ]
    root = unpack(write_tar(tmp_path / "a.tar", members), "tar", tmp_path / "rev").root
    assert (root / "f").read_bytes() == b"second"
    assert os.readlink(root / "g") == "f"
    assert not (root / "h").is_symlink() and (root / "h").read_bytes() == b"file again"


def test_rewriting_a_hard_linked_name_does_not_touch_the_other(tmp_path: Path) -> None:
    members = [(tinfo("a"), b"a"), (tinfo("b", LNK, linkname="a"), None), (tinfo("b"), b"new b")]
    root = unpack(write_tar(tmp_path / "a.tar", members), "tar", tmp_path / "rev").root
    assert (root / "a").read_bytes() == b"a" and (root / "b").read_bytes() == b"new b"


def test_long_names_and_big_files(tmp_path: Path) -> None:
    deep = "/".join(["d" * 60] * 5) + "/" + "n" * 120
    big = os.urandom(3 << 20)  # bigger than one read chunk
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        source = write_tar(tmp_path / f"l{fmt}.tgz", [(tinfo(deep), b"deep"), (tinfo("big.bin"), big)], fmt=fmt)
        root = unpack(source, "tgz", tmp_path / f"rev{fmt}").root
        assert (root / deep).read_bytes() == b"deep" and (root / "big.bin").read_bytes() == big


def test_ustar_prefix_and_v7_folder_names(tmp_path: Path) -> None:
    members = [(tinfo("p" * 90 + "/" + "q" * 90), b"split"), (tinfo("olddir/", tarfile.AREGTYPE), None)]
    source = write_tar(tmp_path / "u.tar", members, fmt=tarfile.USTAR_FORMAT)
    root = unpack(source, "tar", tmp_path / "rev").root
    assert (root / ("p" * 90) / ("q" * 90)).read_bytes() == b"split"
    assert (root / "olddir").is_dir()


def test_concatenated_gzip_members(tmp_path: Path) -> None:
    raw = tar_bytes([(tinfo(f"f{i}"), os.urandom(3000)) for i in range(5)])
    source = tmp_path / "cat.tgz"
    source.write_bytes(gzip.compress(raw[:7000]) + gzip.compress(raw[7000:]) + bytes(100))  # gzip(1) accepts both
    assert unpack(source, "tgz", tmp_path / "rev").files == 5


def test_sparse_file(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.bin"
    with open(sparse, "wb") as fh:
        fh.seek(1 << 20)
        fh.write(b"end")
    source = tmp_path / "s.tar"
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is needed to write a sparse member")
    subprocess.run(["tar", "--sparse", "-cf", str(source), "-C", str(tmp_path), "sparse.bin"], check=True)
    root = unpack(source, "tar", tmp_path / "rev").root
    assert (root / "sparse.bin").read_bytes() == sparse.read_bytes()


@pytest.mark.parametrize("bundle_type", ["tgz", "zip"])
def test_limits_allow_exactly_the_cap(tmp_path: Path, bundle_type: str) -> None:
    files = {f"f{i}": b"x" * 100 for i in range(10)}
    source = _bundle(tmp_path, bundle_type, files)
    assert (
        unpack(source, bundle_type, tmp_path / "rev", limits=Limits(max_entries=10, max_total_bytes=1000)).files == 10
    )


def test_guess_bundle_type(tmp_path: Path) -> None:
    assert guess_bundle_type(tmp_path) == "directory"
    for name, kind in [("a.zip", "zip"), ("A.TAR", "tar"), ("a.tgz", "tgz"), ("a.tar.gz", "tgz")]:
        assert guess_bundle_type(tmp_path / name) == kind
    (tmp_path / "a.rar").write_bytes(b"x")
    with pytest.raises(UsageError, match="--type"):
        guess_bundle_type(tmp_path / "a.rar")
    with pytest.raises(UsageError, match="does not exist"):
        guess_bundle_type(tmp_path / "missing")


_NAME = st.lists(st.sampled_from(["a", "b", "..", ".", "", "c d", "é", "x" * 30]), min_size=1, max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries=st.lists(
        st.tuples(_NAME, st.sampled_from([REG, DIR, SYM, LNK]), _NAME, st.booleans()), min_size=1, max_size=6
    )
)
def test_any_archive_stays_inside(
    tmp_path_factory: pytest.TempPathFactory, entries: list[tuple[list[str], bytes, list[str], bool]]
) -> None:
    """Whatever the member names and link targets, the result is an error or a tree inside the revision."""
    base = tmp_path_factory.mktemp("prop")
    outside = base / "deploy" / "outside"
    outside.mkdir(parents=True)
    (outside / "victim").write_text("v")
    members = []
    for name, kind, target, absolute in entries:
        link = ("/" if absolute else "") + "/".join(target)
        members.append((tinfo("/".join(name), kind, linkname=link), b"data" if kind == REG else None))
    source = write_tar(base / "p.tar", members)
    before = snapshot(base / "deploy")
    try:
        root = unpack(source, "tar", base / "deploy" / "rev").root
    except (ArchiveUnsafe, ArchiveCorrupt):
        assert snapshot(base / "deploy") == before
        return
    assert snapshot(base / "deploy", skip=lambda p: p.is_relative_to(root)) == before
    real_root = os.path.realpath(root)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                assert not os.readlink(path).startswith("/")
                resolved = os.path.realpath(path)
                assert resolved == real_root or resolved.startswith(real_root + "/")


@settings(max_examples=25, deadline=None)
@given(
    files=st.dictionaries(
        st.text(st.characters(codec="utf-8", exclude_characters="/\0"), min_size=1, max_size=120).filter(
            lambda n: n not in (".", "..")
        ),
        st.tuples(st.binary(max_size=3000), st.integers(0, 0o7777), st.integers(0, 2**33 - 1)),
        min_size=1,
        max_size=8,
    ),
    fmt=st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]),
)
def test_tar_round_trip(
    tmp_path_factory: pytest.TempPathFactory, files: dict[str, tuple[bytes, int, int]], fmt: int
) -> None:
    """Any names, contents, modes and mtimes come out as they went in (permission bits without setuid & co)."""
    base = tmp_path_factory.mktemp("rt")
    members = [(tinfo(f"d/{name}", mode=m, mtime=t), data) for name, (data, m, t) in files.items()]
    root = unpack(write_tar(base / "a.tgz", members, fmt=fmt), "tgz", base / "rev").root
    for name, (data, m, t) in files.items():
        path = root / "d" / name
        assert path.read_bytes() == data and mode(path) == m & 0o777 and int(path.stat().st_mtime) == t


@pytest.mark.parametrize("bundle_type", ["tgz", "zip", "directory"])
def test_interrupted_unpack_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bundle_type: str) -> None:
    source = _bundle(tmp_path, bundle_type, {f"f{i}": os.urandom(5000) for i in range(5)})
    calls = []

    def interrupted(fd: int, data: bytes) -> None:
        calls.append(fd)
        if len(calls) == 3:
            raise KeyboardInterrupt
        os.write(fd, data)

    monkeypatch.setattr(unpack_module, "_write_all", interrupted)

    def sendfile(out: int, src: int, offset: int, count: int) -> int:
        interrupted(out, os.pread(src, count, offset))
        return count

    monkeypatch.setattr(os, "sendfile", sendfile)  # directory bundles copy with sendfile
    with pytest.raises(KeyboardInterrupt):
        unpack(source, bundle_type, tmp_path / "rev")
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]
    assert not [t for t in threading.enumerate() if t.name == "berth-gunzip"]


def test_disk_full_is_revision_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _bundle(tmp_path, "tgz", {"a": b"aaaa", "b": b"bbbb"})

    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(unpack_module, "_write_all", full)
    with pytest.raises(RevisionUnavailable, match="no space left"):
        unpack(source, "tgz", tmp_path / "rev")
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]


def _bundle(tmp_path: Path, bundle_type: str, files: dict[str, bytes]) -> Path:
    if bundle_type == "zip":
        return write_zip(tmp_path / "b.zip", [(zinfo(n), d) for n, d in files.items()])
    if bundle_type == "directory":
        for name, data in files.items():
            (tmp_path / "b" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "b" / name).write_bytes(data)
        return tmp_path / "b"
    return write_tar(tmp_path / f"b.{bundle_type}", [(tinfo(n), d) for n, d in files.items()])
