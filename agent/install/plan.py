"""What an install would do, as data (SPEC §2 "prepare first"): built by ``planner.plan_install``, printed by the
plan-only mode, carried out by ``installer.execute_install``.

Rows are ``NamedTuple``s rather than dataclasses on purpose: a revision of 20,000 files makes 20,000 rows and
NamedTuple construction costs a fraction of a frozen dataclass's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from agent.errors import AppSpecInvalid, BerthError, FileConflict, InstallFailed, ToolMissing
from agent.install.manifest import DIRECTORY, Manifest, ManifestEntry
from agent.model.appspec import SELinuxContext

ADD = "add"
REPLACE = "replace"
OVERWRITE = "overwrite"
RETAIN = "retain"
UNCHANGED = "unchanged"
ACTIONS = (ADD, REPLACE, OVERWRITE, RETAIN, UNCHANGED)
WRITES = frozenset((ADD, REPLACE, OVERWRITE))  # actions that put new content in place

# Conflict resolutions.
FAIL = "fail"

# Space problems start with this text, so a caller can treat the estimate as advisory.
SPACE_PREFIX = "not enough free space"

# How many conflicting paths a FileConflict message lists before summarising.
_MAX_LISTED = 100


class PlanItem(NamedTuple):
    """One path of the revision and what the install does with it.

    ``source`` is absolute (inside the revision root); ``mode``/``uid``/``gid`` are the final values after the
    appspec's permissions. ``dest_sig`` is what the destination looked like when planned (inode, size, mtime,
    ctime, mode, uid, gid), so the installer notices a file that changed between plan and install; it is set only
    for ``unchanged`` items (the installer rewrites every other one, and one sig per file of a 20,000-file revision
    costs ~5 MiB). ``chown`` is set when creating the file does not by itself give it ``uid``/``gid`` (so most
    files skip the syscall).
    """

    source: str
    destination: str
    type: str
    action: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    target: str | None
    sha256: str | None
    dest_sig: tuple[int, ...] | None
    mapping: int
    chown: bool = False


class DirSpec(NamedTuple):
    """A directory berth owns after the install: ``create`` when this run makes it, else carried over."""

    path: str
    mode: int
    uid: int
    gid: int
    create: bool


class TypeChange(NamedTuple):
    """A path berth owns that changes between file-like (file/symlink) and directory in the new revision."""

    path: str
    old_type: str
    new_type: str


class Conflict(NamedTuple):
    """A destination that exists and is not berth's: ``resolution`` is fail, overwrite or retain."""

    path: str
    resolution: str
    reason: str


class Removal(NamedTuple):
    """A path the previous install owns that the new one does not ship (directories only if empty)."""

    path: str
    type: str
    size: int


class PermissionChange(NamedTuple):
    path: str
    what: str


class AfterStep(NamedTuple):
    """ACLs and SELinux context, applied once the path is in place (they belong to the final inode)."""

    path: str
    acls: tuple[str, ...]
    context: SELinuxContext | None
    origin: str  # e.g. "permissions[2]", for error messages


class SpaceCheck(NamedTuple):
    mount_point: str
    bytes_needed: int
    bytes_free: int
    inodes_needed: int
    inodes_free: int | None  # None when the filesystem does not count inodes


class Problem(NamedTuple):
    """Something that would make the install fail: ``reason`` is the error name (FileConflict, ToolMissing...)."""

    reason: str
    message: str


