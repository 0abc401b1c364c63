"""Low-level file helpers shared by the planner and the installer (plain ``os`` calls: they run per file)."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
from collections.abc import Iterator
from typing import Protocol

READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
# O_EXCL + O_NOFOLLOW: a temp name never reuses or follows anything already there.
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
CHUNK = 1 << 20

TMP_PREFIX = ".berth-tmp-"
OLD_PREFIX = ".berth-old-"


def sha256_file(path: str) -> str:
    """Hex sha256 of a regular file's content (never follows a symlink)."""
    fd = os.open(path, READ_FLAGS)
    try:
        digest = hashlib.sha256()
        while True:
            data = os.read(fd, CHUNK)
            if not data:
                break
            digest.update(data)
        return digest.hexdigest()
    finally:
        os.close(fd)


def side_name(path: str, prefix: str, pid: int) -> str:
    """A hidden name beside ``path`` (same folder, so a rename is atomic): ``.berth-tmp-<name>-<pid>``.

    Names too long for the filesystem (255 bytes) fall back to a hash of the name.
    """
    head, _, name = path.rpartition("/")
    side = f"{prefix}{name}-{pid}"
    # A name of under 50 characters is under 200 bytes in any encoding: skip the encode on the hot path.
    if len(name) > 50 and len(side.encode("utf-8", "surrogateescape")) > 250:
        side = f"{prefix}{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:32]}-{pid}"
    return f"{head}/{side}"


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while tens of thousands of small rows are built.

    Planning and installing create no reference cycles worth collecting, and with 20,000 files the collector's
    repeated full passes over the growing heap cost about a third of the run. Reference counting still frees
    everything; the collector is re-enabled (if it was on) on the way out.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def stat_sig(st: os.stat_result) -> tuple[int, ...]:
    """What identifies one version of a file cheaply: inode, size, mtime, ctime, mode, owner."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode, st.st_uid, st.st_gid)


def parent(path: str) -> str:
    head = path.rpartition("/")[0]
    return head or "/"


def join(directory: str, name: str) -> str:
    return f"/{name}" if directory == "/" else f"{directory}/{name}"


def sync_filesystems(mount_points: list[str]) -> None:
    """Flush each filesystem's dirty data to disk (syncfs(2)); falls back to sync(2) where syncfs is missing.

    One call per filesystem makes staged files durable before they replace old ones: a power cut after the
    renames can then not leave empty files behind (cheaper than an fsync per file).
    """
    if not mount_points:
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        os.sync()
        return
    for mount in dict.fromkeys(mount_points):
        try:
            fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            os.sync()
            continue
        try:
            if syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)


class _Item(Protocol):
    """What :func:`copy_file` needs of a plan item."""

    @property
    def size(self) -> int: ...
    @property
    def mode(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def gid(self) -> int: ...
    @property
    def mtime_ns(self) -> int: ...
    @property
    def chown(self) -> bool: ...


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


def copy_file(src: str, dst: str, item: _Item) -> str:
    """Copy ``src`` to a new file ``dst`` (must not exist) with the item's mode/owner/mtime; returns its sha256.

    The source is read once: each chunk is hashed and written. Small files take a single read.
    """
    sfd = os.open(src, READ_FLAGS)
    try:
        dfd = os.open(dst, CREATE_FLAGS, 0o600)
        try:
            want = item.size + 1 if item.size < CHUNK else CHUNK
            data = os.read(sfd, want)
            if len(data) < want:
                digest = hashlib.sha256(data).hexdigest()
                if data:
                    _write_all(dfd, data)
            else:
                hasher = hashlib.sha256()
                while data:
                    hasher.update(data)
                    _write_all(dfd, data)
                    data = os.read(sfd, CHUNK)
                digest = hasher.hexdigest()
            if item.chown:
                os.fchown(dfd, item.uid, item.gid)  # before fchmod: chown clears setuid/setgid bits
            os.fchmod(dfd, item.mode)
            os.utime(dfd, ns=(item.mtime_ns, item.mtime_ns))
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)
    return digest
