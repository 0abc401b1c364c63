"""Hostile and broken revisions are refused with a named error, and nothing is written anywhere.

Each archive is built at run time. Every test snapshots the whole temporary folder (archives, a sentinel folder
beside the target, everything) before unpacking and checks it is byte-for-byte the same afterwards: no file
written or linked outside, no partial revision, no temporary folder left behind.
"""

from __future__ import annotations

import functools
import gzip
import os
import stat
import struct
import tarfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.errors import ArchiveCorrupt, ArchiveUnsafe, BerthError, RevisionUnavailable, UsageError
from agent.fetchers import unpack as unpack_module
from agent.fetchers.unpack import Limits, unpack

from .archives import snapshot, tar_bytes, tinfo, write_tar, write_zip, zinfo, zip_bytes

REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


@dataclass
class Site:
    """tmp_path/in holds the archives; tmp_path/deploy holds the sentinel folder and is where ``dest`` would go."""

    root: Path
    inbox: Path
    deploy: Path
    sentinel: Path
    dest: Path

    def refuse(
        self, source: Path, bundle_type: str, error: type[BerthError], *, limits: Limits | None = None
    ) -> BerthError:
        before = snapshot(self.root)
        with pytest.raises(error) as caught:
            unpack(source, bundle_type, self.dest, limits=limits or Limits())
        assert snapshot(self.root) == before
        assert sorted(os.listdir(self.deploy)) == ["sentinel"]  # no revision, no temporary sibling
        assert not [t for t in threading.enumerate() if t.name == "berth-gunzip"]
        return caught.value


@pytest.fixture
def site(tmp_path: Path) -> Site:
    inbox, deploy = tmp_path / "in", tmp_path / "deploy"
    sentinel = deploy / "sentinel"
    (sentinel / "keep").mkdir(parents=True)
    inbox.mkdir()
    (sentinel / "victim").write_bytes(b"original\n")
    (sentinel / "keep" / "inner.txt").write_text("inner\n")
    return Site(tmp_path, inbox, deploy, sentinel, deploy / "rev")


