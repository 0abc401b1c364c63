"""Plan the Install step (SPEC §1 files/file_exists_behavior/permissions, §2 prepare first).

``plan_install`` reads the revision and the destinations and decides, per path, what the install will do. It never
changes anything on the host and never raises for host conditions: conflicts, missing tools, unknown owners and too
little space all land in ``plan.problems`` so a plan-only run can show every one of them at once;
``plan.raise_for_problems()`` turns them into the error that stops a deployment.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent.errors import UsageError
from agent.install.collect import DEFAULT_DIR_MODE, Source, collect
from agent.install.fileops import parent, paused_gc, sha256_file, stat_sig
from agent.install.manifest import DIRECTORY, FILE, SYMLINK, Manifest
from agent.install.permissions import Rule, find_tools, resolve_permissions
from agent.install.plan import (
    ADD,
    FAIL,
    OVERWRITE,
    REPLACE,
    RETAIN,
    UNCHANGED,
    WRITES,
    AfterStep,
    Conflict,
    DirSpec,
    InstallPlan,
    PermissionChange,
    PlanItem,
    Problem,
    Removal,
    TypeChange,
)
from agent.install.space import check_space
from agent.model.appspec import FILE_EXISTS_BEHAVIORS, AppSpec

__all__ = ["InstallPlan", "plan_install"]

_CONFLICT = "conflict"  # internal action: the path cannot be installed (reported in conflicts, not in items)
_NOT_OURS = "exists and was not installed by this deployment group's last install"


def plan_install(
    spec: AppSpec,
    revision_root: Path,
    previous: Manifest | None,
    file_exists_behavior: str,
    *,
    tool_path: str | None = None,
) -> InstallPlan:
    """Plan installing ``spec.files`` from ``revision_root``; ``previous`` is the last successful install's manifest.

    ``file_exists_behavior`` is already resolved by the caller (appspec > command > DISALLOW). ``tool_path`` is the
    PATH used to look for setfacl/semanage/restorecon (default: the agent's PATH plus the sbin folders).
    Raises only :class:`UsageError` for a behaviour name that does not exist.
    """
    behavior = file_exists_behavior.upper()
    if behavior not in FILE_EXISTS_BEHAVIORS:
        raise UsageError(
            f"file_exists_behavior {file_exists_behavior!r} is not one of {', '.join(FILE_EXISTS_BEHAVIORS)}"
        )
    planner = _Planner(os.path.abspath(os.fspath(revision_root)), previous or Manifest.empty(), behavior)
    with paused_gc():
        return planner.run(spec, tool_path)


class _Planner:
    def __init__(self, root: str, previous: Manifest, behavior: str) -> None:
        self.root = root
        self.prev = previous
        self.behavior = behavior
        self.prev_dirs = set(previous.created_dirs) | {
            p for p, e in previous.entries.items() if e.type == DIRECTORY
        }
        self.euid = os.geteuid()
        self.egid = os.getegid()
        self.files: dict[str, Source] = {}
        self.src_dirs: dict[str, tuple[str | None, int, int]] = {}  # see Collection
        self.appspec_problems: list[tuple[str, str]] = []
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.conflicts: list[Conflict] = []
        self.type_changes: list[TypeChange] = []
        self.dirs: dict[str, DirSpec] = {}  # owned directories after the install
        self.new_dirs: set[str] = set()  # do not exist before the install (includes type changes)
        self.blocked: set[str] = set()  # directories that cannot be used: their content is skipped
        self.inherit: dict[str, tuple[int, bool]] = {}  # see _inherited

    def run(self, spec: AppSpec, tool_path: str | None) -> InstallPlan:
        found = collect(self.root, spec.files)
        self.files, self.src_dirs = found.files, found.src_dirs
        self.appspec_problems += found.appspec_problems
        self.problems += found.problems
        self._check_dirs()
        self._check_files()
        rules = self._permissions(spec)
        self._unchanged({path for path, rule in rules.items() if rule.acls})
        items = self._items(rules)
        removals = self._removals()
        writes = [(i.destination, i.size) for i in items if i.action in WRITES and i.type != DIRECTORY]
        space, space_problems = check_space(writes, {d.path for d in self.dirs.values() if d.create})
        tools, tool_problems = find_tools(spec.permissions, tool_path)
        problems = [Problem("AppSpecInvalid", f"{w}: {m}") for w, m in self.appspec_problems]
        problems += [Problem("FileConflict", f"{c.path}: {c.reason}") for c in self.conflicts if c.resolution == FAIL]
        problems += tool_problems + self.problems + space_problems
        changes = tuple(PermissionChange(path, rule.what) for path, rule in sorted(rules.items()))
        after = tuple(
            AfterStep(path, rule.acls, rule.context, rule.origin)
            for path, rule in sorted(rules.items())
            if rule.acls or rule.context is not None
        )
        return InstallPlan(
            revision_root=self.root,
            file_exists_behavior=self.behavior,
            items=tuple(items),
            dirs=tuple(self.dirs[d] for d in sorted(self.dirs)),
            type_changes=tuple(self.type_changes),
            conflicts=tuple(self.conflicts),
            removals=tuple(removals),
            permission_changes=changes,
            after_steps=after,
            space=tuple(space),
            problems=tuple(problems),
            warnings=tuple(self.warnings),
            tools=tools,
            appspec_problems=tuple(self.appspec_problems),
        )

    # -- inspect the destinations ----------------------------------------------------------------------------

    def _check_dirs(self) -> None:
        """Parents first: which directories exist, which berth creates, owns, or cannot use."""
        for d in sorted(self.src_dirs):
            src, src_mode, _ = self.src_dirs[d]
            up = parent(d)
            if up in self.blocked:
                self.blocked.add(d)
                continue
            # As mkdir does: in a setgid folder a new folder takes the folder's group and keeps the setgid bit.
            gid, setgid = self._inherited(up)
            mode = (src_mode if src is not None else DEFAULT_DIR_MODE) | (stat.S_ISGID if setgid else 0)
            if up in self.new_dirs:
                self._new_dir(d, mode, gid)
                continue
            try:
                st = os.lstat(d)
            except FileNotFoundError:
                self._new_dir(d, mode, gid)
                continue
            except OSError as exc:
                self.problems.append(Problem("InstallFailed", f"cannot inspect {d}: {exc.strerror}"))
                self.blocked.add(d)
                continue
            prev = self.prev.entries.get(d)
            if stat.S_ISDIR(st.st_mode):
                if d in self.prev_dirs:
                    self.dirs[d] = DirSpec(d, mode, self.euid, gid, False)
            elif prev is not None and prev.type != DIRECTORY:
                self.type_changes.append(TypeChange(d, prev.type, DIRECTORY))
                self._new_dir(d, mode, gid)
            elif stat.S_ISLNK(st.st_mode) and os.path.isdir(d):
                pass  # a host symlink to a folder (/opt/app -> /srv/app): install through it, as cp would
            else:
                self.conflicts.append(Conflict(d, FAIL, "is a file where the revision needs a directory"))
                self.blocked.add(d)

    def _new_dir(self, d: str, mode: int, gid: int) -> None:
        self.new_dirs.add(d)
        self.dirs[d] = DirSpec(d, mode, self.euid, gid, True)
        self.inherit[d] = (gid, True) if mode & stat.S_ISGID else (self.egid, False)

    def _inherited(self, d: str) -> tuple[int, bool]:
        """(group a file created in ``d`` gets, whether ``d`` is setgid); a folder that is planned counts as made."""
        found = self.inherit.get(d)
        if found is None:
            try:
                st = os.stat(d)
                found = (st.st_gid, True) if st.st_mode & stat.S_ISGID else (self.egid, False)
            except OSError:
                found = (self.egid, False)
            self.inherit[d] = found
        return found

    def _check_files(self) -> None:
        new_dirs = self.new_dirs
        blocked = self.blocked
        lstat = os.lstat
        for source in self.files.values():
            up = parent(source.dest)
            if up in new_dirs:
                continue  # cannot exist yet: add
            if up in blocked:
                source.action = _CONFLICT  # unreachable; its parent's conflict is reported
                continue
            try:
                st = lstat(source.dest)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.problems.append(Problem("InstallFailed", f"cannot inspect {source.dest}: {exc.strerror}"))
                continue
            dest = source.dest
            prev = self.prev.entries.get(dest)
            if stat.S_ISDIR(st.st_mode):
                if dest in self.prev_dirs:
                    foreign = self._foreign(dest)
                    if foreign is None:
                        self.type_changes.append(TypeChange(dest, DIRECTORY, SYMLINK if source.target else FILE))
                        source.action = REPLACE
                        continue
                    reason = f"is a directory berth created that now holds {foreign}, which berth did not install"
                else:
                    reason = "is a directory where the revision has a file"
                self.conflicts.append(Conflict(dest, FAIL, reason))
                source.action = _CONFLICT
            elif prev is not None and prev.type != DIRECTORY:
                source.action = REPLACE
                source.sig = stat_sig(st)
            elif self.behavior == "OVERWRITE":
                self.conflicts.append(Conflict(dest, "overwrite", _NOT_OURS))
                source.action = OVERWRITE
                source.sig = stat_sig(st)
            elif self.behavior == "RETAIN":
                self.conflicts.append(Conflict(dest, "retain", _NOT_OURS))
                source.action = RETAIN
            else:
                self.conflicts.append(Conflict(dest, FAIL, _NOT_OURS))
                source.action = _CONFLICT

    def _foreign(self, top: str) -> str | None:
        """The first path under ``top`` the previous install does not own, or None."""
        stack = [top]
        while stack:
            current = stack.pop()
            try:
                with os.scandir(current) as entries:
                    for entry in entries:
                        if not self.prev.owns(entry.path) and entry.path not in self.prev_dirs:
                            return entry.path
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
            except OSError as exc:
                return f"{current} (unreadable: {exc.strerror})"
        return None

    # -- permissions, unchanged files ------------------------------------------------------------------------

    def _permissions(self, spec: AppSpec) -> dict[str, Rule]:
        installed = {
            s.dest: FILE for s in self.files.values() if s.action not in (RETAIN, _CONFLICT) and s.target is None
        }
        installed.update(dict.fromkeys(self.dirs, DIRECTORY))
        result = resolve_permissions(spec.permissions, installed, os.path.isdir)
        self.appspec_problems += result.appspec_problems
        self.problems += result.problems
        self.warnings += result.warnings
        euid = self.euid
        rules = result.by_path
        inherited = self._inherited
        for source in self.files.values():
            rule = rules.get(source.dest)
            # Unless the appspec says otherwise a file gets what creating it gives: our uid, the folder's group.
            created_gid = inherited(parent(source.dest))[0]
            source.uid, source.gid = euid, created_gid
            if rule is not None:
                source.mode = source.mode if rule.mode is None else rule.mode
                source.uid = euid if rule.uid is None else rule.uid
                source.gid = created_gid if rule.gid is None else rule.gid
            source.chown = (source.uid, source.gid) != (euid, created_gid)
        for path, spec_dir in list(self.dirs.items()):
            rule = rules.get(path)
            if rule is not None:
                self.dirs[path] = spec_dir._replace(
                    mode=spec_dir.mode if rule.mode is None else rule.mode,
                    uid=euid if rule.uid is None else rule.uid,
                    gid=spec_dir.gid if rule.gid is None else rule.gid,
                )
        return rules

    def _unchanged(self, with_acls: set[str]) -> None:
        """A file the last install put there whose content (hashed from disk), mode and owner match stays put.

        With an ACL, the group bits of the mode show the ACL mask (setfacl changes them), so they are not compared.
        """
        for source in self.files.values():
            sig = source.sig
            if source.action != REPLACE or sig is None:
                continue
            _, size, _, _, mode, uid, gid = sig
            if (uid, gid) != (source.uid, source.gid):
                continue
            try:
                if source.target is not None:
                    if stat.S_ISLNK(mode) and os.readlink(source.dest) == source.target:
                        source.action = UNCHANGED
                    continue
                ignore = 0o070 if source.dest in with_acls else 0
                if (
                    stat.S_ISREG(mode)
                    and size == source.size
                    and stat.S_IMODE(mode) | ignore == source.mode | ignore
                    and sha256_file(source.dest) == (sha := sha256_file(source.src))
                ):
                    source.action = UNCHANGED
                    source.sha = sha
            except OSError:
                continue  # unreadable now: rewrite it

    # -- output ----------------------------------------------------------------------------------------------

    def _items(self, rules: dict[str, Rule]) -> list[PlanItem]:
        items = [
            PlanItem(
                s.src,
                s.dest,
                FILE if s.target is None else SYMLINK,
                s.action,
                s.size,
                s.mode if s.target is None else 0o777,
                s.uid,
                s.gid,
                s.mtime_ns,
                s.target,
                s.sha,
                s.sig if s.action == UNCHANGED else None,  # the installer re-checks only unchanged files
                s.mapping,
                s.chown,
            )
            for s in self.files.values()
            if s.action != _CONFLICT
        ]
        for d, (src, _, index) in self.src_dirs.items():
            spec = self.dirs.get(d)
            if src is None or d in self.blocked:
                continue
            action = ADD if spec is not None and spec.create else UNCHANGED
            mode = spec.mode if spec is not None else 0
            uid, gid = (spec.uid, spec.gid) if spec is not None else (-1, -1)
            items.append(PlanItem(src, d, DIRECTORY, action, 0, mode, uid, gid, 0, None, None, None, index, False))
        items.sort(key=lambda i: i.destination)
        return items

    def _removals(self) -> list[Removal]:
        keep = set(self.files)  # a path the revision ships is never removed, whatever happens to it
        keep.update(self.dirs)
        out = [
            Removal(path, e.type, e.size)
            for path, e in sorted(self.prev.entries.items())
            if e.type != DIRECTORY and path not in keep
        ]
        gone_dirs = [d for d in self.prev_dirs if d not in self.dirs]
        gone_dirs.sort(key=lambda d: (-d.count("/"), d))
        out += [Removal(d, DIRECTORY, 0) for d in gone_dirs]
        return out
