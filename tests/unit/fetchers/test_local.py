"""LocalFetcher hands back the local bundle where it is, or says clearly why it cannot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.errors import RevisionUnavailable
from agent.fetchers.base import FetchedBundle, Fetcher
from agent.fetchers.local import LocalFetcher
from agent.model.revision import LocalRevision, S3Revision


def test_archive_is_used_in_place(tmp_path: Path) -> None:
    archive = tmp_path / "app.tgz"
    archive.write_bytes(b"\x1f\x8b not really")
    work = tmp_path / "work"
    work.mkdir()
    fetcher: Fetcher = LocalFetcher()
    bundle = fetcher.fetch(LocalRevision(path=str(archive), bundle_type="tgz"), work)
    assert bundle == FetchedBundle(
        path=archive, bundle_type="tgz", env={}, details={"path": str(archive), "size": archive.stat().st_size}
    )
    assert os.listdir(work) == []  # nothing copied


def test_folder_and_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tree").mkdir()
    monkeypatch.chdir(tmp_path)
    bundle = LocalFetcher().fetch(LocalRevision(path="tree", bundle_type="directory"), tmp_path)
    assert bundle.path == tmp_path / "tree" and bundle.path.is_absolute()


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(RevisionUnavailable, match="does not exist"):
        LocalFetcher().fetch(LocalRevision(path=str(tmp_path / "gone.zip"), bundle_type="zip"), tmp_path)


def test_wrong_kind_of_path(tmp_path: Path) -> None:
    (tmp_path / "a.tar").write_bytes(b"")
    with pytest.raises(RevisionUnavailable, match="not a folder"):
        LocalFetcher().fetch(LocalRevision(path=str(tmp_path / "a.tar"), bundle_type="directory"), tmp_path)
    with pytest.raises(RevisionUnavailable, match="bundle type directory"):
        LocalFetcher().fetch(LocalRevision(path=str(tmp_path), bundle_type="tar"), tmp_path)


def test_other_revision_kinds_are_not_local(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        LocalFetcher().fetch(S3Revision(bucket="b", key="k", bundle_type="zip"), tmp_path)
