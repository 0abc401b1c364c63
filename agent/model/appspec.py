"""The AppSpec model and its validation (SPEC §1). Pure: parses the text it is handed, no file access.

``parse_appspec`` returns a :class:`ParsedAppSpec` or raises :class:`agent.errors.AppSpecInvalid` listing **every**
problem, each with its path (``hooks.AfterInstall[0].timeout``) and a message saying what to change. It never raises
anything else, whatever the input (the property tests feed it arbitrary text and bytes). Warnings (unknown keys,
repeated keys, settings that can match nothing) are kept apart from errors and never make an appspec invalid.

Checks that need the revision folder (sources and scripts exist, no two sources land on one path) live in
``agent.engine.revision``; they use :func:`analyze_appspec`, which also returns the valid parts of an invalid file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType

from agent.errors import AppSpecInvalid
from agent.model.appspec_berth import check_berth
from agent.model.appspec_permissions import check_permissions
from agent.model.appspec_rules import (
    TOP_LEVEL_KEYS,
    check_file_exists_behavior,
    check_files,
    check_hooks,
    check_os,
    check_version,
    warn_unknown_keys,
)
from agent.model.appspec_types import (
    DEFAULT_TIMEOUT,
    FILE_EXISTS_BEHAVIORS,
    AppSpec,
    BerthExtension,
    FileMapping,
    Findings,
    HealthCheck,
    HookScript,
    Permission,
    Problem,
    SELinuxContext,
    describe,
)
from agent.model.appspec_yaml import MAX_BYTES, YamlUnreadable, load

__all__ = [
    "DEFAULT_TIMEOUT",
    "FILE_EXISTS_BEHAVIORS",
    "MAX_BYTES",
    "AppSpec",
    "AppSpecAnalysis",
    "BerthExtension",
    "FileMapping",
    "HealthCheck",
    "HookScript",
    "ParsedAppSpec",
    "Permission",
    "Problem",
    "SELinuxContext",
    "analyze_appspec",
    "invalid_error",
    "parse_appspec",
]


@dataclass(frozen=True)
class ParsedAppSpec:
    """A valid appspec and the warnings found while reading it."""

    spec: AppSpec
    warnings: tuple[Problem, ...]


@dataclass(frozen=True)
class AppSpecAnalysis:
    """Everything validation found, valid or not.

    ``spec`` holds the parts that validated (invalid entries are left out; ``None`` when the text is not a YAML
    mapping at all). ``file_entries`` and ``hook_entries`` pair each kept entry with its path (``files[2]``,
    ``hooks.AfterInstall[0]``) so later checks can point at the right line of the appspec.
    """

    spec: AppSpec | None
    problems: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    file_entries: tuple[tuple[str, FileMapping], ...] = ()
    hook_entries: tuple[tuple[str, HookScript], ...] = ()

    @property
    def valid(self) -> bool:
        return not self.problems


def analyze_appspec(text: str | bytes, *, custom_events: Iterable[str] = ()) -> AppSpecAnalysis:
    """Validate appspec text against every rule of SPEC §1 and return all findings. Never raises.

    ``custom_events`` names events the command adds, so hooks for them are accepted.
    """
    try:
        document = load(text)
    except YamlUnreadable as exc:
        return AppSpecAnalysis(None, (exc.problem,), ())
    found = Findings()
    found.warnings.extend(document.warnings)
    data = document.data
    if data is None:
        found.error("", "the appspec is empty; it needs at least `version: 0.0` and `os: linux`")
        return AppSpecAnalysis(None, tuple(found.problems), tuple(found.warnings))
    if not isinstance(data, dict):
        found.error("", f"the appspec must be a YAML mapping (version, os, files, hooks...), not {describe(data)}")
        return AppSpecAnalysis(None, tuple(found.problems), tuple(found.warnings))

    warn_unknown_keys(
        found, "", data, TOP_LEVEL_KEYS, "the appspec", hint="; berth's own settings go under the `berth:` key"
    )
    check_version(found, data)
    check_os(found, data)
    file_entries = check_files(found, data)
    files = [mapping for _, mapping in file_entries]
    behavior = check_file_exists_behavior(found, data)
    permissions = check_permissions(found, data, document.raw_modes, files)
    hooks = check_hooks(found, data, frozenset(e for e in custom_events if isinstance(e, str)))
    berth = check_berth(found, data)

    spec = AppSpec(
        version="0.0",
        os="linux",
        files=tuple(files),
        permissions=tuple(permissions),
        hooks=MappingProxyType({event: tuple(s for _, s in scripts) for event, scripts in hooks.items()}),
        file_exists_behavior=behavior,
        berth=berth,
    )
    return AppSpecAnalysis(
        spec,
        tuple(found.problems),
        tuple(found.warnings),
        file_entries=tuple(file_entries),
        hook_entries=tuple(entry for scripts in hooks.values() for entry in scripts),
    )


def parse_appspec(text: str | bytes, *, custom_events: Iterable[str] = ()) -> ParsedAppSpec:
    """Parse and validate appspec text (str, or bytes in UTF-8/UTF-16).

    Raises :class:`AppSpecInvalid` with every problem (and the warnings) when the appspec breaks any rule, and
    nothing else for any input. YAML syntax errors are reported with their line and column.
    """
    analysis = analyze_appspec(text, custom_events=custom_events)
    if analysis.problems or analysis.spec is None:
        raise invalid_error(analysis.problems, analysis.warnings)
    return ParsedAppSpec(analysis.spec, analysis.warnings)


def invalid_error(problems: Iterable[Problem], warnings: Iterable[Problem] = ()) -> AppSpecInvalid:
    """The :class:`AppSpecInvalid` error for these findings."""
    return AppSpecInvalid(
        problems=[(p.path, p.message) for p in problems],
        warnings=[(w.path, w.message) for w in warnings],
    )

