"""Unpack a revision (tar, tgz, zip or directory) into a fresh folder, treating the archive as hostile (SPEC §4).

How it stays safe: everything is written into a private temporary sibling of the target, which starts empty and
which only this code writes to, so its state is exactly what :class:`_Tree` recorded. Symlinks are only recorded
while members are written and are created at the very end, after each was resolved against the finished tree:
so no member is ever written through a symlink, and checking a path needs no system calls. Names with ``..`` or
a leading ``/``, links leading outside, device nodes and FIFOs, and archives over the :class:`Limits` are
rejected with :class:`ArchiveUnsafe` naming the member and the rule; the temporary folder is then removed, so a
failure leaves nothing behind. On success the temporary folder is renamed to the target.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import shutil
import stat
import tarfile
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from agent.errors import ArchiveCorrupt, ArchiveUnsafe, BerthError, RevisionUnavailable, UsageError

if TYPE_CHECKING:
    from typing_extensions import Self

BUNDLE_TYPES = ("tar", "tgz", "zip", "directory")
_LABEL = {"tar": "tar member", "tgz": "tar member", "zip": "zip member", "directory": "file"}
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
_RATIO_FLOOR = 1 << 20  # below this many bytes a compression ratio says nothing about a bomb
_MAX_HOPS = 40  # symlinks followed while resolving one link (the kernel's own limit)
_LINK_STEPS = 10_000_000  # path components resolved for all links of one revision (bounds hostile link chains)
_MTIME_RANGE = (-(2**40), 2**40)  # archive mtimes outside this are ignored rather than overflowing utime
_UNAVAILABLE = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM)
# Members that are not plain files or folders also go through the standard library's tar filter (PEP 706) where
# it exists. For plain files and folders its check (realpath of the member) is the same as the name check below,
# because the tree holds no symlinks while they are written, and calling it costs more than the extraction.
_DATA_FILTER: Callable[[tarfile.TarInfo, str], tarfile.TarInfo] | None = getattr(tarfile, "data_filter", None)


@dataclass(frozen=True)
class Limits:
    """Caps on what an archive may unpack to; exceeding one raises :class:`ArchiveUnsafe`.

    ``max_ratio`` is the zip-bomb cap: uncompressed/compressed size, checked for each zip member and for the whole
    zip once sizes pass 1 MiB (smaller ones say nothing). tar/tgz rely on ``max_total_bytes``.
    """

    max_entries: int = 100_000
    max_total_bytes: int = 10 * 1024**3
    max_ratio: float = 200.0


@dataclass(frozen=True)
class UnpackResult:
    root: Path  # the revision root: the ``dest`` given to unpack()
    files: int  # regular files (and hard links) unpacked
    total_bytes: int  # bytes of file data written


def guess_bundle_type(path: Path) -> str:
    """Bundle type from a path: a folder is ``directory``, else by suffix (.zip, .tar, .tgz or .tar.gz)."""
    if path.is_dir():
        return "directory"
    name = path.name.lower()
    for suffix, kind in ((".zip", "zip"), (".tar", "tar"), (".tgz", "tgz"), (".tar.gz", "tgz")):
        if name.endswith(suffix):
            return kind
    if not path.exists():
        raise UsageError(f"{path} does not exist")
    raise UsageError(f"cannot tell the bundle type of {path} from its name; pass --type tar, tgz, zip or directory")


def unpack(
    source: Path,
    bundle_type: str,
    dest: Path,
    *,
    appspec_names: Sequence[str] = ("appspec.yml", "appspec.yaml"),
    limits: Limits = Limits(),
) -> UnpackResult:
    """Unpack ``source`` so that ``dest`` (which must not exist; its parent must) becomes the revision root.

    When the unpacked tree holds exactly one folder and that folder holds one of ``appspec_names``, the folder's
    contents become the root (GitHub tarballs). Permission bits are kept (setuid, setgid and sticky dropped),
    owners are never taken from the archive, mtimes are. On any failure ``dest`` does not exist and nothing else
    was written. Raises ArchiveUnsafe, ArchiveCorrupt, RevisionUnavailable (source missing or unreadable, disk
    full) or UsageError (unknown type, ``dest`` exists, its parent does not).
    """
    if bundle_type not in BUNDLE_TYPES:
        raise UsageError(f"unknown bundle type {bundle_type!r}; use one of {', '.join(BUNDLE_TYPES)}")
    source, dest = Path(source), Path(dest)
    if os.path.lexists(dest):
        raise UsageError(f"{dest} already exists; a revision is unpacked into a new folder")
    _check_source(source, bundle_type, dest)
    try:
        tmp = tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".unpacking", dir=dest.parent)
    except FileNotFoundError:
        raise UsageError(f"cannot unpack into {dest}: the folder {dest.parent} does not exist") from None
    except OSError as exc:
        raise RevisionUnavailable(f"cannot create a folder in {dest.parent}: {exc.strerror}") from exc
    tree = _Tree(tmp, _LABEL[bundle_type], limits)
    try:
        try:
            if bundle_type == "directory":
                _copy_directory(source, tree)
            elif bundle_type == "zip":
                _unpack_zip(source, tree)
            else:
                _unpack_tar(source, bundle_type, tree)
            prefix = tree.finish(appspec_names)
            if prefix:
                os.rename(f"{tmp}/{prefix}", dest)
                os.rmdir(tmp)
            else:
                os.chmod(tmp, 0o755)  # noqa: S103 - hooks run as other users must read the revision
                os.rename(tmp, dest)
        except OSError as exc:
            raise _os_failure(exc, tree.current) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return UnpackResult(root=dest, files=len(tree.files), total_bytes=tree.total_bytes)


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


def _os_failure(exc: OSError, member: str) -> BerthError:
    where = f" (at {member!r})" if member else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return RevisionUnavailable(f"no space left to unpack the revision{where}: free some space on the host")
    if exc.errno in _UNAVAILABLE:
        return RevisionUnavailable(f"cannot unpack the revision{where}: {exc.strerror or exc}")
    return ArchiveCorrupt(f"cannot unpack the revision{where}: {exc.strerror or exc}")


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


def _sane_mtime(mtime: float | None) -> float | None:
    if mtime is None or not _MTIME_RANGE[0] < mtime < _MTIME_RANGE[1]:
        return None
    return mtime


class _Tree:
    """The revision being written into the (private, initially empty) folder ``root``, mirrored in memory."""

    def __init__(self, root: str, label: str, limits: Limits) -> None:
        self.root = root
        self.label = label
        self.limits = limits
        self.dirs: dict[str, tuple[int, float | None] | None] = {"": None}  # rel -> (mode, mtime) of members
        self.files: set[str] = set()
        self.links: dict[str, tuple[str, float | None]] = {}  # recorded symlinks: rel -> (target, mtime)
        self.entries = 0
        self.total_bytes = 0
        self.current = ""  # the member being written, for error messages
        self._steps = _LINK_STEPS
        umask = _read_umask()
        self._chmod_bits = 0o7777 if umask is None else umask  # fchmod only where the umask changed the mode

    def unsafe(self, name: str, rule: str) -> ArchiveUnsafe:
        return ArchiveUnsafe(f"{self.label} {name!r}: {rule}; nothing was unpacked")

    def count(self, name: str, size: int = 0) -> None:
        """Account for one entry of ``size`` bytes against the limits."""
        self.current = name
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise self.unsafe(name, f"the revision has more than {self.limits.max_entries} entries (the limit)")
        if size:
            self.total_bytes += size
            if self.total_bytes > self.limits.max_total_bytes:
                raise self.unsafe(name, f"the revision unpacks to more than {self.limits.max_total_bytes} bytes")

    def rel(self, name: str) -> str:
        """The normalized relative path of a member name ('' for the root itself); rejects escapes."""
        if name.startswith("/"):
            raise self.unsafe(name, "absolute path (members must be relative to the revision)")
        if "\0" in name:
            raise self.unsafe(name, "NUL character in the name")
        parts = name.split("/")
        if "" in parts or "." in parts:
            parts = [p for p in parts if p and p != "."]
        if ".." in parts:
            raise self.unsafe(name, "'..' in the path (members must stay inside the revision)")
        return "/".join(parts)

    def _parent(self, rel: str, name: str) -> str:
        """Create the folders above ``rel`` (never through a link or a file); returns rel's full path."""
        parent = rel.rpartition("/")[0]
        if parent not in self.dirs:
            parts = parent.split("/")
            for i in range(1, len(parts) + 1):
                p = "/".join(parts[:i])
                if p in self.dirs:
                    continue
                if p in self.links:
                    raise self.unsafe(name, f"would be written through the symlink {p!r}")
                if p in self.files:
                    raise self.unsafe(name, f"would be written below the file {p!r}")
                os.mkdir(f"{self.root}/{p}", 0o755)
                self.dirs[p] = None
        return f"{self.root}/{rel}"

    def _replace(self, rel: str, name: str, what: str) -> str:
        """Path for a new non-folder entry; like tar, a later member replaces an earlier one of that name."""
        if rel in self.dirs:
            raise self.unsafe(name, f"{what} would replace a folder")
        path = self._parent(rel, name)
        if rel in self.files:
            os.unlink(path)  # never write into an existing inode: it may be hard-linked
            self.files.discard(rel)
        else:
            self.links.pop(rel, None)
        return path

    def add_dir(self, name: str, mode: int, mtime: float | None) -> None:
        rel = self.rel(name)
        if not rel:
            return  # the root itself: its mode is the agent's choice
        if rel in self.files:
            raise self.unsafe(name, "a folder would replace a file")
        self.links.pop(rel, None)
        if rel not in self.dirs:
            os.mkdir(self._parent(rel, name), 0o700)  # its own mode once everything is in (it may be read-only)
        self.dirs[rel] = (mode & 0o777, _sane_mtime(mtime))

    def create(self, name: str, mode: int) -> int:
        """Create the regular file of member ``name``; returns a descriptor to write it, for :meth:`seal`."""
        rel = self.rel(name)
        if not rel:
            raise self.unsafe(name, "a file needs a name")
        fd = os.open(self._replace(rel, name, "a file"), _FILE_FLAGS, mode)
        self.files.add(rel)
        return fd

    def seal(self, fd: int, mode: int, mtime: float | None) -> None:
        """Give a created file its exact permission bits and the archive's mtime, then close it."""
        try:
            if mode & self._chmod_bits:
                os.fchmod(fd, mode)
            if mtime is not None and _MTIME_RANGE[0] < mtime < _MTIME_RANGE[1]:
                os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)

    def write_file(self, name: str, mode: int, size: int, mtime: float | None, read: Callable[[int], bytes]) -> None:
        """Write a regular file whose ``size`` bytes of data ``read`` returns next (tar members)."""
        self.count(name, size)
        fd = self.create(name, mode)
        try:
            while size:
                data = read(min(size, _CHUNK))
                if not data:
                    raise _Corrupt(f"member {name!r} is cut short (truncated archive)")
                _write_all(fd, data)
                size -= len(data)
        except BaseException:
            os.close(fd)
            raise
        self.seal(fd, mode, mtime)

    def hardlink(self, name: str, target: str) -> None:
        rel = self.rel(name)
        if target.startswith("/") or ".." in target.split("/"):
            raise self.unsafe(name, f"hard link to {target!r}, outside the revision")
        target_rel = self.rel(target)
        if target_rel not in self.files:
            raise self.unsafe(name, f"hard link to {target!r}, which is not a file unpacked before it")
        if target_rel != rel:
            os.link(f"{self.root}/{target_rel}", self._replace(rel, name, "a hard link"), follow_symlinks=False)
            self.files.add(rel)

    def symlink(self, name: str, target: str, mtime: float | None) -> None:
        """Record a symlink; :meth:`finish` checks it against the finished tree and creates it."""
        rel = self.rel(name)
        if not rel:
            raise self.unsafe(name, "a symlink needs a name")
        if not target or "\0" in target:
            raise self.unsafe(name, "symlink with an empty target or a NUL in it")
        if target.startswith("/"):
            raise self.unsafe(name, f"symlink to the absolute path {target!r} (links must stay inside)")
        self._replace(rel, name, "a symlink")
        self.links[rel] = (target, _sane_mtime(mtime))
        if self._resolve(rel, target, 0) is None:  # early answer; finish() checks again with every link known
            raise self.unsafe(name, f"symlink to {target!r} leads outside the revision (or loops)")

    def _resolve(self, rel: str, target: str, floor: int) -> list[str] | None:
        """Follow ``target`` from the folder of ``rel`` through the recorded links, as the kernel would.

        Returns the resolved components, or None when the path climbs above its first ``floor`` components (out
        of the revision root) or loops. Names not in the tree resolve as plain names.
        """
        parts = rel.split("/")[:-1]
        pending = target.split("/")[::-1]
        hops = 0
        while pending:
            self._steps -= 1
            if self._steps < 0:
                raise self.unsafe(rel, "symlinks nest too deeply to check")
            c = pending.pop()
            if c in ("", "."):
                continue
            if c == "..":
                if len(parts) <= floor:
                    return None
                parts.pop()
                continue
            parts.append(c)
            link = self.links.get("/".join(parts))
            if link is not None:
                hops += 1
                if hops > _MAX_HOPS or link[0].startswith("/"):
                    return None
                parts.pop()
                pending.extend(link[0].split("/")[::-1])
        return parts

    def finish(self, appspec_names: Sequence[str]) -> str:
        """Pick the root, check and create the symlinks, set folder modes/mtimes; returns the root's prefix."""
        self.current = ""
        top = os.listdir(self.root) + [rel for rel in self.links if "/" not in rel]
        prefix = ""
        if len(top) == 1 and top[0] in self.dirs:
            inside = (f"{top[0]}/{name}" for name in appspec_names)
            if any(p in self.files or p in self.links for p in inside):
                prefix = top[0]
        floor = 1 if prefix else 0
        for rel, (target, _) in self.links.items():
            if self._resolve(rel, target, floor) is None:
                raise self.unsafe(rel, f"symlink to {target!r} leads outside the revision root (or loops)")
        for rel, (target, mtime) in self.links.items():
            os.symlink(target, f"{self.root}/{rel}")
            if mtime is not None:
                os.utime(f"{self.root}/{rel}", (mtime, mtime), follow_symlinks=False)
        # Deepest first, so that a read-only folder does not block its children (when not running as root).
        for rel in sorted((r for r, a in self.dirs.items() if a is not None), key=lambda r: -r.count("/")):
            mode, mtime = self.dirs[rel] or (0o755, None)
            os.chmod(f"{self.root}/{rel}", mode)
            if mtime is not None:
                os.utime(f"{self.root}/{rel}", (mtime, mtime))
        return prefix


