"""Which installed paths each ``permissions`` entry applies to, and what it sets (SPEC §1).

Rules (as the CodeDeploy agent applies them): permissions touch only paths this deployment installs. When
``object`` is an installed file the entry applies to that file (its pattern must be ``**``); when it is a directory
the entry applies to its strict descendants: ``**`` = any depth, any other pattern is a ``*``-only glob matched
against the names of direct children, ``except`` globs remove direct children, and ``type`` filters
file/directory. Symlinks are never changed (chmod would follow them to a file berth may not own).
"""

from __future__ import annotations

import bisect
import grp
import os
import posixpath
import pwd
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from agent.install.manifest import DIRECTORY, FILE
from agent.install.plan import Problem
from agent.model.appspec import Permission, SELinuxContext

# Directories searched after PATH: setfacl, semanage and restorecon live in sbin, which a service's PATH may lack.
_SBIN = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

_PACKAGES = {
    "setfacl": "the 'acl' package",
    "semanage": "policycoreutils-python-utils (RHEL/Fedora) or policycoreutils-python-utils/semanage-utils (Debian)",
    "restorecon": "the 'policycoreutils' package",
}


@dataclass(frozen=True)
class Rule:
    """A resolved ``permissions`` entry: ids instead of names, and a one-line description for plans."""

    index: int
    mode: int | None
    uid: int | None
    gid: int | None
    acls: tuple[str, ...]
    context: SELinuxContext | None
    what: str

    @property
    def origin(self) -> str:
        return f"permissions[{self.index}]"


@dataclass(frozen=True)
class Resolution:
    """Outcome of matching every entry: the rule per path plus what is wrong with the appspec or host."""

    by_path: dict[str, Rule]
    appspec_problems: list[tuple[str, str]]
    problems: list[Problem]
    warnings: list[str]


def default_tool_path() -> str:
    """PATH as the agent sees it, plus the usual sbin folders."""
    parts = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys([*parts, *_SBIN]))


def find_tools(perms: Sequence[Permission], tool_path: str | None) -> tuple[dict[str, str], list[Problem]]:
    """Absolute paths of the host tools the entries need; a ToolMissing problem for each one not found."""
    search = default_tool_path() if tool_path is None else tool_path
    tools: dict[str, str] = {}
    problems: list[Problem] = []
    for index, perm in enumerate(perms):
        needed = (["setfacl"] if perm.acls else []) + (["semanage", "restorecon"] if perm.context else [])
        for name in needed:
            if name in tools:
                continue
            found = shutil.which(name, path=search)
            if found is not None:
                tools[name] = found
                continue
            what = "acls" if name == "setfacl" else "context"
            message = (
                f"permissions[{index}] sets {what}, which needs {name}, but {name} was not found on "
                f"{search!r}: install {_PACKAGES[name]}, or remove {what} from permissions[{index}]"
            )
            if all(p.message != message for p in problems):
                problems.append(Problem("ToolMissing", message))
    return tools, problems


def lookup_id(kind: str, value: str) -> int:
    """A numeric id (``"33"``) or a user/group name resolved on this host; ``KeyError`` when unknown."""
    if value.isdigit():
        return int(value)
    if kind == "user":
        return pwd.getpwnam(value).pw_uid
    return grp.getgrnam(value).gr_gid


def glob_matcher(pattern: str) -> Callable[[str], bool]:
    """A ``*``-only glob (``*`` = any run of characters, everything else literal) as a predicate on names."""
    if pattern == "*":
        return lambda name: True
    regex = re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)
    return lambda name: regex.fullmatch(name) is not None


def _describe(perm: Permission, index: int) -> str:
    parts: list[str] = []
    if perm.mode is not None:
        parts.append(f"mode {perm.mode:04o}")
    if perm.owner is not None or perm.group is not None:
        parts.append(f"owner {perm.owner or '-'}:{perm.group or '-'}")
    if perm.acls:
        parts.append("acls " + ",".join(perm.acls))
    if perm.context is not None:
        parts.append("context " + perm.context.type)
    return ", ".join(parts or ["nothing"]) + f" (permissions[{index}])"


