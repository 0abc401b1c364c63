"""Validation of ``permissions`` entries (SPEC §1): object, pattern, except, type, owner, group, mode, acls, context.

``mode`` is read from the raw YAML text as octal digits (Departure: the CodeDeploy agent turns an unquoted ``0644``
into 420 and then into mode 0420). ACL entries and SELinux ranges follow the CodeDeploy agent's grammar so that a
revision it accepts is accepted here, and one it would reject at install time is rejected before anything runs.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from typing import Any

from agent.model.appspec_rules import warn_unknown_keys
from agent.model.appspec_types import (
    PERMISSION_TYPES,
    FileMapping,
    Findings,
    Permission,
    SELinuxContext,
    describe,
    is_int,
)
from agent.model.appspec_yaml import RawScalar

PERMISSION_KEYS = ("object", "pattern", "except", "type", "owner", "group", "mode", "acls", "context")
CONTEXT_KEYS = ("name", "type", "range")

_OCTAL = re.compile(r"[0-7]{1,4}")
_ACL_KINDS = {"u": "user", "user": "user", "g": "group", "group": "group", "m": "mask", "mask": "mask"}
_ACL_KINDS |= {"o": "other", "other": "other"}
_SENSITIVITY = re.compile(r"s([0-9]{1,6})")
_CATEGORY = re.compile(r"c([0-9]{1,6})")


def check_permissions(
    found: Findings, doc: dict[Any, Any], raw_modes: dict[int, RawScalar], files: Sequence[FileMapping]
) -> list[Permission]:
    value = doc.get("permissions")
    if value is None:
        return []
    if not isinstance(value, list):
        found.error("permissions", f"must be a list of {{object, ...}} entries, not {describe(value)}")
        return []
    result: list[Permission] = []
    for index, entry in enumerate(value):
        path = f"permissions[{index}]"
        if not isinstance(entry, dict):
            found.error(path, f"must be a mapping with an object, not {describe(entry)}")
            continue
        before = len(found.problems)
        warn_unknown_keys(found, path, entry, PERMISSION_KEYS, "a permissions entry")
        obj = _object(found, f"{path}.object", entry.get("object"), files)
        permission = Permission(
            object=obj or "/",
            pattern=_pattern(found, f"{path}.pattern", entry.get("pattern")),
            except_=_patterns(found, f"{path}.except", entry.get("except")),
            types=_types(found, f"{path}.type", entry.get("type")),
            owner=_principal(found, f"{path}.owner", entry.get("owner"), "user"),
            group=_principal(found, f"{path}.group", entry.get("group"), "group"),
            mode=_mode(found, f"{path}.mode", entry.get("mode"), raw_modes.get(index)),
            acls=_acls(found, f"{path}.acls", entry.get("acls")),
            context=_context(found, f"{path}.context", entry.get("context")),
        )
        if len(found.problems) == before:
            result.append(permission)
    return result


def _object(found: Findings, path: str, value: Any, files: Sequence[FileMapping]) -> str | None:
    if value is None:
        found.error(path, "is missing; name the installed file or folder these settings apply to, like /opt/app")
        return None
    if not isinstance(value, str) or not value.strip():
        found.error(path, f"must be an absolute path like /opt/app, not {describe(value)}")
        return None
    text = value.strip()
    if "\0" in text:
        found.error(path, "contains a NUL character; remove it")
        return None
    if not text.startswith("/"):
        found.error(
            path,
            f"{describe(text)} is relative; permissions apply to installed paths, so write the absolute "
            "destination path, like /opt/app",
        )
        return None
    obj = posixpath.normpath(text)
    if files and not any(_related(obj, f.destination) for f in files):
        found.warn(
            path,
            f"{obj} is not inside (or above) any files destination, so it matches nothing this revision "
            "installs; permissions never change files a deployment did not install",
        )
    return obj


def _related(a: str, b: str) -> bool:
    """True when one path is the other or lies inside it."""
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def _glob(found: Findings, path: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        found.error(path, f"must be a name pattern like *.conf, not {describe(value)}")
        return None
    if "/" in value:
        found.error(path, f"{describe(value)} contains '/'; patterns match names of direct children only")
        return None
    if "**" in value and value != "**":
        found.error(path, f"{describe(value)} mixes '**' with other text; use '**' alone or a '*' pattern")
        return None
    return value


def _pattern(found: Findings, path: str, value: Any) -> str:
    if value is None:
        return "**"
    return _glob(found, path, value) or "**"


def _string_list(found: Findings, path: str, value: Any, what: str) -> list[tuple[str, Any]]:
    """A YAML list (or a lone string, as a one-item list) as (path, item) pairs."""
    if value is None:
        return []
    if isinstance(value, str):
        return [(path, value)]
    if not isinstance(value, list):
        found.error(path, f"must be a list of {what}, not {describe(value)}")
        return []
    return [(f"{path}[{i}]", item) for i, item in enumerate(value)]


def _patterns(found: Findings, path: str, value: Any) -> tuple[str, ...]:
    items = _string_list(found, path, value, "name patterns like *.log")
    return tuple(p for p in (_glob(found, ipath, item) for ipath, item in items) if p is not None)


def _types(found: Findings, path: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return PERMISSION_TYPES
    items = _string_list(found, path, value, "file and/or directory")
    if isinstance(value, list) and not value:
        found.error(path, "is an empty list; list file and/or directory, or remove type to mean both")
    types: list[str] = []
    for ipath, item in items:
        if item not in PERMISSION_TYPES:
            found.error(ipath, f"must be file or directory, not {describe(item)}")
        elif item not in types:
            types.append(item)
    return tuple(types) or PERMISSION_TYPES


def _principal(found: Findings, path: str, value: Any, what: str) -> str | None:
    if value is None:
        return None
    if is_int(value):
        if 0 <= value < 2**32 - 1:
            return str(value)
        found.error(path, f"{describe(value)} is not a valid numeric {what} id")
        return None
    if not isinstance(value, str) or not value.strip():
        found.error(path, f"must be a {what} name or numeric id, not {describe(value)}")
        return None
    name = value.strip()
    if any(c.isspace() or c in ":/\0" for c in name):
        found.error(path, f"{describe(name)} is not a {what} name; write a name like www-data or a numeric id")
        return None
    return name


def _mode(found: Findings, path: str, value: Any, raw: RawScalar | None) -> int | None:
    if value is None or (raw is not None and raw.is_null):
        return None
    if isinstance(value, (list, dict)):
        found.error(path, f"must be octal digits like 644 or 0755, not {describe(value)}")
        return None
    # The raw text is what the user wrote; the constructed value is only a fallback.
    text = raw.text.strip() if raw is not None else str(value).strip()
    if not text or any(c not in "0123456789" for c in text):
        found.error(path, f"{describe(text)} is not a mode; write octal digits like 644 or 0755")
        return None
    if any(c in "89" for c in text):
        found.error(path, f"{describe(text)} is not octal: use only the digits 0-7, like 644 or 0755")
        return None
    if not _OCTAL.fullmatch(text):
        found.error(path, f"{describe(text)} has more than 4 digits; write at most 4 octal digits, like 644 or 4755")
        return None
    return int(text, 8)


def _acls(found: Findings, path: str, value: Any) -> tuple[str, ...]:
    acls: list[str] = []
    for ipath, item in _string_list(found, path, value, "ACL entries like u:deploy:rw"):
        if not isinstance(item, str):
            found.error(ipath, f"must be an ACL entry like u:deploy:rw, not {describe(item)}")
            continue
        why = acl_entry_problem(item.strip())
        if why:
            found.error(ipath, f"{describe(item)} is not a valid ACL entry: {why}")
        else:
            acls.append(item.strip())
    return tuple(acls)


def acl_entry_problem(entry: str) -> str | None:
    """Why an ACL entry ``[d[efault]:][u[ser]|g[roup]|m[ask]|o[ther]:][name]:perms`` is invalid, or None.

    The same grammar as the CodeDeploy agent: a base entry without a name must be set with ``mode`` instead.
    """
    parts = entry.split(":")[::-1]
    form = "write [d:]{u|g|m|o}:name:rwx, e.g. u:deploy:rw or d:g:staff:r-x"
    if not 2 <= len(parts) <= 4:
        return form
    default = False
    kind: str | None = None
    name = ""
    if len(parts) == 4:
        if parts[3] not in ("d", "default"):
            return form
        default = True
    if len(parts) >= 3:
        if parts[2] in ("d", "default"):
            if default:
                return form
            default = True
        elif parts[2] in _ACL_KINDS:
            kind = _ACL_KINDS[parts[2]]
        else:
            return form
    if parts[1] in ("m", "mask", "o", "other"):
        if kind is None:
            kind = _ACL_KINDS[parts[1]]
        else:
            name = parts[1]
    else:
        kind = kind or "user"
        name = parts[1]
    if kind in ("mask", "other") and name:
        return "mask and other entries take no name"
    if not default and kind != "mask" and not name:
        return "an entry without a user or group name is the base permission: set it with mode instead"
    perms = parts[0]
    if len(perms) == 1 and perms in "01234567":
        return None
    if not perms or any(c not in "rwx-" for c in perms):
        return f"permissions {perms!r} must be made of r, w, x and - (or one octal digit)"
    return None


def _context(found: Findings, path: str, value: Any) -> SELinuxContext | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        found.error(path, f"must be a mapping with type (and optional name, range), not {describe(value)}")
        return None
    warn_unknown_keys(found, path, value, CONTEXT_KEYS, "an SELinux context")
    before = len(found.problems)
    fields: dict[str, str | None] = {}
    for key in CONTEXT_KEYS:
        item = value.get(key)
        fields[key] = None
        if isinstance(item, str) and item.strip() and not any(c.isspace() for c in item.strip()):
            fields[key] = item.strip()
        elif item is not None:
            found.error(f"{path}.{key}", f"must be a single word like httpd_sys_content_t, not {describe(item)}")
    ctype, srange = fields["type"], fields["range"]
    if value.get("type") is None:
        found.error(f"{path}.type", "is missing; name the SELinux type, like httpd_sys_content_t")
    if srange is not None:
        why = selinux_range_problem(srange)
        if why:
            found.error(f"{path}.range", f"{describe(srange)} is not a valid range: {why}")
    if len(found.problems) != before or ctype is None:
        return None
    return SELinuxContext(name=fields["name"], type=ctype, range=srange)


def selinux_range_problem(text: str) -> str | None:
    """Why an MLS range ``s0[-s0][:c0[.c3][,c5...]]`` is invalid (the CodeDeploy agent's grammar), or None."""
    form = "write s0, s0-s2, or s0:c0.c5,c7"
    levels, _, categories = text.partition(":")
    low_high = levels.split("-")
    if len(low_high) > 2:
        return form
    numbers = []
    for part in low_high:
        m = _SENSITIVITY.fullmatch(part)
        if not m:
            return form
        numbers.append(int(m.group(1)))
    if len(numbers) == 2 and numbers[1] < numbers[0]:
        return "the high sensitivity is below the low one"
    if ":" not in text:
        return None
    seen: set[int] = set()
    for chunk in categories.split(","):
        ends = chunk.split(".")
        if len(ends) > 2:
            return form
        values = []
        for end in ends:
            m = _CATEGORY.fullmatch(end)
            if not m or int(m.group(1)) > 1023:
                return f"{end!r} is not a category c0..c1023"
            values.append(int(m.group(1)))
        if values[-1] < values[0]:
            return f"category range {chunk!r} runs backwards"
        span = set(range(values[0], values[-1] + 1))
        if span & seen:
            return "a category is listed twice"
        seen |= span
    return None
