"""Free-space estimate of an install: bytes and inodes it writes per filesystem, against what is free."""

from __future__ import annotations

import os
from collections.abc import Iterable

from agent.install.fileops import parent
from agent.install.plan import SPACE_PREFIX, Problem, SpaceCheck


class _Need:
    __slots__ = ("blocks", "dirs", "inodes", "sample")

    def __init__(self, sample: str) -> None:
        self.sample = sample  # an existing directory on this filesystem
        self.blocks: list[int] = []
        self.inodes = 0
        self.dirs = 0


def check_space(
    writes: Iterable[tuple[str, int]], new_dirs: set[str]
) -> tuple[list[SpaceCheck], list[Problem]]:
    """``writes`` = (destination, size) of every file or symlink to write; ``new_dirs`` = directories to create.

    Both the old and the new version of a replaced file exist until the rename, so a replaced file needs its full
    size. Sizes are rounded up to the filesystem's block size, and each new directory counts one block.
    """
    dev_of: dict[str, tuple[int, str]] = {}

    def device(directory: str) -> tuple[int, str] | None:
        known = dev_of.get(directory)
        if known is not None:
            return known
        if directory in new_dirs and directory != "/":
            found = device(parent(directory))
        else:
            try:
                found = (os.stat(directory).st_dev, directory)
            except OSError:
                return None  # a conflict or problem elsewhere reports it
        if found is not None:
            dev_of[directory] = found
        return found

    needs: dict[int, _Need] = {}
    for dest, size in writes:
        dev = device(parent(dest))
        if dev is None:
            continue
        need = needs.get(dev[0])
        if need is None:
            need = needs[dev[0]] = _Need(dev[1])
        need.blocks.append(size)
        need.inodes += 1
    for directory in new_dirs:
        dev = device(parent(directory)) if directory != "/" else None
        if dev is None:
            continue
        need = needs.setdefault(dev[0], _Need(dev[1]))
        need.dirs += 1
        need.inodes += 1

    checks: list[SpaceCheck] = []
    problems: list[Problem] = []
    for device_id, need in needs.items():
        try:
            vfs = os.statvfs(need.sample)
        except OSError:
            continue
        block = vfs.f_frsize or vfs.f_bsize or 4096
        needed = sum(-(-size // block) * block for size in need.blocks) + need.dirs * block
        free = vfs.f_bavail * vfs.f_frsize
        inodes_free = vfs.f_favail if vfs.f_files else None
        mount = _mount_point(need.sample, device_id)
        checks.append(SpaceCheck(mount, needed, free, need.inodes, inodes_free))
        if needed > free:
            problems.append(
                Problem(
                    "InstallFailed",
                    f"{SPACE_PREFIX} on {mount}: the install writes about {_human(needed)} there but only "
                    f"{_human(free)} is free; free some space or install to another filesystem",
                )
            )
        if inodes_free is not None and need.inodes > inodes_free:
            problems.append(
                Problem(
                    "InstallFailed",
                    f"{SPACE_PREFIX} on {mount}: the install creates {need.inodes} files and folders there but only "
                    f"{inodes_free} inodes are free",
                )
            )
    checks.sort()
    return checks, problems


def _mount_point(path: str, dev: int) -> str:
    """Walk up from ``path`` while the device stays the same."""
    current = os.path.realpath(path)
    while current != "/":
        up = parent(current)
        try:
            if os.stat(up).st_dev != dev:
                return current
        except OSError:
            return current
        current = up
    return "/"


def _human(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
