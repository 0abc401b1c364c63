"""Reading a zip revision into the tree, with the zip-bomb checks done before a byte is written
(internal to unpack).
"""

from __future__ import annotations

import os
import stat
import time
import zipfile
import zlib
from pathlib import Path

from agent.errors import ArchiveCorrupt
from agent.fetchers.unpack_source import _hint, _open_source
from agent.fetchers.unpack_tree import _CHUNK, _Tree

_RATIO_FLOOR = 1 << 20  # below this many bytes a compression ratio says nothing about a bomb


def _unpack_zip(source: Path, tree: _Tree) -> None:
    limits = tree.limits
    with _open_source(source) as raw:
        try:
            zf = zipfile.ZipFile(raw)
        except (zipfile.BadZipFile, ValueError, EOFError) as exc:
            hint = _hint(source, "zip")
            raise ArchiveCorrupt(f"{source.name} is not a valid zip archive: {exc}{hint}") from None
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            name = infos[limits.max_entries].filename
            raise tree.unsafe(name, f"the revision has more than {limits.max_entries} entries (the limit)")
        # Declared sizes are checked before a byte is written (zipfile never reads past a declared size).
        total = 0
        for info in infos:
            total += info.file_size
            if total > limits.max_total_bytes:
                raise tree.unsafe(info.filename, f"the revision unpacks to more than {limits.max_total_bytes} bytes")
            if info.file_size > _RATIO_FLOOR and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                ratio = info.file_size / max(info.compress_size, 1)
                raise tree.unsafe(info.filename, f"compression ratio {ratio:.0f}:1 is over {limits.max_ratio:g}:1")
        size = os.fstat(raw.fileno()).st_size
        if total > _RATIO_FLOOR and total > limits.max_ratio * max(size, 1):
            raise tree.unsafe(source.name, f"unpacks to {total} bytes, over {limits.max_ratio:g} times its size")
        try:
            for info in infos:
                _zip_member(zf, info, tree)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            raise ArchiveCorrupt(f"{source.name}: zip member {tree.current!r} cannot be read: {exc}") from None


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, tree: _Tree) -> None:
    name = info.filename
    tree.count(name, info.file_size)
    if info.flag_bits & 0x1:
        raise ArchiveCorrupt(f"zip member {name!r} is encrypted; berth unpacks only unencrypted zips")
    unix = info.external_attr >> 16  # st_mode when made on a Unix-like system, else 0
    fmt = stat.S_IFMT(unix)
    try:
        mtime: float | None = time.mktime((*info.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        mtime = None
    if fmt == stat.S_IFLNK:
        if info.file_size > 4095:
            raise tree.unsafe(name, "symlink target longer than 4095 bytes")
        tree.symlink(name, zf.read(info).decode("utf-8", "surrogateescape"), mtime)
    elif fmt == stat.S_IFDIR or (fmt == 0 and info.is_dir()):
        tree.add_dir(name, unix & 0o777 or 0o755, mtime)
    elif fmt in (0, stat.S_IFREG):
        mode = unix & 0o777 if unix else 0o644
        fd = tree.create(name, mode)
        try:
            with zf.open(info) as src:
                while data := src.read(_CHUNK):
                    tree.write_all(fd, data)
        except BaseException:
            os.close(fd)
            raise
        tree.seal(fd, mode, mtime)
    else:
        raise tree.unsafe(name, "device node, FIFO or socket (a revision holds only files, folders and links)")
