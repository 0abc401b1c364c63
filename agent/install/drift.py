"""Drift check: compare the host with the install manifest (``berth verify``).

Finds files modified (sha256), missing, with a changed type, mode or owner, symlinks retargeted, and files present
in folders berth created that no revision shipped. Cost grows linearly with the number of files; a file whose size
and mtime still match the manifest is not re-hashed unless ``full`` is asked for.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from agent.install.manifest import Manifest

_CHUNK = 1024 * 1024


@dataclass
class DriftReport:
    """What differs from the manifest; ``clean`` when nothing does."""

    modified: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    type_changed: list[dict[str, str]] = field(default_factory=list)
    mode_changed: list[dict[str, str]] = field(default_factory=list)
    owner_changed: list[dict[str, str]] = field(default_factory=list)
    retargeted: list[dict[str, str]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    checked: int = 0
    hashed: int = 0

    @property
    def clean(self) -> bool:
        return not (self.modified or self.missing or self.type_changed or self.mode_changed or self.owner_changed
                    or self.retargeted or self.unexpected)

    def summary(self) -> str:
        if self.clean:
            return f"clean ({self.checked} paths checked)"
        parts = [f"{len(v)} {k.replace('_', ' ')}" for k, v in self._lists().items() if v]
        return "drift: " + ", ".join(parts)

    def _lists(self) -> dict[str, list[Any]]:
        return {
            "modified": self.modified, "missing": self.missing, "type_changed": self.type_changed,
            "mode_changed": self.mode_changed, "owner_changed": self.owner_changed,
            "retargeted": self.retargeted, "unexpected": self.unexpected,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"clean": self.clean, "summary": self.summary(), "checked": self.checked, "hashed": self.hashed,
                **self._lists()}


def _sha256(path: str) -> str | None:
    h = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


_KIND = {stat.S_IFREG: "file", stat.S_IFDIR: "directory", stat.S_IFLNK: "symlink"}


def check_drift(manifest: Manifest, *, full: bool = False) -> DriftReport:
    """Compare every manifest entry with the host (read-only)."""
    report = DriftReport()
    for path, entry in manifest.entries.items():
        report.checked += 1
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            report.missing.append(path)
            continue
        except OSError:
            report.missing.append(path)
            continue
        kind = _KIND.get(stat.S_IFMT(st.st_mode), "other")
        if kind != entry.type:
            report.type_changed.append({"path": path, "expected": entry.type, "found": kind})
            continue
        if kind == "symlink":
            target = os.readlink(path)
            if target != entry.target:
                report.retargeted.append({"path": path, "expected": str(entry.target), "found": target})
            continue
        mode = stat.S_IMODE(st.st_mode)
        if mode != entry.mode:
            report.mode_changed.append({"path": path, "expected": f"{entry.mode:04o}", "found": f"{mode:04o}"})
        if st.st_uid != entry.uid or st.st_gid != entry.gid:
            report.owner_changed.append({"path": path, "expected": f"{entry.uid}:{entry.gid}",
                                         "found": f"{st.st_uid}:{st.st_gid}"})
        if kind == "file" and entry.sha256:
            if not full and st.st_size == entry.size and st.st_mtime_ns == entry.mtime_ns:
                continue  # fast path: untouched since install
            report.hashed += 1
            if st.st_size != entry.size or _sha256(path) != entry.sha256:
                report.modified.append(path)
    known = set(manifest.entries) | set(manifest.retained)
    for directory in manifest.created_dirs:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            child = os.path.join(directory, name)
            if child not in known:
                report.unexpected.append(child)
    report.unexpected.sort()
    return report