@pytest.fixture(params=["stdlib-filter", "own-checks-only"])
def filters(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run tar tests with the standard library's data filter and as on a Python without it (own checks only)."""
    if request.param == "own-checks-only":
        monkeypatch.setattr(unpack_module, "_DATA_FILTER", None)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile.data_filter")
    yield request.param


Members = list[tuple[tarfile.TarInfo, "bytes | None"]]

# name -> (members built from the sentinel path, the words the error message must contain)
HOSTILE_TAR: dict[str, tuple[Callable[[Path], Members], str]] = {
    "absolute-path": (lambda s: [(tinfo(f"{s}/abs-pwned"), b"x")], "absolute"),
    "absolute-after-good-files": (
        lambda s: [(tinfo("ok/one.txt"), b"1"), (tinfo("ok/two.txt"), b"2"), (tinfo(f"{s}/abs"), b"x")],
        "absolute",
    ),
    "dotdot": (lambda s: [(tinfo("../sentinel/dotdot-pwned"), b"x")], "'..'"),
    "dotdot-inside-path": (lambda s: [(tinfo("a/../../sentinel/x"), b"x")], "'..'"),
    "dotdot-folder": (lambda s: [(tinfo("../sentinel/newdir", DIR), None)], "'..'"),
    "absolute-symlink-then-write-through": (
        lambda s: [(tinfo("link", SYM, linkname=str(s)), None), (tinfo("link/through-pwned"), b"x")],
        "link",
    ),
    "relative-symlink-out-then-write-through": (
        lambda s: [(tinfo("link", SYM, linkname="../sentinel"), None), (tinfo("link/through-pwned"), b"x")],
        "link",
    ),
    "deep-symlink-out": (lambda s: [(tinfo("a/b/l", SYM, linkname="../../../sentinel/victim"), None)], "outside"),
    "write-through-inside-symlink": (
        lambda s: [(tinfo("sub", DIR), None), (tinfo("link", SYM, linkname="sub"), None), (tinfo("link/x"), b"x")],
        "through the symlink",
    ),
    "symlink-chain-resolved-later": (  # b is harmless on its own; a, unpacked later, makes it escape
        lambda s: [(tinfo("b", SYM, linkname="a/../sentinel/victim"), None), (tinfo("a", SYM, linkname="."), None)],
        "outside",
    ),
    "symlink-loop": (
        lambda s: [(tinfo("a", SYM, linkname="b/x"), None), (tinfo("b", SYM, linkname="a/y"), None)],
        "outside",
    ),
    "hardlink-to-absolute-outside": (
        lambda s: [(tinfo("hl", LNK, linkname=str(s / "victim")), None), (tinfo("hl"), b"overwritten")],
        "link",
    ),
    "hardlink-to-relative-outside": (
        lambda s: [(tinfo("hl", LNK, linkname="../sentinel/victim"), None), (tinfo("hl"), b"overwritten")],
        "link",
    ),
    "hardlink-to-missing-file": (lambda s: [(tinfo("hl", LNK, linkname="not-there"), None)], "hard link"),
    "char-device": (lambda s: [(tinfo("null", tarfile.CHRTYPE, devmajor=1, devminor=3), None)], "null"),
    "block-device": (lambda s: [(tinfo("disk", tarfile.BLKTYPE, devmajor=8, devminor=0), None)], "disk"),
    "fifo": (lambda s: [(tinfo("pipe", tarfile.FIFOTYPE), None)], "pipe"),
    "link-escapes-promoted-root": (  # inside the archive, but outside once proj/ becomes the revision root
        lambda s: [
            (tinfo("proj/appspec.yml"), b"version: 0.0\n"),
            (tinfo("proj/l", SYM, linkname="../proj/appspec.yml"), None),
        ],
        "outside",
    ),
    "file-replaces-folder": (lambda s: [(tinfo("d", DIR), None), (tinfo("d/f"), b"1"), (tinfo("d"), b"2")], "folder"),
}


@pytest.mark.parametrize("bundle_type", ["tar", "tgz"])
@pytest.mark.parametrize("case", sorted(HOSTILE_TAR))
def test_hostile_tar_is_refused(site: Site, filters: str, bundle_type: str, case: str) -> None:
    build, words = HOSTILE_TAR[case]
    source = write_tar(site.inbox / f"{case}.{bundle_type}", build(site.sentinel))
    error = site.refuse(source, bundle_type, ArchiveUnsafe)
    assert words in str(error)
    assert "nothing was unpacked" in str(error)


@pytest.mark.parametrize("bundle_type", ["tar", "tgz"])
def test_too_many_entries(site: Site, bundle_type: str) -> None:
    source = write_tar(site.inbox / f"many.{bundle_type}", [(tinfo(f"f{i}"), b"x") for i in range(11)])
    error = site.refuse(source, bundle_type, ArchiveUnsafe, limits=Limits(max_entries=10))
    assert "'f10'" in str(error) and "more than 10 entries" in str(error)


@pytest.mark.parametrize("bundle_type", ["tar", "tgz"])
def test_too_many_bytes(site: Site, bundle_type: str) -> None:
    members: Members = [(tinfo("small"), b"x" * 3000), (tinfo("big"), b"y" * 3000)]
    source = write_tar(site.inbox / f"big.{bundle_type}", members)
    error = site.refuse(source, bundle_type, ArchiveUnsafe, limits=Limits(max_total_bytes=5000))
    assert "'big'" in str(error) and "5000 bytes" in str(error)


def test_huge_pax_header_is_refused(site: Site) -> None:
    pax = tinfo("././@PaxHeader", tarfile.XHDTYPE)
    source = write_tar(site.inbox / "pax.tgz", [(pax, b"9" * (2 << 20)), (tinfo("f"), b"x")])
    assert "impossible size" in str(site.refuse(source, "tgz", ArchiveCorrupt))


def test_negative_size_is_refused(site: Site) -> None:
    source = write_tar(site.inbox / "neg.tar", [(tinfo("ok"), b"fine"), (tinfo("neg", size=-5), None)])
    site.refuse(source, "tar", ArchiveCorrupt)


def _tar_of_files() -> bytes:
    return tar_bytes([(tinfo(f"dir/file{i}"), os.urandom(40_000)) for i in range(6)])


@pytest.mark.parametrize(
    ("bundle_type", "make", "words"),
    [
        ("tgz", lambda: gzip.compress(_tar_of_files())[:120_000], "truncated"),
        ("tgz", lambda: gzip.compress(_tar_of_files())[:-4], "truncated"),  # only the gzip trailer is cut
        ("tar", lambda: _tar_of_files()[: 512 * 3 + 20_000], "cut short"),  # inside a file's data
        ("tar", lambda: _tar_of_files()[: (512 + 40_448) * 2 + 100], "header"),  # inside a header
        ("tgz", lambda: _tar_of_files(), "tar"),  # a plain tar given as tgz
        ("tar", lambda: gzip.compress(_tar_of_files()), "tgz"),  # a tgz given as tar: the hint names tgz
        ("tar", lambda: os.urandom(4096), "not a valid tar"),
        ("tgz", lambda: b"", "truncated"),
        ("tar", lambda: b"", "empty"),
        ("tgz", lambda: gzip.compress(b"just text, not a tar archive\n" * 50), "not a valid tgz"),
        ("tgz", lambda: gzip.compress(_tar_of_files()) + b"trailing garbage", "not a valid tgz"),
    ],
    ids=[
        "tgz-truncated",
        "tgz-trailer-cut",
        "tar-truncated-in-data",
        "tar-truncated-in-header",
        "tar-given-as-tgz",
        "tgz-given-as-tar",
        "random-bytes",
        "empty-tgz",
        "empty-tar",
        "gzip-not-tar",
        "tgz-trailing-garbage",
    ],
)
def test_broken_tar_is_corrupt(site: Site, bundle_type: str, make: Callable[[], bytes], words: str) -> None:
    source = site.inbox / f"broken.{bundle_type}"
    source.write_bytes(make())
    error = site.refuse(source, bundle_type, ArchiveCorrupt)
    assert words in str(error)


# ---- zip -----------------------------------------------------------------------------------------------------------

HOSTILE_ZIP: dict[str, tuple[Callable[[Path], list[tuple[zipfile.ZipInfo, bytes]]], str]] = {
    "dotdot": (lambda s: [(zinfo("../sentinel/zip-pwned"), b"x")], "'..'"),
    "dotdot-inside": (lambda s: [(zinfo("a/../../sentinel/x"), b"x")], "'..'"),
    "absolute": (lambda s: [(zinfo("ok.txt"), b"1"), (zinfo(f"{s}/zip-abs"), b"x")], "absolute"),
    "symlink-out-then-write-through": (
        lambda s: [(zinfo("link", 0o777, stat.S_IFLNK), b"../sentinel"), (zinfo("link/x"), b"x")],
        "link",
    ),
    "absolute-symlink": (lambda s: [(zinfo("link", 0o777, stat.S_IFLNK), str(s).encode())], "absolute"),
    "fifo": (lambda s: [(zinfo("pipe", 0o644, stat.S_IFIFO), b"")], "FIFO"),
    "char-device": (lambda s: [(zinfo("null", 0o644, stat.S_IFCHR), b"")], "device"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ZIP))
def test_hostile_zip_is_refused(site: Site, case: str) -> None:
    build, words = HOSTILE_ZIP[case]
    source = write_zip(site.inbox / f"{case}.zip", build(site.sentinel))
    assert words in str(site.refuse(source, "zip", ArchiveUnsafe))


def test_zip_bomb_member_ratio(site: Site) -> None:
    source = write_zip(site.inbox / "bomb.zip", [(zinfo("readme.txt"), b"hi"), (zinfo("big.bin"), bytes(8 << 20))])
    error = site.refuse(source, "zip", ArchiveUnsafe)
    assert "'big.bin'" in str(error) and "compression ratio" in str(error)


def test_zip_bomb_total_ratio(site: Site) -> None:
    # every member stays under the per-member floor; together they are still a bomb
    source = write_zip(site.inbox / "bombs.zip", [(zinfo(f"part{i}"), bytes(900_000)) for i in range(12)])
    assert "times its size" in str(site.refuse(source, "zip", ArchiveUnsafe))


def test_zip_over_size_cap(site: Site) -> None:
    source = write_zip(site.inbox / "big.zip", [(zinfo("a"), os.urandom(3000)), (zinfo("b"), os.urandom(3000))])
    error = site.refuse(source, "zip", ArchiveUnsafe, limits=Limits(max_total_bytes=5000))
    assert "'b'" in str(error)


def test_zip_too_many_entries(site: Site) -> None:
    source = write_zip(site.inbox / "many.zip", [(zinfo(f"f{i}"), b"x") for i in range(11)])
    assert "more than 10 entries" in str(site.refuse(source, "zip", ArchiveUnsafe, limits=Limits(max_entries=10)))


def test_zip_lying_about_its_size(site: Site) -> None:
    """Declared sizes small, real data big: unzipping stops at the declared size and the CRC check fails."""
    source = write_zip(site.inbox / "liar.zip", [(zinfo("big.bin"), bytes(4 << 20))])
    data = bytearray(source.read_bytes())
    struct.pack_into("<I", data, 22, 1000)  # local header: uncompressed size
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 1000)  # central directory: uncompressed size
    source.write_bytes(bytes(data))
    site.refuse(source, "zip", ArchiveCorrupt)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: tar_bytes([(tinfo("a.txt"), b"a")]), "tar"),  # a tar given as zip: the hint names tar
        (lambda: _zip_bytes()[:-30], "not a valid zip"),  # end of central directory cut off
        (lambda: _zip_bytes()[:200] + _zip_bytes()[-200:], "zip"),  # middle cut out
        (lambda: b"", "not a valid zip"),
    ],
    ids=["tar-given-as-zip", "truncated-end", "truncated-middle", "empty"],
)
def test_broken_zip_is_corrupt(site: Site, make: Callable[[], bytes], words: str) -> None:
    source = site.inbox / "broken.zip"
    source.write_bytes(make())
    assert words in str(site.refuse(source, "zip", ArchiveCorrupt))


