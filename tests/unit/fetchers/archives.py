"""Build tar/tgz/zip archives at run time (hostile ones included) and snapshot folders for before/after checks."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

MTIME = 1_600_000_000  # a fixed, recognisable mtime in the past


def tinfo(name: str, kind: bytes = tarfile.REGTYPE, **attrs: Any) -> tarfile.TarInfo:
    """A raw TarInfo: any name, type, link target, mode or owner, exactly as given."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = MTIME
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def tar_bytes(
    members: Iterable[tuple[tarfile.TarInfo, bytes | None]],
    *,
    fmt: int = tarfile.GNU_FORMAT,
    pax_headers: dict[str, str] | None = None,
) -> bytes:
    """An uncompressed tar of ``members`` (TarInfo, data) in order; data None for non-files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, pax_headers=pax_headers) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return buf.getvalue()


def write_tar(path: Path, members: Iterable[tuple[tarfile.TarInfo, bytes | None]], **kwargs: Any) -> Path:
    """Write ``members`` as a tar, or as a tgz when ``path`` ends in .tgz / .tar.gz."""
    raw = tar_bytes(members, **kwargs)
    path.write_bytes(gzip.compress(raw) if path.name.endswith((".tgz", ".gz")) else raw)
    return path


def zinfo(name: str, mode: int | None = 0o644, kind: int = stat.S_IFREG) -> zipfile.ZipInfo:
    """A ZipInfo with Unix mode bits in its external attributes (as zip -X / Info-ZIP on Unix writes them)."""
    info = zipfile.ZipInfo(name, date_time=(2020, 9, 13, 12, 26, 40))
    if mode is None:  # as made on Windows: MS-DOS attributes only (the archive bit)
        info.create_system, info.external_attr = 0, 0x20
    else:
        info.create_system, info.external_attr = 3, (kind | mode) << 16
    if kind == stat.S_IFDIR:
        info.external_attr |= 0x10  # MS-DOS directory flag, as zip(1) sets it
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def zip_bytes(entries: Iterable[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def write_zip(path: Path, entries: Iterable[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    path.write_bytes(zip_bytes(entries))
    return path


def snapshot(root: Path, skip: Callable[[Path], bool] = lambda p: False) -> dict[str, tuple[Any, ...]]:
    """Every path under ``root`` with its type, mode, link count, size, content hash and link target."""
    out: dict[str, tuple[Any, ...]] = {}
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = Path(folder, name)
            if skip(path):
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                extra: Any = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                extra = None
            out[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_nlink, st.st_size, extra)
    return out
