"""``berth clean``: make this host's berth a blank slate before an image snapshot (docs/install.md).

Everything under the state root goes (deployment groups and their retained revisions, install manifests, the spool
with any pending command, the status file, ids of commands seen, whatever identifies this instance) and the log
folder is emptied; the configuration (/etc/berth) stays. Instances launched from the image then start as new
hosts instead of replaying this one's history, and no pending command is baked into the image.

A running deployment makes it refuse: every deployment group's lock is taken (without waiting) for the whole clean,
so no deployment can start half-way through either.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import StateError, UsageError

# Folders a misconfigured root or log_dir must never be: cleaning them would wreck the host.
_NEVER = frozenset(
    Path(p) for p in (
        "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root", "/run", "/sbin",
        "/srv", "/sys", "/tmp", "/usr", "/usr/local", "/var", "/var/lib", "/var/log", "/var/tmp", "/var/cache",
    )
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "clean",
        help="before an image snapshot: remove deployment state, instance identity and logs (keeps configuration)",
    )
    p.add_argument("--config", type=Path, metavar="FILE", help="agent configuration (default /etc/berth/agent.yml)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    p.set_defaults(handler=_clean)


@dataclass
class CleanResult:
    """What :func:`clean` removed (or, for a dry run, would remove)."""

    removed: list[Path] = field(default_factory=list)
    bytes: int = 0
    warnings: list[str] = field(default_factory=list)


def _clean(args: argparse.Namespace) -> int:
    from agent.cli.wiring import load_agent_config

    config = load_agent_config(args.config)
    try:
        result = clean(config, dry_run=args.dry_run)
    except DeploymentRunning as exc:
        print(f"berth clean: refusing: {exc}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"berth clean: warning: {warning}", file=sys.stderr)
    verb = "would remove" if args.dry_run else "removed"
    for path in result.removed:
        print(f"{verb} {path}")
    kept = config.source or "no configuration file"
    print(f"berth clean: {verb} {len(result.removed)} item(s), {result.bytes / 1e6:.1f} MB; kept {kept}")
    return 0


class DeploymentRunning(Exception):
    """``berth clean`` met a deployment in progress (the message names it)."""


def clean(config: Any, *, dry_run: bool = False) -> CleanResult:
    """Empty the state root and the log folder of ``config`` (an :class:`agent.config.AgentConfig`).

    Raises :class:`DeploymentRunning` while any deployment runs on this host, and :class:`UsageError` when a
    configured folder is one that must never be emptied (``/``, ``/var/lib``, a folder holding the configuration).
    """
    from agent.paths import Paths
    from agent.state.store import StateStore

    root, log_dir = Path(config.root).absolute(), Path(config.log_dir).absolute()
    for what, folder in (("root", root), ("log_dir", log_dir)):
        _refuse_dangerous(what, folder, config.source)
    spool = Path(config.spool_dir).absolute()
    paths = Paths(root)
    result = CleanResult()
    _refuse_if_deploying(paths, result)
    store = StateStore(paths)
    with contextlib.ExitStack() as locks:
        try:
            groups = store.groups() if root.is_dir() else []
            for app, group in groups:
                locks.enter_context(store.lock(app, group, timeout=0))
        except StateError as exc:  # DeploymentLocked included: its message names the deployment
            raise DeploymentRunning(str(exc)) from exc
        targets = _entries(root) + _entries(log_dir)
        if config.channel.kind == "spool" and not _inside(spool, root):
            # A spool outside the state root: keep its folders (and their group/permissions), drop what is in them.
            targets += [e for sub in _entries(spool) if sub.is_dir() and not sub.is_symlink() for e in _entries(sub)]
        for target in targets:
            result.bytes += _size(target)
            result.removed.append(target)
            if not dry_run:
                _remove(target)
    return result


def _refuse_dangerous(what: str, folder: Path, config_file: Path | None) -> None:
    resolved = folder.resolve()
    if folder in _NEVER or resolved in _NEVER:
        raise UsageError(f"{what} is {folder}: berth clean empties that folder, and {folder} must never be emptied; "
                         f"set {what} to a folder of berth's own in the configuration")
    if config_file is not None and _inside(Path(config_file).resolve(), resolved):
        raise UsageError(f"{what} {folder} holds the configuration {config_file}, which berth clean keeps: "
                         f"move one of them")


def _refuse_if_deploying(paths: Any, result: CleanResult) -> None:
    """Refuse on a status file or in-flight marker of a deployment whose agent is still alive."""
    from agent.daemon.status import read_status
    from agent.state import procinfo
    from agent.state.store import StateStore

    try:
        status = read_status(paths.status_file)
    except StateError as exc:
        result.warnings.append(f"ignoring unreadable status file: {exc}")
        status = None
    pid = status.get("pid") if status else None
    agent_alive = isinstance(pid, int) and procinfo.same_process(pid, None, None)
    if status and agent_alive:
        state = status.get("state")
        if state in ("deploying", "stopping") and status.get("deployment_id"):
            raise DeploymentRunning(
                f"the agent (pid {pid}) is running deployment {status.get('deployment_id')} "
                f"({status.get('application')}/{status.get('deployment_group')}); wait for it to finish, then stop "
                f"the agent (systemctl stop berth-agent) and run berth clean again"
            )
        result.warnings.append(
            f"the agent is running (pid {pid}, {state}): stop it first (systemctl stop berth-agent), or it writes "
            f"new state after this clean and that state ends up in the image"
        )
    store = StateStore(paths)
    with contextlib.suppress(StateError):  # unreadable markers are removed with the rest; the locks still guard
        live_groups = set()
        interrupted = {(m.application, m.deployment_group) for m in store.find_interrupted()}
        for app, group in store.groups():
            if paths.group(app, group).inflight_file.exists() and (app, group) not in interrupted:
                live_groups.add(f"{app}/{group}")
        if live_groups:
            raise DeploymentRunning(
                f"a deployment of {', '.join(sorted(live_groups))} is in progress (its in-flight marker belongs to "
                f"a live process); wait for it to finish, stop the agent and run berth clean again"
            )


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(folder))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"cannot list {folder}: {exc.strerror}") from exc


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(OSError):
            return path.lstat().st_size
        return 0
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _remove(path: Path) -> None:
    """Delete a file, symlink (never its target) or folder tree; raise StateError naming what could not go."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StateError(f"cannot remove {path}: {exc.strerror}; remove it by hand and run berth clean again") from exc
