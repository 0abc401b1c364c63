"""Phase 3 of an install: remove what the previous install shipped and the new one does not (SPEC §2, §5).

Only paths the previous manifest lists are touched: files and symlinks are unlinked, then the directories berth
created are removed if empty, deepest first. A directory that still holds something berth did not install is kept
(and stays berth's, so a later cleanup can finish the job). Failures here are warnings: the new revision is already
in place.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping, Sequence

from agent.install.manifest import DIRECTORY
from agent.install.plan import Removal


def _moved(path: str, aside: Mapping[str, str]) -> str:
    """Where ``path`` is now if a folder above it was set aside (a berth folder replaced by a file)."""
    for final, moved in aside.items():
        if path == final:
            return moved
        if path.startswith(final + "/"):
            return moved + path[len(final) :]
    return path


def remove_previous(
    removals: Sequence[Removal], aside: Mapping[str, str]
) -> tuple[int, list[str], list[str]]:
    """Carry out ``removals`` (files first, then directories deepest first, as the plan orders them).

    Returns (paths removed, directories kept because they are not empty, warnings).
    """
    removed = 0
    kept: list[str] = []
    warnings: list[str] = []
    for removal in removals:
        path = _moved(removal.path, aside)
        try:
            if removal.type == DIRECTORY:
                os.rmdir(path)
            else:
                if stat.S_ISDIR(os.lstat(path).st_mode):
                    warnings.append(f"left {path}: berth installed a {removal.type} there, now it is a directory")
                    continue
                os.unlink(path)
            removed += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            if removal.type == DIRECTORY and exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                if path == removal.path:
                    kept.append(path)
                warnings.append(f"kept {path}: it holds files berth did not install")
            else:
                warnings.append(f"could not remove {path}: {exc.strerror}")
    return removed, kept, warnings
