"""``berth agent check``: the self-check the packages run after installation (and anyone can run by hand).

It checks that the configuration is valid, that the state and log folders are usable and safe (owned by the agent's
user, not writable by anyone else, nor replaceable through a writable parent), that the configured channel can be
reached, and that systemd gives a stopping agent enough time (TimeoutStopSec > shutdown_grace + hook_kill_grace).
Nothing is changed on the host. The command is registered by ``agent.cli.agent_cmd``; this module only does the work.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import stat
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agent.config import AgentConfig, load_config
from agent.errors import ConfigInvalid

UNIT = "berth-agent.service"
# Where systemd looks for the unit and its drop-ins, lowest precedence first (relative to the host's root).
UNIT_DIRS = ("lib/systemd/system", "usr/lib/systemd/system", "run/systemd/system", "etc/systemd/system")
CONNECT_TIMEOUT = 5.0

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"

Connector = Callable[[str, int, float], None]


@dataclass(frozen=True)
class Check:
    """One line of the self-check: ``status`` is ok, warn, fail or skip; ``detail`` says what to change."""

    name: str
    status: str
    detail: str


def run_check(config_path: Path | None, *, json_out: bool) -> int:
    """Run every check, print the result (a table, or JSON with ``--json``) and return the exit code.

    Exit 0 when nothing failed (warnings allowed), 1 otherwise. ``config_path`` None means /etc/berth/agent.yml
    when it exists, else the built-in defaults.
    """
    checks = collect_checks(config_path)
    failed = [c for c in checks if c.status == FAIL]
    if json_out:
        print(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        for c in checks:
            print(f"{c.status.upper():<5} {c.name:<9} {c.detail}")
        warned = sum(c.status == WARN for c in checks)
        verdict = f"{len(failed)} problem{'s' if len(failed) != 1 else ''}" if failed else "all good"
        print(f"berth agent check: {verdict}" + (f" ({warned} warning{'s' if warned != 1 else ''})" if warned else ""))
    sys.stdout.flush()
    return 1 if failed else 0


def collect_checks(
    config_path: Path | None, *, host_root: Path = Path("/"), connect: Connector | None = None
) -> list[Check]:
    """Every check, in order. ``host_root`` (where to look for the systemd unit) and ``connect`` are for tests."""
    checks = [_runtime()]
    try:
        config = load_config(config_path, must_exist=config_path is not None)
    except ConfigInvalid as exc:
        checks.append(Check("config", FAIL, "; ".join(exc.problems)))
        checks.append(Check("folders", SKIP, "not checked: the configuration is invalid"))
        checks.append(Check("channel", SKIP, "not checked: the configuration is invalid"))
        return checks
    where = str(config.source) if config.source else "no /etc/berth/agent.yml: built-in defaults"
    checks.append(Check("config", OK, f"{where}: valid (channel {config.channel.kind})"))
    checks.append(check_folder("state", config.root))
    checks.append(check_folder("logs", config.log_dir))
    checks.append(_channel(config, connect or _tcp_connect))
    checks.append(_stop_timeout(config, host_root))
    return checks


def _runtime() -> Check:
    isolated = sys.flags.isolated and sys.flags.no_site
    how = "isolated from site-packages (-I -S)" if isolated else "with site-packages (not the packaged launcher)"
    version = ".".join(map(str, sys.version_info[:3]))
    return Check("runtime", OK, f"Python {version} ({sys.executable}), {how}")


def check_folder(name: str, folder: Path) -> Check:
    """A folder the agent writes: usable by the agent's user and safe from everyone else.

    A folder that does not exist yet is fine when it can be created (the agent, or systemd's StateDirectory=,
    creates it at start).
    """
    folder = folder.absolute()
    if not folder.exists():
        parent = next((p for p in folder.parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK | os.X_OK):
            problem = _unsafe_ancestors(folder)
            if problem:
                return Check(name, FAIL, problem)
            return Check(name, OK, f"{folder} does not exist yet; it is created when the agent starts")
        return Check(name, FAIL, f"{folder} does not exist and {parent} is not writable by this user: create it")
    if not folder.is_dir():
        return Check(name, FAIL, f"{folder} is not a folder: move it aside")
    folder = folder.resolve()  # a symlinked folder: judge where the data really is
    st = folder.stat()
    euid = os.geteuid()
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != euid:
        return Check(name, FAIL, f"{folder} is owned by uid {st.st_uid}, not the agent's user (uid {euid}): "
                                 f"chown {euid} {folder}")
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "everyone" if mode & stat.S_IWOTH else "its group"
        return Check(name, FAIL, f"{folder} is writable by {who} (mode {mode:04o}), who could then tamper with what "
                                 f"the agent runs: chmod go-w {folder}")
    problem = _unsafe_ancestors(folder)
    if problem:
        return Check(name, FAIL, problem)
    try:
        fd, probe = tempfile.mkstemp(prefix=".berth-check-", dir=folder)
    except OSError as exc:
        return Check(name, FAIL, f"cannot write in {folder}: {exc.strerror} (a read-only filesystem or a full disk?)")
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return Check(name, OK, f"{folder} is writable, owned by uid {euid}, mode {mode:04o}")


def _unsafe_ancestors(folder: Path) -> str | None:
    """A message when someone other than root or the agent's user could replace ``folder`` through a parent."""
    euid = os.geteuid()
    for parent in folder.parents:
        try:
            st = parent.stat()
        except OSError:
            continue
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid not in (0, euid):
            return f"{parent} (a parent of {folder}) is owned by uid {st.st_uid}, who could replace {folder}"
        if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
            return (f"{parent} (a parent of {folder}) is writable by others (mode {mode:04o}) without the sticky "
                    f"bit, so {folder} could be replaced: chmod go-w {parent}")
    return None


