"""``max_revisions``: which deployment folders of a group to delete, and deleting them without half-states."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from agent.errors import StateError, UsageError
from agent.paths import check_name

log = logging.getLogger(__name__)

# Folders being deleted are first renamed to this prefix: deployment ids never start with a dot, so a half-deleted
# folder can never be mistaken for a retained revision (a rollback must not redeploy a partial tree).
TRASH_PREFIX = ".trash-"


def plan_removals(ordered: list[str], max_revisions: int, protected: Iterable[str]) -> list[str]:
    """Ids to remove from ``ordered`` (existing deployment folders, newest first) to keep ``max_revisions``.

    Protected ids (the last successful deployment, the running one, ``keep``) are always kept and count towards
    the limit; the remaining places go to the newest others. So a group holds at most
    ``max(max_revisions, number of protected folders)`` folders.
    """
    if max_revisions < 1:
        raise UsageError(f"max_revisions is {max_revisions}; it must be at least 1")
    guard = set(protected)
    kept = [d for d in ordered if d in guard]
    for dep in ordered:
        if len(kept) >= max_revisions:
            break
        if dep not in kept:
            kept.append(dep)
    return [d for d in ordered if d not in kept]


def existing_deployments(deployments_dir: Path, newest_first: list[str]) -> list[str]:
    """Deployment folders present on disk, newest first: recorded ones in ``newest_first`` order, then the
    folders no record names, newest mtime first.

    Unrecorded folders (a crash before group.json was written, or history trimmed) sort after recorded ones.
    """
    try:
        entries = list(os.scandir(deployments_dir))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"cannot list {deployments_dir}: {exc.strerror}") from exc
    present: dict[str, float] = {}
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            check_name("deployment id", entry.name)
            present[entry.name] = entry.stat(follow_symlinks=False).st_mtime
        except (UsageError, OSError):
            continue
    recorded = [d for d in dict.fromkeys(newest_first) if d in present]
    others = sorted((d for d in present if d not in set(recorded)), key=lambda d: present[d], reverse=True)
    return recorded + others


def remove_deployment(deployments_dir: Path, deployment_id: str) -> None:
    """Delete one deployment folder: rename it aside first (atomic), then remove the tree."""
    src = deployments_dir / deployment_id
    trash = deployments_dir / f"{TRASH_PREFIX}{deployment_id}.{os.getpid()}"
    try:
        os.rename(src, trash)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateError(f"cannot remove old deployment folder {src}: {exc.strerror}") from exc
    _rmtree(trash)


def sweep_trash(deployments_dir: Path) -> None:
    """Finish deletions an earlier agent started and did not complete (it crashed mid-way)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(deployments_dir):
            if entry.name.startswith(TRASH_PREFIX):
                _rmtree(Path(entry.path))


def _rmtree(path: Path) -> None:
    def report(_func: object, failed: str, exc: BaseException) -> None:
        log.warning("could not delete %s while removing an old deployment folder: %s", failed, exc)

    # A leftover is retried by the next sweep. ``onexc`` replaced ``onerror`` in 3.12 (which warns on the old one).
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=report)
    else:
        shutil.rmtree(path, onerror=lambda func, failed, info: report(func, failed, info[1]))
