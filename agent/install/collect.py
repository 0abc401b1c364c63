"""Read the revision side of an install: which revision path goes to which destination (SPEC §1 files).

A directory source installs its contents into the destination; any other source goes to
``destination/<basename>``; ``source: /`` is the whole revision. Every destination directory and its ancestors are
recorded so the planner can tell which ones berth must create.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Sequence

from agent.install.fileops import join, parent
from agent.install.plan import ADD, Problem
from agent.model.appspec import FileMapping

DEFAULT_DIR_MODE = 0o755


class Source:
    """One non-directory entry of the revision bound for ``dest`` (mutable while planning).

    Keeps only the size and mtime of the revision file's stat, not the ``os.stat_result`` itself: a revision of
    20,000 files holds 20,000 of these for the whole plan, and a stat result costs ~0.5 KiB each.
    """

    __slots__ = (
        "action", "chown", "dest", "gid", "mapping", "mode", "mtime_ns", "sha", "sig", "size", "src", "target", "uid"
    )

    def __init__(self, src: str, dest: str, st: os.stat_result, mapping: int, target: str | None) -> None:
        self.src = src
        self.dest = dest
        self.size = st.st_size
        self.mtime_ns = st.st_mtime_ns
        self.mapping = mapping
        self.target = target
        self.action = ADD
        self.sig: tuple[int, ...] | None = None
        self.mode = stat.S_IMODE(st.st_mode)
        self.uid = 0
        self.gid = 0
        self.sha: str | None = None
        self.chown = False


class Collection:
    """Destinations of every revision path: ``files`` (non-directories) and ``src_dirs``.

    ``src_dirs`` maps a destination directory to (revision directory, or None for a destination and its
    ancestors; mode from the revision; files[] index).
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.files: dict[str, Source] = {}
        self.src_dirs: dict[str, tuple[str | None, int, int]] = {}
        self.appspec_problems: list[tuple[str, str]] = []
        self.problems: list[Problem] = []
        self.dup_pairs: dict[tuple[int, int], list[str]] = {}


def collect(root: str, mappings: Sequence[FileMapping]) -> Collection:
    """Walk every ``files`` entry of the appspec; problems (missing source, two sources on one path) are collected."""
    found = Collection(root)
    for index, mapping in enumerate(mappings):
        _collect(found, index, mapping.source, mapping.destination)
    for (first, second), paths in found.dup_pairs.items():
        more = f" and {len(paths) - 1} more path(s)" if len(paths) > 1 else ""
        found.appspec_problems.append(
            (
                f"files[{second}]",
                f"installs {paths[0]}{more}, which files[{first}] installs too; change one destination so no path "
                "gets two sources",
            )
        )
    return found


def _collect(found: Collection, index: int, source: str, destination: str) -> None:
    rel = posixpath.normpath(source.strip().lstrip("/") or ".")
    if rel == ".." or rel.startswith("../"):
        found.appspec_problems.append((f"files[{index}].source", f"{source!r} leaves the revision"))
        return
    dest = posixpath.normpath(destination)
    if not dest.startswith("/"):
        found.appspec_problems.append((f"files[{index}].destination", f"{destination!r} must be absolute"))
        return
    dest = "/" + dest.lstrip("/")  # normpath keeps a leading "//"
    src = found.root if rel == "." else f"{found.root}/{rel}"
    try:
        st = os.lstat(src)
    except OSError as exc:
        found.appspec_problems.append(
            (f"files[{index}].source", f"{source!r} cannot be read in the revision ({exc.strerror})")
        )
        return
    _want_dir(found, dest, None, DEFAULT_DIR_MODE, index)
    if stat.S_ISDIR(st.st_mode):
        _walk(found, index, src, dest)
    else:
        _add(found, index, src, join(dest, posixpath.basename(rel)), st)


def _want_dir(found: Collection, dest: str, src: str | None, mode: int, index: int) -> None:
    if dest in found.files:
        _clash(found, found.files[dest].mapping, index, dest)
        return
    current = dest
    while current != "/" and current not in found.src_dirs:
        if current in found.files:
            _clash(found, found.files[current].mapping, index, current)
            return
        found.src_dirs[current] = (src, mode, index) if current == dest else (None, DEFAULT_DIR_MODE, index)
        current = parent(current)
    if src is not None and found.src_dirs[dest][0] is None:
        found.src_dirs[dest] = (src, mode, index)


def _walk(found: Collection, index: int, top: str, dest_top: str) -> None:
    # Hot loop (once per revision file): plain os calls and local names, no pathlib.
    stack = [(top, dest_top)]
    files = found.files
    src_dirs = found.src_dirs
    is_dir, is_reg = stat.S_ISDIR, stat.S_ISREG
    while stack:
        src_dir, dest_dir = stack.pop()
        prefix = "/" if dest_dir == "/" else dest_dir + "/"
        try:
            with os.scandir(src_dir) as entries:
                for entry in entries:
                    dest = prefix + entry.name
                    st = entry.stat(follow_symlinks=False)
                    if is_dir(st.st_mode):
                        _want_dir(found, dest, entry.path, st.st_mode & 0o7777, index)
                        stack.append((entry.path, dest))
                    elif is_reg(st.st_mode) and dest not in files and dest not in src_dirs:
                        files[dest] = Source(entry.path, dest, st, index, None)
                    else:
                        _add(found, index, entry.path, dest, st)
        except OSError as exc:
            found.problems.append(Problem("InstallFailed", f"cannot read {src_dir}: {exc.strerror}"))


def _add(found: Collection, index: int, src: str, dest: str, st: os.stat_result) -> None:
    mode = st.st_mode
    target = None
    if stat.S_ISLNK(mode):
        try:
            target = os.readlink(src)
        except OSError as exc:
            found.problems.append(Problem("InstallFailed", f"cannot read the symlink {src}: {exc.strerror}"))
            return
    elif not stat.S_ISREG(mode):
        found.problems.append(
            Problem("InstallFailed", f"{src} is a device, FIFO or socket; only files, folders and symlinks install")
        )
        return
    other = found.files.get(dest)
    if other is not None:
        _clash(found, other.mapping, index, dest)
        return
    if dest in found.src_dirs:
        _clash(found, found.src_dirs[dest][2], index, dest)
        return
    found.files[dest] = Source(src, dest, st, index, target)


def _clash(found: Collection, first: int, second: int, dest: str) -> None:
    found.dup_pairs.setdefault((min(first, second), max(first, second)), []).append(dest)
