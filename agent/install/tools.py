"""ACLs and SELinux contexts through the host's tools (setfacl, semanage, restorecon), applied after the rename.

Commands are argv lists with a timeout and bounded output. ``setfacl -m <entry>`` and ``restorecon`` take many paths
per call (in chunks), so a ``**`` rule over thousands of files costs a handful of processes, not thousands.
``semanage fcontext`` records one rule per path, so it runs once per path.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from agent.install.plan import AfterStep

_TIMEOUT = 300
_ARGV_BYTES = 64 * 1024  # well under ARG_MAX, so a chunk never fails with E2BIG
_TAIL = 1000


def _run(argv: Sequence[str]) -> str | None:
    """Run one command; None on success, else a short description of the failure."""
    try:
        done = subprocess.run(
            list(argv), stdin=subprocess.DEVNULL, capture_output=True, timeout=_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return f"{argv[0]} did not finish within {_TIMEOUT} s"
    except OSError as exc:
        return f"cannot run {argv[0]}: {exc.strerror}"
    if done.returncode == 0:
        return None
    err = (done.stderr or done.stdout).decode("utf-8", "replace").strip()[-_TAIL:]
    return f"exit code {done.returncode}: {err or 'no output'}"


def _chunks(paths: Sequence[str]) -> list[list[str]]:
    out: list[list[str]] = []
    current: list[str] = []
    size = 0
    for path in paths:
        n = len(path) + 1
        if current and size + n > _ARGV_BYTES:
            out.append(current)
            current, size = [], 0
        current.append(path)
        size += n
    if current:
        out.append(current)
    return out


def apply_acls(setfacl: str, steps: Sequence[AfterStep]) -> list[str]:
    """``setfacl -m <entry> path...`` for every entry of every step, in the entries' order. Returns error messages."""
    groups: dict[tuple[str, ...], list[AfterStep]] = {}
    for step in steps:
        if step.acls:
            groups.setdefault(step.acls, []).append(step)
    errors: list[str] = []
    for acls, group in groups.items():
        paths = [s.path for s in group]
        for acl in acls:
            for chunk in _chunks(paths):
                why = _run([setfacl, "-m", acl, *chunk])
                if why is not None:
                    where = chunk[0] if len(chunk) == 1 else f"{chunk[0]} (and {len(chunk) - 1} more)"
                    errors.append(
                        f"{group[0].origin}: setfacl -m {acl} failed on {where}: {why}; check the entry's syntax "
                        "and that the filesystem is mounted with ACL support"
                    )
    return errors


def apply_contexts(semanage: str, restorecon: str, steps: Sequence[AfterStep]) -> list[str]:
    """``semanage fcontext -a -t TYPE [-s user] [-r range] path`` (``-m`` when a rule exists), then restorecon."""
    errors: list[str] = []
    done: list[str] = []
    for step in steps:
        ctx = step.context
        if ctx is None:
            continue
        path = os.path.realpath(step.path)
        args = ["-t", ctx.type]
        if ctx.name:
            args += ["-s", ctx.name]
        if ctx.range:
            args += ["-r", ctx.range]
        why = _run([semanage, "fcontext", "-a", *args, path])
        if why is not None and "already defined" in why:
            why = _run([semanage, "fcontext", "-m", *args, path])
        if why is not None:
            errors.append(f"{step.origin}: semanage fcontext failed for {path}: {why}; check context.type/name/range")
            continue
        done.append(path)
    for chunk in _chunks(done):
        why = _run([restorecon, *chunk])
        if why is not None:
            errors.append(f"restorecon failed on {chunk[0]}: {why}")
    return errors