# --- channel --------------------------------------------------------------------------------------------------


def _channel(config: AgentConfig, connect: Connector) -> Check:
    kind = config.channel.kind
    if kind == "spool":
        return _spool(config)
    if kind == "sqs":
        url = config.aws.endpoints.get("sqs") or str(config.channel.settings.get("queue_url", ""))
        return _reachable(f"sqs queue {config.channel.settings.get('queue_url')}", url, connect)
    if kind == "s3":
        region = config.aws.region
        default = f"https://s3.{region}.amazonaws.com" if region else "https://s3.amazonaws.com"
        url = config.aws.endpoints.get("s3") or default
        return _reachable(f"s3 bucket {config.channel.settings.get('bucket')}", url, connect)
    return Check("channel", SKIP, f"no reachability check for channel kind {kind!r}")


def _spool(config: AgentConfig) -> Check:
    from agent.channels.spool import check_spool_permissions

    spool = config.spool_dir
    if not spool.exists():
        problem = _unsafe_ancestors(spool.absolute())
        if problem:
            return Check("channel", FAIL, problem)
        return Check("channel", OK, f"spool {spool} does not exist yet; it is created when the agent starts")
    problems = [p for p in check_spool_permissions(spool, allowed_group=config.spool_group)
                if not p.endswith("does not exist")]  # missing sub-folders are created at start
    if problems:
        return Check("channel", FAIL, "; ".join(problems))
    return Check("channel", OK, f"spool {spool}: folders safe")


def _reachable(what: str, url: str, connect: Connector) -> Check:
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return Check("channel", FAIL, f"{what}: cannot tell which host to reach from {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        connect(host, port, CONNECT_TIMEOUT)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return Check("channel", FAIL, f"{what}: cannot reach {host}:{port} ({reason}); check DNS, routes, "
                                      f"security groups and proxies from this host")
    return Check("channel", OK, f"{what}: {host}:{port} reachable")


def _tcp_connect(host: str, port: int, timeout: float) -> None:
    with socket.create_connection((host, port), timeout=timeout):
        pass


# --- systemd stop timeout -------------------------------------------------------------------------------------


def _stop_timeout(config: AgentConfig, host_root: Path) -> Check:
    timeout = unit_stop_timeout(host_root)
    needed = config.shutdown_grace + config.hook_kill_grace
    if timeout is None:
        return Check("systemd", SKIP, f"no {UNIT} found on this host")
    if timeout <= needed:
        return Check("systemd", WARN, (
            f"TimeoutStopSec is {timeout:g} s but a stopping agent may need shutdown_grace + hook_kill_grace = "
            f"{needed:g} s: systemd would kill it mid-cleanup. Add a drop-in (systemctl edit {UNIT}) with "
            f"TimeoutStopSec={int(needed) + 60}s"))
    return Check("systemd", OK, f"TimeoutStopSec {timeout:g} s > shutdown_grace + hook_kill_grace ({needed:g} s)")


def unit_stop_timeout(host_root: Path = Path("/")) -> float | None:
    """The unit's effective TimeoutStopSec in seconds (unit file plus drop-ins); None without the unit."""
    unit_file = None
    for folder in UNIT_DIRS:
        candidate = host_root / folder / UNIT
        if candidate.is_file() and candidate.resolve() != Path("/dev/null"):
            unit_file = candidate  # later folders take precedence
    if unit_file is None:
        return None
    files = [unit_file]
    dropins: dict[str, Path] = {}
    for folder in UNIT_DIRS:
        for conf in sorted((host_root / folder / f"{UNIT}.d").glob("*.conf")):
            dropins[conf.name] = conf  # a drop-in of the same name in a later folder replaces the earlier
    files += [dropins[name] for name in sorted(dropins)]
    value: float | None = 90.0  # systemd's DefaultTimeoutStopSec
    for path in files:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                key, _, raw = line.strip().partition("=")
                if key.strip() in ("TimeoutStopSec", "TimeoutSec"):
                    value = parse_timespan(raw.strip())
    return value


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60,
          "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600, "d": 86400,
          "day": 86400, "days": 86400, "": 1}


def parse_timespan(text: str) -> float | None:
    """systemd time span ("360", "6min", "5min 30s", "infinity") in seconds; None when unparseable."""
    if text in ("infinity", "0"):
        return float("inf")
    total = 0.0
    pos = 0
    for match in re.finditer(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        if match.start() != pos or match.group(2) not in _UNITS:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and text else None