@functools.cache
def _zip_bytes() -> bytes:
    return zip_bytes([(zinfo(f"f{i}"), os.urandom(2000)) for i in range(5)])


# ---- directory bundles and arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["absolute", "relative"])
def test_directory_with_symlink_out_is_refused(site: Site, target: str) -> None:
    source = site.inbox / "tree"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "ok.txt").write_text("ok\n")
    link = str(site.sentinel) if target == "absolute" else "../../../deploy/sentinel"
    (source / "sub" / "out").symlink_to(link)
    assert "out" in str(site.refuse(source, "directory", ArchiveUnsafe))


def test_directory_with_fifo_is_refused(site: Site) -> None:
    source = site.inbox / "tree"
    source.mkdir()
    (source / "a.txt").write_text("a\n")
    os.mkfifo(source / "pipe")
    assert "FIFO" in str(site.refuse(source, "directory", ArchiveUnsafe))


def test_directory_into_itself_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "tree"
    source.mkdir()
    (source / "a.txt").write_text("a\n")
    with pytest.raises(UsageError, match="inside it"):
        unpack(source, "directory", source / "rev")
    assert os.listdir(source) == ["a.txt"]


def test_missing_source(site: Site) -> None:
    assert "does not exist" in str(site.refuse(site.inbox / "nope.tgz", "tgz", RevisionUnavailable))


