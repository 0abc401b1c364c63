"""Reading a tar or tgz revision into the tree: plain headers directly, the unusual ones through tarfile
(internal to unpack).
"""

from __future__ import annotations

import os
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from agent.errors import ArchiveCorrupt
from agent.fetchers.unpack_gunzip import _GunzipReader
from agent.fetchers.unpack_source import _hint, _open_source
from agent.fetchers.unpack_tree import _CHUNK, _Corrupt, _Tree

if TYPE_CHECKING:
    from typing_extensions import Self

# Members that are not plain files or folders also go through the standard library's tar filter (PEP 706) where
# it exists. For plain files and folders its check (realpath of the member) is the same as _Tree.rel's name check,
# because the tree holds no symlinks while they are written, and calling it costs more than the extraction.
_Filter = Callable[[tarfile.TarInfo, str], tarfile.TarInfo]
_DATA_FILTER: _Filter | None = getattr(tarfile, "data_filter", None)
_ZERO_BLOCK = bytes(512)
_PAX_HARMLESS = frozenset(("comment",))  # global pax keys that change no member
_MAX_META = 1 << 20  # tarfile reads pax and long-name data into memory: refuse absurd sizes
_META_KINDS = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


def _plain_header(buf: bytes, encoding: str, errors: str) -> tuple[str, int, int, int, bytes] | None:
    """(name, mode, size, mtime, type) of a well-formed header of a file or folder, as tarfile reads them.

    None, or ValueError, whenever tarfile must decide instead: other member types, pax and GNU extensions, end
    blocks, bad or signed checksums, base-256 or oddly padded numbers. Owner and device fields are not read
    (berth never uses them).
    """
    kind = buf[156:157]
    if kind not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE) or len(buf) != 512:
        return None
    chksum = buf[148:156]
    if int(chksum.rstrip(b"\0 "), 8) != 256 + sum(buf) - sum(chksum):
        return None
    name = buf[:100].partition(b"\0")[0].decode(encoding, errors)
    if kind == tarfile.AREGTYPE and name.endswith("/"):
        kind = tarfile.DIRTYPE
    if kind == tarfile.DIRTYPE:
        name = name.rstrip("/")
    prefix = buf[345:500].partition(b"\0")[0]
    if prefix:
        name = prefix.decode(encoding, errors) + "/" + name
    # int() refuses what tarfile's nti() would read differently (base-256, NULs inside): tarfile then decides.
    mode = int(buf[100:108].rstrip(b"\0 ") or b"0", 8)
    size = int(buf[124:136].rstrip(b"\0 ") or b"0", 8)
    mtime = int(buf[136:148].rstrip(b"\0 ") or b"0", 8)
    return (name, mode, size, mtime, kind) if size >= 0 else None


class _TarInfo(tarfile.TarInfo):
    """tarfile's member, stricter about damaged headers and absurd sizes than tarfile itself."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        try:
            obj = super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as exc:
            if not buf or buf == _ZERO_BLOCK:
                raise  # the archive's end, which tarfile handles
            # tarfile would end quietly at a damaged or cut header after the first; tar(1) fails: so do we.
            raise _Corrupt(f"damaged or truncated tar header ({exc})") from None
        if obj.size < 0 or (obj.type in _META_KINDS and obj.size > _MAX_META):
            raise _Corrupt(f"a tar header declares an impossible size ({obj.size} bytes)")
        return obj


def _unpack_tar(source: Path, bundle_type: str, tree: _Tree, data_filter: _Filter | None) -> None:
    """Write every member of the tar or tgz ``source``; ``data_filter`` is :data:`_DATA_FILTER` or a stand-in."""
    with _open_source(source) as raw:
        reader = _GunzipReader(raw) if bundle_type == "tgz" else raw
        try:
            tf = tarfile.TarFile(fileobj=cast(Any, reader), mode="r", tarinfo=_TarInfo)
            _tar_members(tf, reader, tree, data_filter)
            if isinstance(reader, _GunzipReader):
                reader.drain()
        except (_Corrupt, tarfile.TarError, EOFError, zlib.error, ValueError) as exc:
            hint = _hint(source, bundle_type)
            raise ArchiveCorrupt(f"{source.name} is not a valid {bundle_type} archive: {exc}{hint}") from None
        finally:
            if isinstance(reader, _GunzipReader):
                reader.close()


def _tar_members(
    tf: tarfile.TarFile, reader: BinaryIO | _GunzipReader, tree: _Tree, data_filter: _Filter | None
) -> None:
    """Write every member. tarfile reads the unusual ones (pax, long names, links, sparse, damaged headers); the
    plain file and folder headers between them, most of a revision, are read here directly: several times faster.
    """
    read, seek = reader.read, reader.seek
    encoding, errors = tf.encoding or "utf-8", tf.errors or "surrogateescape"
    members: list[tarfile.TarInfo] = vars(tf)["members"]
    m = tf.next()
    while m is not None:
        members.clear()  # a forward pass needs only the current member: keep memory flat
        if m.isreg() and m.sparse is None:
            seek(m.offset_data)
            tree.write_file(m.name, m.mode & 0o777, m.size, m.mtime, read)
        elif m.isdir():
            tree.count(m.name)
            tree.add_dir(m.name, m.mode, m.mtime)
        else:
            _tar_other(tf, m, tree, data_filter)
        pos = tf.offset
        # A global pax header may change every later member (tarfile applies it); GitHub's only holds a comment.
        while _PAX_HARMLESS.issuperset(tf.pax_headers):
            seek(pos)
            try:
                h = _plain_header(read(512), encoding, errors)
            except ValueError:
                h = None
            if h is None:
                break
            name, mode, size, mtime, kind = h
            if kind == tarfile.DIRTYPE:
                tree.count(name)
                tree.add_dir(name, mode, mtime)
                pos += 512
            else:
                tree.write_file(name, mode & 0o777, size, mtime, read)
                pos += 512 + (size + 511) // 512 * 512
        seek(pos)
        tf.offset = pos
        m = tf.next()


def _tar_other(tf: tarfile.TarFile, m: tarfile.TarInfo, tree: _Tree, data_filter: _Filter | None) -> None:
    name = m.name
    tree.count(name, m.size if m.isreg() else 0)
    if data_filter is not None:
        try:
            data_filter(m, tree.root)
        except tarfile.TarError as exc:  # tarfile.FilterError, where filters exist
            raise tree.unsafe(name, f"{exc} (tarfile data filter)") from None
    if m.issym():
        tree.symlink(name, m.linkname, m.mtime)
    elif m.islnk():
        tree.hardlink(name, m.linkname)
    elif m.ischr() or m.isblk():
        raise tree.unsafe(name, "device node (a revision holds only files, folders and links)")
    elif m.isfifo():
        raise tree.unsafe(name, "FIFO (a revision holds only files, folders and links)")
    elif m.isreg():  # a GNU sparse file: tarfile rebuilds its data
        src = tf.extractfile(m)
        if src is None:
            raise _Corrupt(f"member {name!r} has no data")
        mode = m.mode & 0o777
        fd = tree.create(name, mode)
        try:
            while data := src.read(_CHUNK):
                tree.write_all(fd, data)
        except BaseException:
            os.close(fd)
            raise
        tree.seal(fd, mode, m.mtime)
    else:
        raise tree.unsafe(name, f"unsupported member type {m.type!r}")