def _read_umask() -> int | None:
    # os.umask() can only be read by changing it, which races with other threads creating files.
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _write_all(fd: int, data: bytes) -> None:
    done = os.write(fd, data)
    while done < len(data):
        done += os.write(fd, memoryview(data)[done:])


# ---- tar / tgz ---------------------------------------------------------------------------------------------------


class _Corrupt(Exception):
    """Damaged tar data found while reading (reported as ArchiveCorrupt)."""


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


class _GunzipReader:
    """A gzip file decompressed by a helper thread (zlib releases the GIL, so it runs beside the writing).

    Offers what tarfile needs from a file object for one forward pass: ``read``, ``tell`` and ``seek`` (back to
    the start of the last read at most).
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._queue: queue.Queue[bytes | Exception | None] = queue.Queue(maxsize=8)
        self._stop = threading.Event()
        self._buf = b""
        self._pos = 0  # read position in _buf
        self._base = 0  # stream offset of _buf[0]
        self._done = False
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="berth-gunzip", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            d = zlib.decompressobj(31)
            data, ended = b"", False
            while not self._stop.is_set():
                if not data and not ended:
                    data = self._raw.read(_CHUNK)
                    ended = not data
                if d.eof:  # another gzip member may follow (as gzip(1) allows); NUL padding is skipped
                    data = data.lstrip(b"\0")
                    if not data:
                        if ended:
                            self._put(None)
                            return
                        continue
                    d = zlib.decompressobj(31)
                out = d.decompress(data, _CHUNK)
                data = d.unused_data if d.eof else d.unconsumed_tail
                if out:
                    self._put(out)
                elif ended and not data and not d.eof:
                    raise EOFError("the gzip data ends early (truncated file)")
        except Exception as exc:  # noqa: BLE001 - handed over to the reading thread, which raises it
            self._put(exc)

    def _put(self, item: bytes | Exception | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, n: int = -1) -> bytes:
        pos = self._pos
        if 0 <= n <= len(self._buf) - pos:
            self._pos = pos + n
            return self._buf[pos : pos + n]
        # Refill: the new buffer starts where this read starts, so seek() can come back to it.
        parts = [self._buf[pos:]]
        got = len(parts[0])
        while (n < 0 or got < n) and not self._done:
            if self._error is not None:
                raise self._error
            item = self._queue.get()
            if item is None:
                self._done = True
            elif isinstance(item, Exception):
                self._error = item
                raise item
            else:
                parts.append(item)
                got += len(item)
        self._base += pos
        self._buf = b"".join(parts)
        self._pos = got if n < 0 else min(n, got)
        return self._buf[: self._pos]

    def tell(self) -> int:
        return self._base + self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence not in (0, 1):
            raise _Corrupt("the archive would have to be read from its end")
        skip = offset - self.tell() if whence == 0 else offset
        if 0 <= self._pos + skip <= len(self._buf):
            self._pos += skip
        elif skip < 0:
            raise _Corrupt("the archive would have to be read backwards")
        else:
            while skip > 0 and (data := self.read(min(skip, _CHUNK))):
                skip -= len(data)
        return self.tell()

    def drain(self) -> None:
        """Read on past the tar's end (bounded), so that a cut or damaged gzip trailer is reported."""
        left = _CHUNK
        while left > 0 and (data := self.read(min(left, 1 << 16))):
            left -= len(data)

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()