def test_folder_given_as_archive_and_file_as_folder(site: Site) -> None:
    (site.inbox / "tree").mkdir()
    write_tar(site.inbox / "a.tar", [(tinfo("x"), b"x")])
    assert "bundle type directory" in str(site.refuse(site.inbox / "tree", "tar", ArchiveCorrupt))
    site.refuse(site.inbox / "a.tar", "directory", ArchiveCorrupt)


def test_unknown_bundle_type(site: Site) -> None:
    source = write_tar(site.inbox / "a.tar", [(tinfo("x"), b"x")])
    assert "tar, tgz, zip, directory" in str(site.refuse(source, "rar", UsageError))


def test_existing_dest_is_left_alone(site: Site) -> None:
    source = write_tar(site.inbox / "a.tar", [(tinfo("x"), b"x")])
    site.dest.mkdir()
    (site.dest / "mine").write_text("keep\n")
    with pytest.raises(UsageError, match="already exists"):
        unpack(source, "tar", site.dest)
    assert os.listdir(site.dest) == ["mine"]


def test_missing_parent_folder(site: Site) -> None:
    source = write_tar(site.inbox / "a.tar", [(tinfo("x"), b"x")])
    with pytest.raises(UsageError, match="does not exist"):
        unpack(source, "tar", site.deploy / "no" / "rev")
    assert not (site.deploy / "no").exists()
