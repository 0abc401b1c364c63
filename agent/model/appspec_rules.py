"""Validation of the appspec's top level, ``files`` and ``hooks`` (SPEC §1). Pure functions over parsed YAML.

Every validator records every problem it finds in a :class:`Findings` and returns the best model it can build, so
a caller can still check the parts that are valid (the revision-folder checks run on them).
"""

from __future__ import annotations

import difflib
import math
import posixpath
from collections.abc import Iterable
from typing import Any

from agent.model.appspec_types import (
    DEFAULT_TIMEOUT,
    FILE_EXISTS_BEHAVIORS,
    MISSING,
    FileMapping,
    Findings,
    HookScript,
    describe,
    is_int,
    join,
    key_text,
    revision_relative,
)
from agent.model.lifecycle import AGENT_EVENTS, SCRIPTABLE_EVENTS

TOP_LEVEL_KEYS = ("version", "os", "files", "permissions", "hooks", "file_exists_behavior", "berth")
FILE_KEYS = ("source", "destination")
SCRIPT_KEYS = ("location", "timeout", "runas", "sudo")
MAX_TIMEOUT = 7 * 24 * 3600

# Where scripts meant for an event berth runs itself belong instead.
_AGENT_EVENT_ADVICE = {
    "DownloadBundle": "BeforeInstall",
    "Install": "BeforeInstall or AfterInstall",
    "BlockTraffic": "BeforeBlockTraffic or AfterBlockTraffic",
    "AllowTraffic": "BeforeAllowTraffic or AfterAllowTraffic",
}


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """`` (did you mean 'hooks'?)`` when ``word`` is close to one of ``choices``, else empty."""
    if not isinstance(word, str):
        return ""
    options = list(choices)
    by_lower = {c.lower(): c for c in options}
    if word.lower() in by_lower:
        return f" (did you mean {by_lower[word.lower()]!r}?)"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def warn_unknown_keys(
    found: Findings, path: str, mapping: dict[Any, Any], known: Iterable[str], where: str, *, hint: str = ""
) -> None:
    """Unknown keys are ignored (as CodeDeploy does) but named in a warning."""
    known = tuple(known)
    for key in mapping:
        if key not in known:
            found.warn(
                join(path, key),
                f"unknown key {key_text(key)!r} in {where} is ignored{did_you_mean(key, known)}{hint}",
            )


def check_version(found: Findings, doc: dict[Any, Any]) -> None:
    value = doc.get("version", MISSING)
    if value is MISSING or value is None:
        found.error("version", "is missing; add `version: 0.0` to the appspec")
    elif (not isinstance(value, bool) and isinstance(value, (int, float)) and value == 0) or value == "0.0":
        return
    else:
        found.error("version", f"must be 0.0, not {describe(value)}; write `version: 0.0`")


def check_os(found: Findings, doc: dict[Any, Any]) -> None:
    value = doc.get("os", MISSING)
    if value is MISSING or value is None:
        found.error("os", "is missing; add `os: linux` to the appspec")
    elif value == "windows":
        found.error("os", "windows is unsupported on this host: berth deploys Linux revisions; use `os: linux`")
    elif value != "linux":
        found.error("os", f"must be linux, not {describe(value)}; write `os: linux`")


def check_file_exists_behavior(found: Findings, doc: dict[Any, Any]) -> str | None:
    value = doc.get("file_exists_behavior")
    if value is None:
        return None
    if isinstance(value, str) and value.strip().upper() in FILE_EXISTS_BEHAVIORS:
        return value.strip().upper()
    found.error(
        "file_exists_behavior",
        f"must be DISALLOW, OVERWRITE or RETAIN, not {describe(value)}",
    )
    return None


def _path_text(found: Findings, path: str, value: Any, what: str) -> str | None:
    """A non-empty path string, or None after recording why it is not one."""
    if value is MISSING or value is None:
        found.error(path, f"is missing; {what}")
        return None
    if not isinstance(value, str):
        found.error(path, f"must be a path, not {describe(value)}; {what}")
        return None
    if not value.strip():
        found.error(path, f"is empty; {what}")
        return None
    if "\0" in value:
        found.error(path, "contains a NUL character; remove it")
        return None
    return value


def check_files(found: Findings, doc: dict[Any, Any]) -> list[tuple[str, FileMapping]]:
    """Valid ``files`` entries with their paths (``files[2]``)."""
    value = doc.get("files")
    if value is None:
        return []
    if not isinstance(value, list):
        found.error("files", f"must be a list of {{source, destination}} entries, not {describe(value)}")
        return []
    result: list[tuple[str, FileMapping]] = []
    seen: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(value):
        path = f"files[{index}]"
        if not isinstance(entry, dict):
            found.error(path, f"must be a mapping with source and destination, not {describe(entry)}")
            continue
        warn_unknown_keys(found, path, entry, FILE_KEYS, "a files entry")
        source = _path_text(
            found,
            f"{path}.source",
            entry.get("source", MISSING),
            "name a file or folder of the revision (source: / means the whole revision)",
        )
        if source is not None and revision_relative(source).split("/")[0] == "..":
            found.error(f"{path}.source", f"{describe(source)} leaves the revision; sources are relative to its root")
            source = None
        destination = _path_text(
            found, f"{path}.destination", entry.get("destination", MISSING), "give an absolute folder like /opt/app"
        )
        if destination is not None and not destination.startswith("/"):
            found.error(
                f"{path}.destination",
                f"{describe(destination)} is not an absolute path; write the folder in full, like /opt/app",
            )
            destination = None
        if source is None or destination is None:
            continue
        mapping = FileMapping(source, posixpath.normpath(destination))
        ident = (mapping.relative_source, mapping.destination)
        if ident in seen:
            found.error(path, f"repeats files[{seen[ident]}] (same source and destination); remove one of them")
            continue
        seen[ident] = index
        result.append((path, mapping))
    return result


