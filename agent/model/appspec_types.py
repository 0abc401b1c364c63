"""The AppSpec data model (SPEC §1) and the small helpers its validators share. Pure data, no I/O.

Import these names from :mod:`agent.model.appspec`; this module exists so the validators can use them without an
import cycle.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

DEFAULT_TIMEOUT = 3600
FILE_EXISTS_BEHAVIORS = ("DISALLOW", "OVERWRITE", "RETAIN")
PERMISSION_TYPES = ("file", "directory")


def revision_relative(path: str) -> str:
    """Normalise a revision-relative path as the appspec writes it: leading ``/`` dropped, ``.`` = the root.

    The result may start with ``..`` when the path leaves the revision; validation rejects those.
    """
    return posixpath.normpath(path.strip().lstrip("/") or ".")


@dataclass(frozen=True)
class FileMapping:
    """One ``files`` entry. ``source`` is as written (revision-relative); ``destination`` is normalised."""

    source: str
    destination: str

    @property
    def relative_source(self) -> str:
        """The source relative to the revision root (``.`` for ``source: /``, the whole revision)."""
        return revision_relative(self.source)


@dataclass(frozen=True)
class SELinuxContext:
    name: str | None
    type: str
    range: str | None


@dataclass(frozen=True)
class Permission:
    """One ``permissions`` entry; ``mode`` is the permission bits (``0o644``), ``types`` a subset of file/directory."""

    object: str
    pattern: str = "**"
    except_: tuple[str, ...] = ()
    types: tuple[str, ...] = PERMISSION_TYPES
    owner: str | None = None
    group: str | None = None
    mode: int | None = None
    acls: tuple[str, ...] = ()
    context: SELinuxContext | None = None


@dataclass(frozen=True)
class HookScript:
    """One script of a lifecycle event; ``location`` is as written, relative to the revision root."""

    location: str
    timeout: int = DEFAULT_TIMEOUT
    runas: str | None = None

    @property
    def relative_location(self) -> str:
        """The script's path relative to the revision root, normalised (a leading ``/`` is dropped)."""
        return revision_relative(self.location)


@dataclass(frozen=True)
class HealthCheck:
    """``berth: health_check``: after ValidateService berth GETs ``url`` up to ``retries`` times (each try waits
    ``timeout`` seconds, tries are ``interval`` seconds apart) until it answers ``expected_status`` and, if set, its
    body contains ``body_contains``."""

    url: str
    expected_status: int = 200
    body_contains: str | None = None
    timeout: float = 5.0
    retries: int = 3
    interval: float = 2.0


@dataclass(frozen=True)
class BerthExtension:
    """berth's own settings, read from the top-level ``berth:`` key (CodeDeploy ignores it)."""

    health_check: HealthCheck | None = None
    auto_rollback: bool = False


def _empty_hooks() -> Mapping[str, tuple[HookScript, ...]]:
    return MappingProxyType({})


@dataclass(frozen=True)
class AppSpec:
    """A validated appspec. ``hooks`` maps event name to its scripts, in the order the appspec lists them."""

    version: str = "0.0"
    os: str = "linux"
    files: tuple[FileMapping, ...] = ()
    permissions: tuple[Permission, ...] = ()
    hooks: Mapping[str, tuple[HookScript, ...]] = field(default_factory=_empty_hooks)
    file_exists_behavior: str | None = None
    berth: BerthExtension = field(default_factory=BerthExtension)

    def scripts(self, event: str) -> tuple[HookScript, ...]:
        """The scripts of ``event`` (empty when the appspec lists none)."""
        return self.hooks.get(event, ())


@dataclass(frozen=True)
class Problem:
    """One finding: ``path`` locates it (``hooks.AfterInstall[0].timeout``; empty = whole file)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class Findings:
    """Collects errors and warnings while validators walk the document (mutable, local to one validation)."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(Problem(path, message))


MISSING: Any = object()  # a key that is absent, as opposed to present with a null value


def join(parent: str, key: object) -> str:
    """The path of ``key`` inside ``parent`` (``hooks`` + ``AfterInstall`` -> ``hooks.AfterInstall``)."""
    text = key_text(key)
    return f"{parent}.{text}" if parent else text


def key_text(key: object) -> str:
    """A mapping key as it may be shown in a path (never huge, never raises)."""
    if isinstance(key, str):
        return key if len(key) <= 60 else key[:57] + "..."
    return describe(key)


def describe(value: object) -> str:
    """A short description of any YAML value for a message: scalars quoted, containers by kind only.

    Containers are never rendered: a document built from aliases may be cyclic or expand to a huge text.
    """
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # str() of a number with thousands of digits raises on Python 3.11+, and is no help anyway.
        return str(value) if value.bit_length() < 100 else "a very large number"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return repr(shown)
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (bytes, bytearray)):
        return "binary data"
    if isinstance(value, (set, frozenset)):
        return "a set"
    return f"a {type(value).__name__} value"


def is_int(value: object) -> bool:
    """True for YAML integers (``true``/``false`` are not numbers here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
