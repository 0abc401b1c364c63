"""Checking, opening and sniffing the revision source given to unpack (internal to unpack)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from agent.errors import ArchiveCorrupt, RevisionUnavailable, UsageError


def _check_source(source: Path, bundle_type: str, dest: Path) -> None:
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise RevisionUnavailable(f"revision {source} does not exist") from None
    except OSError as exc:
        raise RevisionUnavailable(f"cannot read revision {source}: {exc.strerror}") from exc
    if bundle_type == "directory":
        if not stat.S_ISDIR(st.st_mode):
            raise ArchiveCorrupt(f"{source} is not a folder; pass the archive's type (tar, tgz or zip) instead")
        src, parent = os.path.realpath(source), os.path.realpath(dest.parent)
        if parent == src or parent.startswith(src.rstrip("/") + "/"):
            raise UsageError(f"cannot copy {source} into {dest}, which is inside it")
    elif stat.S_ISDIR(st.st_mode):
        raise ArchiveCorrupt(f"{source} is a folder, not a {bundle_type} archive; use bundle type directory")
    elif not stat.S_ISREG(st.st_mode):
        raise ArchiveCorrupt(f"{source} is not a regular file, so it is not a {bundle_type} archive")


def _open_source(source: Path) -> BinaryIO:
    try:
        return open(source, "rb")
    except OSError as exc:
        raise RevisionUnavailable(f"cannot read revision {source}: {exc.strerror}") from exc


def _hint(source: Path, claimed: str) -> str:
    """Say what the file looks like when that differs from the type it was given as."""
    try:
        with open(source, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return ""
    if head.startswith(b"\x1f\x8b"):
        looks = "tgz"
    elif head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        looks = "zip"
    elif head[257:262] == b"ustar":
        looks = "tar"
    else:
        return ""
    return "" if looks == claimed else f" (it looks like a {looks} file: pass bundle type {looks})"