@dataclass(frozen=True)
class InstallPlan:
    """Everything the install would do. Build it with ``plan_install``; nothing on the host changed yet."""

    revision_root: str
    file_exists_behavior: str
    items: tuple[PlanItem, ...]
    dirs: tuple[DirSpec, ...]
    type_changes: tuple[TypeChange, ...]
    conflicts: tuple[Conflict, ...]
    removals: tuple[Removal, ...]
    permission_changes: tuple[PermissionChange, ...]
    after_steps: tuple[AfterStep, ...]
    space: tuple[SpaceCheck, ...]
    problems: tuple[Problem, ...]
    warnings: tuple[str, ...]
    tools: dict[str, str] = field(default_factory=dict)
    appspec_problems: tuple[tuple[str, str], ...] = ()

    @property
    def dirs_to_create(self) -> tuple[str, ...]:
        """Directories this install creates, parents first."""
        return tuple(d.path for d in self.dirs if d.create)

    @property
    def retained(self) -> tuple[str, ...]:
        return tuple(i.destination for i in self.items if i.action == RETAIN)

    @property
    def bytes_needed(self) -> dict[str, int]:
        return {s.mount_point: s.bytes_needed for s in self.space}

    @property
    def bytes_free(self) -> dict[str, int]:
        return {s.mount_point: s.bytes_free for s in self.space}

    def counts(self) -> dict[str, int]:
        """Number of files/symlinks per action, plus ``remove`` and ``mkdir``."""
        out = dict.fromkeys(ACTIONS, 0)
        for item in self.items:
            if item.type != DIRECTORY:
                out[item.action] += 1
        out["remove"] = len(self.removals)
        out["mkdir"] = len(self.dirs_to_create)
        return out

    def intent_manifest(self) -> Manifest:
        """Every path this install may create, as a manifest. Store it before ``execute_install``: if the agent
        dies half-way, merge it into the previous manifest so leftovers are berth's, not conflicts."""
        entries: dict[str, ManifestEntry] = {}
        for i in self.items:
            if i.action != RETAIN:
                entries[i.destination] = ManifestEntry(
                    i.destination, i.type, i.mode, i.uid, i.gid, i.sha256, i.target, i.size, i.mtime_ns
                )
        created = tuple(d.path for d in self.dirs)
        return Manifest(entries, created, self.retained)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description ("what would this deployment do"); sources are revision-relative."""
        cut = len(self.revision_root.rstrip("/")) + 1

        def rel(src: str) -> str:
            return src[cut:] or "."

        return {
            "revision_root": self.revision_root,
            "file_exists_behavior": self.file_exists_behavior,
            "counts": self.counts(),
            "items": [
                {"source": rel(i.source), "destination": i.destination, "type": i.type, "action": i.action,
                 "size": i.size}
                for i in self.items
            ],
            "conflicts": [c._asdict() for c in self.conflicts],
            "removals": [r._asdict() for r in self.removals],
            "dirs_to_create": list(self.dirs_to_create),
            "type_changes": [t._asdict() for t in self.type_changes],
            "permission_changes": [p._asdict() for p in self.permission_changes],
            "space": [
                {"mount": s.mount_point, "bytes_needed": s.bytes_needed, "bytes_free": s.bytes_free,
                 "inodes_needed": s.inodes_needed, "inodes_free": s.inodes_free}
                for s in self.space
            ],
            "problems": [p._asdict() for p in self.problems],
            "warnings": list(self.warnings),
        }

    def raise_for_problems(self, *, include_space: bool = True) -> None:
        """Raise the error that would stop this install, if any.

        Precedence: AppSpecInvalid (all appspec-level problems), FileConflict (listing every conflict),
        ToolMissing, then InstallFailed (unknown owner, or too little free space when ``include_space``).
        """
        error = self.first_error(include_space=include_space)
        if error is not None:
            raise error

    def first_error(self, *, include_space: bool = True) -> BerthError | None:
        """The exception :meth:`raise_for_problems` would raise, or ``None``."""
        if self.appspec_problems:
            return AppSpecInvalid(list(self.appspec_problems))
        failing = [c for c in self.conflicts if c.resolution == FAIL]
        if failing:
            return conflict_error(failing)
        for reason, cls in (("ToolMissing", ToolMissing), ("InstallFailed", InstallFailed)):
            msgs = [
                p.message
                for p in self.problems
                if p.reason == reason and (include_space or not p.message.startswith(SPACE_PREFIX))
            ]
            if msgs:
                return cls("; ".join(msgs))
        return None


def conflict_error(conflicts: list[Conflict]) -> FileConflict:
    """One FileConflict naming every conflicting path (up to a limit) and what to change."""
    shown = [f"{c.path} ({c.reason})" for c in conflicts[:_MAX_LISTED]]
    more = len(conflicts) - len(shown)
    tail = f"; and {more} more (run the plan to list them all)" if more > 0 else ""
    return FileConflict(
        f"{len(conflicts)} destination path(s) already exist and were not installed by this deployment group's "
        f"last install: " + "; ".join(shown) + tail + ". Remove them, or set file_exists_behavior to OVERWRITE "
        "or RETAIN (a directory where a file must go, or the reverse, must be removed by hand)."
    )