def _resolve_rule(index: int, perm: Permission, problems: list[Problem]) -> Rule:
    ids: dict[str, int | None] = {"user": None, "group": None}
    for kind, value in (("user", perm.owner), ("group", perm.group)):
        if value is None:
            continue
        try:
            ids[kind] = lookup_id(kind, value)
        except KeyError:
            field = "owner" if kind == "user" else "group"
            problems.append(
                Problem(
                    "InstallFailed",
                    f"permissions[{index}].{field}: {kind} {value!r} does not exist on this host; create it "
                    f"before the install or write a numeric id",
                )
            )
    return Rule(index, perm.mode, ids["user"], ids["group"], perm.acls, perm.context, _describe(perm, index))


def resolve_permissions(
    perms: Sequence[Permission],
    installed: Mapping[str, str],
    is_existing_dir: Callable[[str], bool],
) -> Resolution:
    """Match every entry against ``installed`` (path -> "file" or "directory", paths this install owns).

    ``is_existing_dir`` answers for objects that are not installed (a pre-existing parent such as /var/www).
    Two entries reaching one path is an appspec problem, reported once per pair of entries.
    """
    ordered = sorted(installed)
    by_path: dict[str, Rule] = {}
    appspec_problems: list[tuple[str, str]] = []
    problems: list[Problem] = []
    warnings: list[str] = []
    clashes: dict[tuple[int, int], list[str]] = {}
    for index, perm in enumerate(perms):
        rule = _resolve_rule(index, perm, problems)
        obj = posixpath.normpath(perm.object)
        kind = installed.get(obj)
        targets: Iterable[str]
        if kind == FILE:
            if FILE not in perm.types:
                continue
            if perm.pattern != "**" or perm.except_:
                appspec_problems.append(
                    (
                        f"permissions[{index}]",
                        f"object {obj} is a file this revision installs, so pattern must be '**' and except must "
                        "be empty (they select children of a directory); remove them or name the folder instead",
                    )
                )
                continue
            targets = (obj,)
        elif kind == DIRECTORY or is_existing_dir(obj):
            targets = _descendants(perm, obj, ordered, installed)
        else:
            warnings.append(f"permissions[{index}]: {obj} matches nothing this deployment installs")
            continue
        default_acls = [a for a in perm.acls if a.startswith(("d:", "default:"))]
        count = 0
        for path in targets:
            count += 1
            if default_acls and installed[path] == FILE:
                appspec_problems.append(
                    (
                        f"permissions[{index}].acls",
                        f"default ACL {default_acls[0]!r} would apply to the file {path}; default ACLs are for "
                        "directories only: add type: [directory] or a separate entry for files",
                    )
                )
                default_acls = []  # report once per entry
            previous = by_path.get(path)
            if previous is not None:
                clashes.setdefault((previous.index, index), []).append(path)
                continue
            by_path[path] = rule
        if count == 0:
            warnings.append(f"permissions[{index}]: no installed path under {obj} matches it")
    for (first, second), paths in clashes.items():
        more = f" and {len(paths) - 1} more path(s)" if len(paths) > 1 else ""
        appspec_problems.append(
            (
                f"permissions[{second}]",
                f"applies to {paths[0]}{more} that permissions[{first}] already sets; each installed path may be "
                "matched by one entry only: narrow pattern/except/type so they do not overlap",
            )
        )
    return Resolution(by_path, appspec_problems, problems, warnings)


def _descendants(perm: Permission, obj: str, ordered: Sequence[str], installed: Mapping[str, str]) -> list[str]:
    """Installed strict descendants of directory ``obj`` that ``perm`` selects (paths are sorted: bisect)."""
    prefix = obj if obj.endswith("/") else obj + "/"
    start = bisect.bisect_left(ordered, prefix)
    any_depth = perm.pattern == "**"
    match = None if any_depth else glob_matcher(perm.pattern)
    excepts = [glob_matcher(p) for p in perm.except_]
    types = perm.types
    both = FILE in types and DIRECTORY in types
    cut = len(prefix)
    out: list[str] = []
    for i in range(start, len(ordered)):
        path = ordered[i]
        if not path.startswith(prefix):
            break
        if not both and installed[path] not in types:
            continue
        rel = path[cut:]
        direct = "/" not in rel
        if match is not None and not (direct and match(rel)):
            continue
        if excepts and direct and any(e(rel) for e in excepts):
            continue
        out.append(path)
    return out
