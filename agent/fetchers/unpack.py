"""Unpack a revision (tar, tgz, zip or directory) into a fresh folder, treating the archive as hostile (SPEC §4).

How it stays safe: everything is written into a private temporary sibling of the target, which starts empty and
which only this code writes to, so its state is exactly what :class:`_Tree` recorded. Symlinks are only recorded
while members are written and are created at the very end, after each was resolved against the finished tree:
so no member is ever written through a symlink, and checking a path needs no system calls. Names with ``..`` or
a leading ``/``, links leading outside, device nodes and FIFOs, and archives over the :class:`Limits` are
rejected with :class:`ArchiveUnsafe` naming the member and the rule; the temporary folder is then removed, so a
failure leaves nothing behind. On success the temporary folder is renamed to the target.

This module is the entry point; the work is done by unpack_tree (the checked tree and its :class:`Limits`),
unpack_source (checking and opening the source), unpack_tar with unpack_gunzip, unpack_zip and unpack_directory.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ArchiveCorrupt, BerthError, RevisionUnavailable, UsageError
from agent.fetchers.unpack_directory import _copy_directory
from agent.fetchers.unpack_source import _check_source
from agent.fetchers.unpack_tar import _DATA_FILTER, _unpack_tar
from agent.fetchers.unpack_tree import Limits, _Tree, _write_all
from agent.fetchers.unpack_zip import _unpack_zip

__all__ = ["BUNDLE_TYPES", "Limits", "UnpackResult", "guess_bundle_type", "unpack"]  # Limits lives in unpack_tree

BUNDLE_TYPES = ("tar", "tgz", "zip", "directory")
_LABEL = {"tar": "tar member", "tgz": "tar member", "zip": "zip member", "directory": "file"}
_UNAVAILABLE = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM)


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
    limits: Limits = Limits(),  # noqa: B008 - a frozen dataclass, so one shared default is safe
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
    # File data is written with this module's _write_all and tar members checked with its _DATA_FILTER, looked up
    # here on each call: one place to substitute them (tests simulate a full disk, or a Python without filters).
    tree = _Tree(tmp, _LABEL[bundle_type], limits, _write_all)
    try:
        try:
            if bundle_type == "directory":
                _copy_directory(source, tree)
            elif bundle_type == "zip":
                _unpack_zip(source, tree)
            else:
                _unpack_tar(source, bundle_type, tree, _DATA_FILTER)
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


def _os_failure(exc: OSError, member: str) -> BerthError:
    where = f" (at {member!r})" if member else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return RevisionUnavailable(f"no space left to unpack the revision{where}: free some space on the host")
    if exc.errno in _UNAVAILABLE:
        return RevisionUnavailable(f"cannot unpack the revision{where}: {exc.strerror or exc}")
    return ArchiveCorrupt(f"cannot unpack the revision{where}: {exc.strerror or exc}")
