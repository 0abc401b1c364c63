"""Helpers for install tests: build revision trees, run plan + install, read a destination back."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from agent.install.installer import InstallResult, execute_install
from agent.install.manifest import Manifest
from agent.install.plan import InstallPlan
from agent.install.planner import plan_install
from agent.model.appspec import AppSpec, FileMapping, Permission

Tree = dict[str, "bytes | str"]  # relative path -> content (bytes) or "->target" for a symlink, "/" for a dir


def write_tree(root: Path, tree: Mapping[str, bytes | str]) -> Path:
    """Create ``tree`` under ``root``: bytes = file, "->x" = symlink to x, "/" = empty directory."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, value in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, bytes):
            path.write_bytes(value)
        elif value.startswith("->"):
            path.symlink_to(value[2:])
        else:
            path.mkdir(exist_ok=True)
    return root


def read_tree(root: Path) -> Tree:
    """The inverse of :func:`write_tree` (directories listed only when empty); ignores nothing."""
    out: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            out[rel] = "->" + os.readlink(path) if path.is_symlink() else path.read_bytes()
        if not dirnames and not filenames and Path(dirpath) != root:
            out[str(Path(dirpath).relative_to(root))] = "/"
    return out


def spec(*mappings: tuple[str, str], permissions: tuple[Permission, ...] = ()) -> AppSpec:
    return AppSpec(files=tuple(FileMapping(s, d) for s, d in mappings), permissions=permissions)


def plan(
    app: AppSpec, rev: Path, previous: Manifest | None = None, behavior: str = "DISALLOW", tool_path: str | None = None
) -> InstallPlan:
    return plan_install(app, rev, previous, behavior, tool_path=tool_path)


def install(
    app: AppSpec, rev: Path, previous: Manifest | None = None, behavior: str = "DISALLOW", tool_path: str | None = None
) -> InstallResult:
    """Plan, refuse on problems (as the engine does), execute."""
    p = plan(app, rev, previous, behavior, tool_path)
    p.raise_for_problems()
    return execute_install(p, previous, tool_path=tool_path)


def temp_files(root: Path) -> list[str]:
    """Any berth temp or set-aside names left under ``root``."""
    return [
        os.path.join(d, n)
        for d, dirs, files in os.walk(root)
        for n in dirs + files
        if n.startswith((".berth-tmp-", ".berth-old-"))
    ]


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes | str]]:
    """Every path under ``root`` with inode, mode and content: equal snapshots = nothing was touched."""
    out: dict[str, tuple[int, int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if os.path.islink(path):
                body: bytes | str = "->" + os.readlink(path)
            elif os.path.isdir(path):
                body = "/"
            else:
                body = Path(path).read_bytes()
            out[path] = (st.st_ino, st.st_mode, body)
    return out
