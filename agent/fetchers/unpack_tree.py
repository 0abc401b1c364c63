"""The revision tree being unpacked, mirrored in memory: names, limits and links checked (internal to unpack).

Every reader (tar, zip, directory) hands its members to :class:`_Tree`, which rejects names that escape, links
leading outside, entries over the :class:`Limits`, and never writes through a symlink. See
:mod:`agent.fetchers.unpack` for how the pieces fit together.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.errors import ArchiveUnsafe

_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
_MAX_HOPS = 40  # symlinks followed while resolving one link (the kernel's own limit)
_LINK_STEPS = 10_000_000  # path components resolved for all links of one revision (bounds hostile link chains)
_MTIME_RANGE = (-(2**40), 2**40)  # archive mtimes outside this are ignored rather than overflowing utime


@dataclass(frozen=True)
class Limits:
    """Caps on what an archive may unpack to; exceeding one raises :class:`ArchiveUnsafe`.

    ``max_ratio`` is the zip-bomb cap: uncompressed/compressed size, checked for each zip member and for the whole
    zip once sizes pass 1 MiB (smaller ones say nothing). tar/tgz rely on ``max_total_bytes``.
    """

    max_entries: int = 100_000
    max_total_bytes: int = 10 * 1024**3
    max_ratio: float = 200.0


class _Corrupt(Exception):
    """Damaged tar data found while reading (reported as ArchiveCorrupt)."""


def _sane_mtime(mtime: float | None) -> float | None:
    if mtime is None or not _MTIME_RANGE[0] < mtime < _MTIME_RANGE[1]:
        return None
    return mtime


class _Tree:
    """The revision being written into the (private, initially empty) folder ``root``, mirrored in memory."""

    def __init__(self, root: str, label: str, limits: Limits, write_all: Callable[[int, bytes], None]) -> None:
        self.root = root
        self.label = label
        self.limits = limits
        self.write_all = write_all  # writes all of a chunk of file data (every reader writes file data through it)
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
                self.write_all(fd, data)
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