def _unpack_tar(source: Path, bundle_type: str, tree: _Tree) -> None:
    with _open_source(source) as raw:
        reader = _GunzipReader(raw) if bundle_type == "tgz" else raw
        try:
            tf = tarfile.TarFile(fileobj=cast(Any, reader), mode="r", tarinfo=_TarInfo)
            _tar_members(tf, reader, tree)
            if isinstance(reader, _GunzipReader):
                reader.drain()
        except (_Corrupt, tarfile.TarError, EOFError, zlib.error, ValueError) as exc:
            hint = _hint(source, bundle_type)
            raise ArchiveCorrupt(f"{source.name} is not a valid {bundle_type} archive: {exc}{hint}") from None
        finally:
            if isinstance(reader, _GunzipReader):
                reader.close()


def _tar_members(tf: tarfile.TarFile, reader: BinaryIO | _GunzipReader, tree: _Tree) -> None:
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
            _tar_other(tf, m, tree)
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


def _tar_other(tf: tarfile.TarFile, m: tarfile.TarInfo, tree: _Tree) -> None:
    name = m.name
    tree.count(name, m.size if m.isreg() else 0)
    if _DATA_FILTER is not None:
        try:
            _DATA_FILTER(m, tree.root)
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
                _write_all(fd, data)
        except BaseException:
            os.close(fd)
            raise
        tree.seal(fd, mode, m.mtime)
    else:
        raise tree.unsafe(name, f"unsupported member type {m.type!r}")