def check_hooks(
    found: Findings, doc: dict[Any, Any], custom_events: frozenset[str]
) -> dict[str, list[tuple[str, HookScript]]]:
    """Valid hook scripts per event, each with its path (``hooks.AfterInstall[0]``)."""
    value = doc.get("hooks")
    if value is None:
        return {}
    if isinstance(value, list):
        found.error(
            "hooks",
            "must map event names to scripts (`AfterInstall: [{location: ...}]`); the list form is for "
            "Lambda and ECS deployments, which berth does not run",
        )
        return {}
    if not isinstance(value, dict):
        found.error("hooks", f"must map event names to lists of scripts, not {describe(value)}")
        return {}
    known = SCRIPTABLE_EVENTS + tuple(sorted(custom_events - AGENT_EVENTS))
    result: dict[str, list[tuple[str, HookScript]]] = {}
    for event, scripts in value.items():
        path = join("hooks", event)
        if not isinstance(event, str):
            found.error(path, f"event names are words like AfterInstall, not {describe(event)}")
            continue
        if event in AGENT_EVENTS:
            found.error(
                path,
                f"{event} is performed by berth itself and runs no scripts; move these scripts to "
                f"{_AGENT_EVENT_ADVICE[event]}",
            )
            continue
        if event not in known:
            found.error(
                path,
                f"unknown lifecycle event {key_text(event)!r}{did_you_mean(event, known)}; use one of "
                f"{', '.join(SCRIPTABLE_EVENTS)}, or name a custom event in the command's event list "
                "(berth appspec validate --events NAME)",
            )
            continue
        result[event] = _check_scripts(found, path, scripts)
    return result


def _check_scripts(found: Findings, path: str, scripts: Any) -> list[tuple[str, HookScript]]:
    if scripts is None:
        found.warn(path, "lists no scripts; remove the event or add `- location: scripts/...`")
        return []
    if isinstance(scripts, dict):
        found.error(path, "must be a list of scripts: put `- ` before `location:`")
        return []
    if not isinstance(scripts, list):
        found.error(path, f"must be a list of scripts ({{location, timeout, runas}}), not {describe(scripts)}")
        return []
    result: list[tuple[str, HookScript]] = []
    for index, script in enumerate(scripts):
        spath = f"{path}[{index}]"
        if not isinstance(script, dict):
            found.error(spath, f"must be a mapping with a location, not {describe(script)}")
            continue
        warn_unknown_keys(found, spath, script, SCRIPT_KEYS, "a hook script")
        location = _check_location(found, f"{spath}.location", script.get("location", MISSING))
        timeout = _check_timeout(found, f"{spath}.timeout", script.get("timeout"))
        runas = _check_runas(found, f"{spath}.runas", script.get("runas"))
        sudo = script.get("sudo")
        if sudo is not None and not isinstance(sudo, bool):
            found.error(f"{spath}.sudo", f"must be true or false, not {describe(sudo)}")
        if location is not None:
            result.append((spath, HookScript(location, timeout, runas)))
    return result


def _check_location(found: Findings, path: str, value: Any) -> str | None:
    location = _path_text(found, path, value, "give the script's path relative to the revision root")
    if location is None:
        return None
    location = location.strip()
    relative = revision_relative(location)
    if relative.split("/")[0] == "..":
        found.error(
            path,
            f"{describe(location)} leaves the revision through ../; scripts must be files inside the revision",
        )
        return None
    if relative == ".":
        found.error(path, f"{describe(location)} names the revision root, not a script file")
        return None
    return location


def _check_timeout(found: Findings, path: str, value: Any) -> int:
    if value is None:
        return DEFAULT_TIMEOUT
    seconds: int | None = None
    if is_int(value):
        seconds = value
    elif isinstance(value, float) and math.isfinite(value):
        seconds = int(value)  # the CodeDeploy agent truncates too
    elif isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 20:
        seconds = int(value.strip())
    if seconds is None:
        found.error(path, f"must be a whole number of seconds like 300, not {describe(value)}")
        return DEFAULT_TIMEOUT
    if seconds <= 0:
        found.error(path, f"must be at least 1 second, not {describe(value)}; remove it to get {DEFAULT_TIMEOUT}")
        return DEFAULT_TIMEOUT
    if seconds > MAX_TIMEOUT:
        found.error(path, f"must be at most {MAX_TIMEOUT} seconds (7 days), not {describe(value)}")
        return DEFAULT_TIMEOUT
    return seconds


def _check_runas(found: Findings, path: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        found.error(path, f"must be a user name like www-data, not {describe(value)}")
        return None
    name = value.strip()
    if any(c.isspace() or c in ":/\0" for c in name):
        found.error(path, f"{describe(name)} is not a user name; write the name of a local user like www-data")
        return None
    return name
