"""Carry out an :class:`InstallPlan` with no empty window (SPEC §2).

Phase 1 stages every new or changed file as a hidden temp file beside its destination (content hashed while it is
copied, mode and owner set on the open file) and creates new directories. If anything fails there, every temp file
and directory this run made is removed and :class:`InstallFailed` names the path and the OS error: the previous
revision's files were never touched. Phase 2 renames the temp files over their destinations. Phase 3 removes what
the previous install shipped and this one does not (never a path berth did not install), then empty directories
berth created, deepest first. ACLs and SELinux contexts are applied last, to the final files.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
from dataclasses import dataclass

from agent.errors import InstallFailed
from agent.install.cleanup import remove_previous
from agent.install.fileops import (
    OLD_PREFIX,
    TMP_PREFIX,
    copy_file,
    parent,
    paused_gc,
    side_name,
    stat_sig,
    sync_filesystems,
)
from agent.install.manifest import DIRECTORY, FILE, SYMLINK, Manifest, ManifestEntry
from agent.install.plan import ADD, FAIL, UNCHANGED, WRITES, Conflict, InstallPlan, PlanItem, conflict_error
from agent.install.tools import apply_acls, apply_contexts

log = logging.getLogger(__name__)


class PartialInstall(InstallFailed):
    """The install failed after new content started to replace old content.

    ``manifest`` lists what is on disk now (previous entries plus what was put in place); record it as the group's
    manifest so the next install replaces or removes these paths instead of reporting them as conflicts.
    """

    def __init__(self, message: str, manifest: Manifest) -> None:
        super().__init__(message)
        self.manifest = manifest


@dataclass(frozen=True)
class InstallResult:
    """The new manifest and what the install did: files written, files left as they were, paths removed."""

    manifest: Manifest
    written: int
    unchanged: int
    removed: int
    warnings: tuple[str, ...]


def execute_install(
    plan: InstallPlan, previous: Manifest | None, *, tool_path: str | None = None, sync: bool = True
) -> InstallResult:
    """Install what ``plan`` describes; ``previous`` must be the manifest the plan was made with.

    Raises the plan's problems first (the free-space estimate excepted: the real writes decide). Raises
    :class:`InstallFailed` when staging fails (nothing changed), :class:`FileConflict` when a destination appeared
    since the plan under DISALLOW (nothing changed), :class:`PartialInstall` when content is (partly) in place but a
    later step failed. ``sync`` flushes the staged files to disk (one syncfs per filesystem) before any rename, so
    a power cut cannot leave empty files in place of the old ones.
    """
    plan.raise_for_problems(include_space=False)
    tools = dict(plan.tools)
    if tool_path is not None:
        tools = {name: shutil.which(name, path=tool_path) or path for name, path in tools.items()}
    with paused_gc():
        return _Run(plan, previous or Manifest.empty(), tools, sync).execute()


def _copy(item: PlanItem, temp: str) -> str:
    try:
        return copy_file(item.source, temp, item)
    except FileExistsError as exc:
        if exc.filename != temp:
            raise
    os.unlink(temp)  # our temp name, left by an earlier run that died with the same pid: take it over
    return copy_file(item.source, temp, item)


class _StageError(Exception):
    def __init__(self, path: str, exc: OSError, verb: str = "write") -> None:
        super().__init__(path)
        self.path = path
        self.exc = exc
        self.verb = verb


class _Run:
    def __init__(self, plan: InstallPlan, previous: Manifest, tools: dict[str, str], sync: bool) -> None:
        self.plan = plan
        self.prev = previous
        self.tools = tools
        self.sync = sync
        self.pid = os.getpid()
        self.fresh: set[str] = set()  # directories (final paths) this run created
        self.made_dirs: list[str] = []  # on-disk paths of created directories, creation order
        self.temps: list[str] = []  # every temp path created, for cleanup
        self.renames: list[tuple[str, str]] = []
        self.entries: dict[str, ManifestEntry] = {}
        self.retained: list[str] = list(plan.retained)
        self.conflicts: list[Conflict] = []
        self.warnings: list[str] = list(plan.warnings)
        # file -> directory type changes: the new directory is built under a temp name, then renamed into place.
        self.build_dirs = {
            t.path: side_name(t.path, TMP_PREFIX, self.pid) for t in plan.type_changes if t.new_type == DIRECTORY
        }
        self.to_file = {t.path for t in plan.type_changes if t.new_type != DIRECTORY}
        self.aside: dict[str, str] = {}
        self.written = 0
        self.unchanged = 0

    def execute(self) -> InstallResult:
        try:
            self._stage()
        except _StageError as failure:
            self._rollback()
            exc = failure.exc
            code = errno.errorcode.get(exc.errno or 0, "?")
            raise InstallFailed(
                f"could not {failure.verb} {failure.path}: {exc.strerror or exc} ({code}); "
                "nothing was changed (the previous revision's files are untouched)"
            ) from exc
        except BaseException:
            self._rollback()
            raise
        if self.conflicts:
            self._rollback()
            raise conflict_error(self.conflicts)
        if self.sync:
            sync_filesystems([s.mount_point for s in self.plan.space])
        self._swap()
        errors = self._dir_metadata()
        removed, left = self._cleanup()
        errors += self._after_steps()
        manifest = self._manifest(left)
        if errors:
            raise PartialInstall(
                "the new files are in place but setting permissions failed: " + "; ".join(errors), manifest
            )
        return InstallResult(manifest, self.written, self.unchanged, removed, tuple(self.warnings))

    # -- phase 1 ---------------------------------------------------------------------------------------------

    def _on_disk(self, path: str) -> str:
        """Where ``path`` is built during staging (inside a type change's temp directory, or itself)."""
        for final, temp in self.build_dirs.items():
            if path == final:
                return temp
            if path.startswith(final + "/"):
                return temp + path[len(final) :]
        return path

    def _stage(self) -> None:
        for spec in self.plan.dirs:
            if not spec.create:
                continue
            where = self._on_disk(spec.path)
            try:
                try:
                    os.mkdir(where, 0o700)
                except FileExistsError:
                    if where == spec.path and os.path.isdir(where):
                        continue  # someone made it since the plan: it is not berth's
                    if where != self.build_dirs.get(spec.path):
                        raise
                    shutil.rmtree(where)  # our temp name, left by an earlier run that died
                    os.mkdir(where, 0o700)
            except OSError as exc:
                raise _StageError(spec.path, exc) from exc
            self.made_dirs.append(where)
            self.fresh.add(spec.path)
        # Hot loop. The common case (a new file in a folder this run created) is handled inline; everything
        # else (existing destinations, symlinks, type changes) goes through _stage_item.
        fresh, pid = self.fresh, self.pid
        temps, renames, entries = self.temps, self.renames, self.entries
        fast = not self.build_dirs
        for item in self.plan.items:
            kind = item.type
            if kind == DIRECTORY or not (item.action in WRITES or item.action == UNCHANGED):
                continue
            dest = item.destination
            head, _, name = dest.rpartition("/")
            if not (fast and kind == FILE and head in fresh and len(name) <= 50):
                self._stage_item(item)
                continue
            temp = f"{head}/{TMP_PREFIX}{name}-{pid}"
            temps.append(temp)
            try:
                sha = _copy(item, temp)
            except OSError as exc:
                raise self._stage_error(item, exc) from exc
            entries[dest] = ManifestEntry(
                dest, FILE, item.mode, item.uid, item.gid, sha, None, item.size, item.mtime_ns
            )
            renames.append((temp, dest))
        self.written += len(renames)

    def _stage_item(self, item: PlanItem) -> None:
        dest = item.destination
        built = self.build_dirs and self._on_disk(dest) != dest
        if not built and parent(dest) not in self.fresh:
            try:
                st: os.stat_result | None = os.lstat(dest)
            except FileNotFoundError:
                st = None
            except OSError as exc:
                raise _StageError(dest, exc) from exc
            sig = item.dest_sig
            if item.action == UNCHANGED and st is not None and sig is not None and stat_sig(st) == sig:
                self.unchanged += 1
                self.entries[dest] = ManifestEntry(
                    dest, item.type, item.mode, item.uid, item.gid, item.sha256, item.target, sig[1], sig[2]
                )
                return
            if st is not None and not self._may_replace(item, st):
                return
        target = self._on_disk(dest) if built else side_name(dest, TMP_PREFIX, self.pid)
        self._write(item, target)
        if not built:
            self.renames.append((target, dest))
        else:
            self.written += 1  # renamed items are counted from self.renames

    def _may_replace(self, item: PlanItem, st: os.stat_result) -> bool:
        """Re-check a destination that exists at install time against what the plan saw."""
        dest = item.destination
        if stat.S_ISDIR(st.st_mode):
            if dest in self.to_file:
                return True
            self.conflicts.append(Conflict(dest, FAIL, "is a directory where the revision has a file"))
            return False
        if item.action != ADD or self.plan.file_exists_behavior == "OVERWRITE":
            return True
        # Appeared since the plan (a BeforeInstall script, another process): file_exists_behavior decides.
        if self.plan.file_exists_behavior == "RETAIN":
            self.retained.append(dest)
            return False
        self.conflicts.append(Conflict(dest, FAIL, "appeared after the install was planned"))
        return False

    def _write(self, item: PlanItem, target: str) -> None:
        self.temps.append(target)
        try:
            if item.type == SYMLINK:
                assert item.target is not None
                try:
                    os.symlink(item.target, target)
                except FileExistsError:
                    os.unlink(target)  # our temp name, left by an earlier run that died: take it over
                    os.symlink(item.target, target)
                if item.chown:
                    os.lchown(target, item.uid, item.gid)
                with contextlib.suppress(OSError):
                    os.utime(target, ns=(item.mtime_ns, item.mtime_ns), follow_symlinks=False)
                size, sha = len(os.fsencode(item.target)), None
            else:
                sha = _copy(item, target)
                size = item.size
        except OSError as exc:
            raise self._stage_error(item, exc) from exc
        self.entries[item.destination] = ManifestEntry(
            item.destination, item.type, item.mode, item.uid, item.gid, sha, item.target, size, item.mtime_ns
        )

    @staticmethod
    def _stage_error(item: PlanItem, exc: OSError) -> _StageError:
        if exc.filename == item.source:
            return _StageError(item.source, exc, "read")
        return _StageError(item.destination, exc)

    def _rollback(self) -> None:
        for path in self.temps:
            with contextlib.suppress(OSError):
                os.unlink(path)
        for temp in self.build_dirs.values():
            if temp in self.made_dirs:
                shutil.rmtree(temp, ignore_errors=True)
        for path in reversed(self.made_dirs):
            with contextlib.suppress(OSError):
                os.rmdir(path)

    # -- phase 2 ---------------------------------------------------------------------------------------------

    def _swap(self) -> None:
        done = 0
        try:
            for change in self.plan.type_changes:
                if change.new_type == DIRECTORY:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(change.path)
                    os.rename(self.build_dirs[change.path], change.path)
                elif os.path.isdir(change.path) and not os.path.islink(change.path):
                    aside = side_name(change.path, OLD_PREFIX, self.pid)
                    os.rename(change.path, aside)
                    self.aside[change.path] = aside
            for temp, dest in self.renames:
                os.replace(temp, dest)
                done += 1
        except OSError as exc:
            for temp, _ in self.renames[done:]:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
            moved = {dest for _, dest in self.renames[:done]}
            partial = dict(self.prev.entries)
            partial.update({p: e for p, e in self.entries.items() if p in moved})
            created = tuple(dict.fromkeys((*self.prev.created_dirs, *self.fresh)))
            raise PartialInstall(
                f"could not put {exc.filename or 'a file'} in place: {exc.strerror}; {done} of "
                f"{len(self.renames)} new files were already in place and the previous files were not removed",
                Manifest(partial, created, tuple(self.prev.retained)),
            ) from exc

    def _dir_metadata(self) -> list[str]:
        errors: list[str] = []
        for spec in self.plan.dirs:
            if spec.create and spec.path not in self.fresh:
                continue
            try:
                st = os.lstat(spec.path)
                if (st.st_uid, st.st_gid) != (spec.uid, spec.gid):
                    os.lchown(spec.path, spec.uid, spec.gid)
                if stat.S_IMODE(st.st_mode) != spec.mode or spec.path in self.fresh:
                    os.chmod(spec.path, spec.mode)
            except OSError as exc:
                errors.append(f"cannot set mode/owner of {spec.path}: {exc.strerror}")
        return errors

    # -- phase 3 ---------------------------------------------------------------------------------------------

    def _cleanup(self) -> tuple[int, list[str]]:
        removed, kept, warnings = remove_previous(self.plan.removals, self.aside)
        self.warnings += warnings
        return removed, kept

    def _after_steps(self) -> list[str]:
        dirs = {d.path for d in self.plan.dirs}
        steps = [s for s in self.plan.after_steps if s.path in self.entries or s.path in dirs]
        errors: list[str] = []
        if any(s.acls for s in steps):
            errors += apply_acls(self.tools["setfacl"], steps)
            # setfacl shows the ACL mask in the group bits of the mode: record the mode as it now is.
            for step in steps:
                entry = self.entries.get(step.path)
                if step.acls and entry is not None and entry.type == FILE:
                    with contextlib.suppress(OSError):
                        self.entries[step.path] = entry._replace(mode=stat.S_IMODE(os.lstat(step.path).st_mode))
        if any(s.context is not None for s in steps):
            errors += apply_contexts(self.tools["semanage"], self.tools["restorecon"], steps)
        return errors

    def _manifest(self, kept: list[str]) -> Manifest:
        entries = dict(self.entries)
        owned: list[str] = []
        for spec in self.plan.dirs:
            if spec.create and spec.path not in self.fresh:
                continue
            owned.append(spec.path)
            try:
                st = os.lstat(spec.path)
            except OSError:
                continue
            entries[spec.path] = ManifestEntry(
                spec.path, DIRECTORY, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, None, None, 0, st.st_mtime_ns
            )
        created = tuple(dict.fromkeys((*owned, *kept)))
        retained = tuple(p for p in dict.fromkeys(self.retained) if p not in entries)
        log.info("install done: %d written, %d unchanged", self.written, self.unchanged)
        return Manifest(entries, created, retained)

