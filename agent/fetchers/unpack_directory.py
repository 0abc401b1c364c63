"""Copying a directory revision into the tree (internal to unpack)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent.fetchers.unpack_tree import _Tree


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