# ---- zip ---------------------------------------------------------------------------------------------------------


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
                    _write_all(fd, data)
        except BaseException:
            os.close(fd)
            raise
        tree.seal(fd, mode, mtime)
    else:
        raise tree.unsafe(name, "device node, FIFO or socket (a revision holds only files, folders and links)")


# ---- directory ---------------------------------------------------------------------------------------------------


def _copy_directory(source: Path, tree: _Tree) -> None:
    stack = [("", str(source))]
    while stack:
        rel_dir, src_dir = stack.pop()
        with os.scandir(src_dir) as it:
            entries = list(it)
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            st = e.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                tree.count(rel)
                tree.add_dir(rel, st.st_mode, st.st_mtime)
                stack.append((rel, e.path))
            elif stat.S_ISLNK(st.st_mode):
                tree.count(rel)
                tree.symlink(rel, os.readlink(e.path), st.st_mtime)
            elif stat.S_ISREG(st.st_mode):
                tree.count(rel, st.st_size)
                _copy_file(e.path, rel, st, tree)
            else:
                raise tree.unsafe(rel, "device node, FIFO or socket (a revision holds only files, folders and links)")


def _copy_file(path: str, rel: str, st: os.stat_result, tree: _Tree) -> None:
    # O_NONBLOCK and fstat: a file swapped for a FIFO after the scan must not hang the agent.
    src = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            raise tree.unsafe(rel, "changed from a file into something else while being copied")
        mode = st.st_mode & 0o777
        fd = tree.create(rel, mode)
        try:
            offset = 0
            while offset < st.st_size:  # a file that grows meanwhile is copied as it was when scanned
                sent = os.sendfile(fd, src, offset, min(st.st_size - offset, 1 << 30))
                if not sent:
                    break
                offset += sent
        except BaseException:
            os.close(fd)
            raise
        tree.seal(fd, mode, st.st_mtime)
    finally:
        os.close(src)
