"""The install manifest (SPEC §5): every path one install put in place, so the next install can clean up.

The manifest is what makes cleanup, conflict checks and drift checks possible: a destination path is "berth's"
only when the previous successful install of the same deployment group recorded it here. Files berth kept
because of ``file_exists_behavior: RETAIN`` are listed under ``retained`` and are never berth's.

Pure data: the state layer stores :meth:`Manifest.to_dict` with ``agent.fsutil.write_state``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from agent.errors import StateError

FILE = "file"
DIRECTORY = "directory"
SYMLINK = "symlink"
ENTRY_TYPES = (FILE, DIRECTORY, SYMLINK)


class ManifestEntry(NamedTuple):
    """One installed path. ``sha256`` is set for files, ``target`` for symlinks; ``mode`` holds permission bits.

    Immutable. A NamedTuple rather than a frozen dataclass because an install of 20,000 files builds 20,000 of
    them, and a frozen dataclass costs several times more to construct.
    """

    path: str
    type: str
    mode: int
    uid: int
    gid: int
    sha256: str | None
    target: str | None
    size: int
    mtime_ns: int

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "path": self.path,
            "type": self.type,
            # Octal text reads like ls -l / chmod; from_dict also accepts a plain integer.
            "mode": f"{self.mode:04o}",
            "uid": self.uid,
            "gid": self.gid,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
        }
        if self.sha256 is not None:
            d["sha256"] = self.sha256
        if self.target is not None:
            d["target"] = self.target
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ManifestEntry:
        """Parse one entry; raises :class:`StateError` naming the bad field."""
        try:
            path = d["path"]
            kind = d["type"]
            raw_mode = d["mode"]
            mode = int(raw_mode, 8) if isinstance(raw_mode, str) else int(raw_mode)
            entry = cls(
                path=str(path),
                type=str(kind),
                mode=mode,
                uid=int(d["uid"]),
                gid=int(d["gid"]),
                sha256=None if d.get("sha256") is None else str(d["sha256"]),
                target=None if d.get("target") is None else str(d["target"]),
                size=int(d.get("size", 0)),
                mtime_ns=int(d.get("mtime_ns", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"install manifest entry {d!r} is malformed ({exc!r})") from exc
        if entry.type not in ENTRY_TYPES or not entry.path.startswith("/"):
            raise StateError(f"install manifest entry {d!r} has an unknown type or a relative path")
        return entry


@dataclass(frozen=True)
class Manifest:
    """What one install owns: ``entries`` by absolute path, the directories berth created, and retained paths."""

    entries: dict[str, ManifestEntry] = field(default_factory=dict)
    created_dirs: tuple[str, ...] = ()
    retained: tuple[str, ...] = ()

    @classmethod
    def empty(cls) -> Manifest:
        """The manifest of a deployment group that never installed anything."""
        return cls({}, (), ())

    def owns(self, path: str) -> bool:
        """True when ``path`` (normalised, absolute) was installed or created by this install."""
        return path in self.entries or path in self.created_dirs

    def merged(self, other: Manifest) -> Manifest:
        """Union of two manifests (``other`` wins per path).

        Use it after an interrupted install: ``previous.merged(plan.intent_manifest())`` makes the paths the
        interrupted run may have written count as berth's, so the next install replaces or removes them instead
        of reporting them as conflicts.
        """
        entries = dict(self.entries)
        entries.update(other.entries)
        created = dict.fromkeys(self.created_dirs)
        created.update(dict.fromkeys(other.created_dirs))
        retained = dict.fromkeys(p for p in (*self.retained, *other.retained) if p not in entries)
        return Manifest(entries, tuple(created), tuple(retained))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (entries sorted by path so diffs of two manifests read well)."""
        return {
            "entries": [self.entries[p].to_dict() for p in sorted(self.entries)],
            "created_dirs": sorted(self.created_dirs),
            "retained": sorted(self.retained),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        """Inverse of :meth:`to_dict`; extra keys (such as the state layer's kind/version) are ignored."""
        raw_entries = d.get("entries", [])
        if not isinstance(raw_entries, list):
            raise StateError("install manifest: 'entries' must be a list")
        entries: dict[str, ManifestEntry] = {}
        for raw in raw_entries:
            if not isinstance(raw, dict):
                raise StateError(f"install manifest entry {raw!r} is not an object")
            entry = ManifestEntry.from_dict(raw)
            entries[entry.path] = entry
        created = d.get("created_dirs", [])
        retained = d.get("retained", [])
        if not isinstance(created, list) or not isinstance(retained, list):
            raise StateError("install manifest: 'created_dirs' and 'retained' must be lists")
        return cls(entries, tuple(str(p) for p in created), tuple(str(p) for p in retained))
