"""The agent's configuration: one YAML file, loaded and validated once, then passed around (docs/configuration.md).

Every problem in the file is collected and raised together as :class:`~agent.errors.ConfigInvalid`, one line each
as ``<file>: <key>: <message>`` (YAML syntax errors as ``<file>:<line>:<column>: <message>``); the CLI prints them
and exits 2. Relative paths in the file are resolved against the file's folder.

This module sits on the floor next to ``agent.paths``: it may not import it, so the default locations are repeated
here (they are the same values).
"""

from __future__ import annotations

import difflib
import grp
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from agent.errors import ConfigInvalid

DEFAULT_CONFIG_PATH = Path("/etc/berth/agent.yml")
DEFAULT_ROOT = Path("/var/lib/berth")
DEFAULT_LOG_DIR = Path("/var/log/berth")

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ChannelConfig:
    """Where commands come from. ``settings`` holds the kind's own keys (everything under ``channel:`` but kind)."""

    kind: str = "spool"
    settings: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True)
class AwsConfig:
    """Plain values the AWS helper (agent.aws) builds clients from; nothing here talks to AWS."""

    region: str | None = None
    endpoints: Mapping[str, str] = field(default_factory=_empty)  # service name ("s3", "sqs", ...) -> URL
    reports_bucket: str | None = None
    reports_prefix: str = "berth/reports/"
    log_group: str | None = None
    cloudwatch: bool = False


@dataclass(frozen=True)
class AgentConfig:
    """The whole configuration. Durations are seconds (float)."""

    root: Path = DEFAULT_ROOT
    log_dir: Path = DEFAULT_LOG_DIR
    log_level: str = "info"
    max_revisions: int = 5
    hook_kill_grace: float = 30.0
    hook_output_grace: float = 2.0
    # Must stay below the systemd unit's TimeoutStopSec, or systemd kills the agent mid-hook.
    shutdown_grace: float = 300.0
    poll_interval: float = 1.0
    heartbeat_interval: float = 60.0
    lock_timeout: float = 3600.0
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    spool_group: str | None = None
    instance_id: str | None = None
    aws: AwsConfig = field(default_factory=AwsConfig)
    drift_check_interval: float | None = None
    source: Path | None = None

    @property
    def spool_dir(self) -> Path:
        """The spool channel's folder: ``channel.dir`` when set, else ``<root>/spool``."""
        custom = self.channel.settings.get("dir") if self.channel.kind == "spool" else None
        return Path(custom) if custom is not None else self.root / "spool"


# --- validation -----------------------------------------------------------------------------------------------


class _Problems:
    """Collects ``file: key: message`` lines."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.lines.append(f"{self.source}: {key}: {message}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _duration(p: _Problems, key: str, value: Any) -> float | None:
    if not _is_number(value) or not math.isfinite(value):  # YAML has .nan and .inf
        p.add(key, f"must be a number of seconds, not {value!r}")
        return None
    if value <= 0:
        p.add(key, f"must be greater than 0 seconds, not {value!r}")
        return None
    return float(value)


def _string(p: _Problems, key: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        p.add(key, f"must be a non-empty string, not {value!r}")
        return None
    return value


def _path(p: _Problems, key: str, value: Any, base: Path) -> Path | None:
    text = _string(p, key, value)
    if text is None:
        return None
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else Path(os.path.normpath(base / path))


def _unknown(p: _Problems, prefix: str, keys: Mapping[str, Any], known: Mapping[str, Any] | tuple[str, ...]) -> None:
    for key in keys:
        if key in known:
            continue
        hint = difflib.get_close_matches(str(key), list(known), n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else f" (known keys: {', '.join(sorted(known))})"
        p.add(f"{prefix}{key}", f"unknown key{extra}")


def _url(p: _Problems, key: str, value: Any) -> str | None:
    text = _string(p, key, value)
    if text is not None and not text.startswith(("https://", "http://")):
        p.add(key, f"must be an http:// or https:// URL, not {text!r}")
        return None
    return text


def _int_range(lo: int, hi: int | None) -> Callable[[_Problems, str, Any], int | None]:
    def check(p: _Problems, key: str, value: Any) -> int | None:
        if not isinstance(value, int) or isinstance(value, bool) or value < lo or (hi is not None and value > hi):
            bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            p.add(key, f"must be a whole number {bound}, not {value!r}")
            return None
        return value

    return check


# Each channel kind's settings: key -> (required, checker). Adding a setting is one line here plus its docs.
_Checker = Callable[[_Problems, str, Any], Any]
CHANNEL_SETTINGS: dict[str, dict[str, tuple[bool, _Checker]]] = {
    "spool": {"dir": (False, _string)},  # resolved to a path below
    "sqs": {
        "queue_url": (True, _url),
        "wait_time_seconds": (False, _int_range(1, 20)),
        "visibility_timeout": (False, _int_range(1, 43200)),
    },
    "s3": {"bucket": (True, _string), "prefix": (True, _string)},
}


def _channel(p: _Problems, raw: Any, base: Path) -> ChannelConfig | None:
    if raw is None:
        return ChannelConfig()
    if not isinstance(raw, dict):
        p.add("channel", f"must be a mapping with a 'kind' ({', '.join(CHANNEL_SETTINGS)}), not {raw!r}")
        return None
    kind = raw.get("kind", "spool")
    if kind not in CHANNEL_SETTINGS:
        p.add("channel.kind", f"must be one of {', '.join(CHANNEL_SETTINGS)}, not {kind!r}")
        return None
    spec = CHANNEL_SETTINGS[kind]
    settings: dict[str, Any] = {}
    _unknown(p, "channel.", {k: v for k, v in raw.items() if k != "kind"}, tuple(spec))
    for key, (required, check) in spec.items():
        if key not in raw or raw[key] is None:
            if required:
                p.add(f"channel.{key}", f"is required for a {kind} channel")
            continue
        value = check(p, f"channel.{key}", raw[key])
        if value is not None:
            settings[key] = value
    if kind == "spool" and "dir" in settings:
        settings["dir"] = str(_path(p, "channel.dir", settings["dir"], base))
    return ChannelConfig(kind=kind, settings=MappingProxyType(settings))


_AWS_KEYS = ("region", "endpoints", "reports_bucket", "reports_prefix", "log_group", "cloudwatch")


def _aws(p: _Problems, raw: Any) -> AwsConfig | None:
    if raw is None:
        return AwsConfig()
    if not isinstance(raw, dict):
        p.add("aws", f"must be a mapping, not {raw!r}")
        return None
    _unknown(p, "aws.", raw, _AWS_KEYS)
    values: dict[str, Any] = {}
    for key in ("region", "reports_bucket", "reports_prefix", "log_group"):
        if raw.get(key) is not None:
            values[key] = _string(p, f"aws.{key}", raw[key])
    endpoints = raw.get("endpoints")
    if endpoints is not None:
        if not isinstance(endpoints, dict):
            p.add("aws.endpoints", f"must map a service name (s3, sqs, logs, ...) to a URL, not {endpoints!r}")
        else:
            values["endpoints"] = MappingProxyType(
                {str(svc): url for svc, url in endpoints.items() if _url(p, f"aws.endpoints.{svc}", url)}
            )
    cloudwatch = raw.get("cloudwatch", False)
    if not isinstance(cloudwatch, bool):
        p.add("aws.cloudwatch", f"must be true or false, not {cloudwatch!r}")
    elif cloudwatch and not raw.get("log_group"):
        p.add("aws.log_group", "is required when aws.cloudwatch is true")
    else:
        values["cloudwatch"] = cloudwatch
    if any(v is None for v in values.values()):
        return None
    return AwsConfig(**values)


_DURATION_KEYS = (
    "hook_kill_grace", "hook_output_grace", "shutdown_grace", "poll_interval", "heartbeat_interval", "lock_timeout",
)
_TOP_KEYS = (
    "root", "log_dir", "log_level", "max_revisions", *_DURATION_KEYS, "channel", "spool_group", "instance_id",
    "aws", "drift_check_interval",
)


def _validate(p: _Problems, doc: dict[Any, Any], base: Path) -> dict[str, Any]:
    """Check every key of the document; return the AgentConfig keyword arguments that were valid."""
    _unknown(p, "", doc, _TOP_KEYS)
    out: dict[str, Any] = {}
    for key in ("root", "log_dir"):
        if doc.get(key) is not None:
            out[key] = _path(p, key, doc[key], base)
    if doc.get("log_level") is not None:
        level = doc["log_level"]
        if isinstance(level, str) and level.lower() in LOG_LEVELS:
            out["log_level"] = level.lower()
        else:
            p.add("log_level", f"must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    if doc.get("max_revisions") is not None:
        out["max_revisions"] = _int_range(1, None)(p, "max_revisions", doc["max_revisions"])
    for key in _DURATION_KEYS:
        if doc.get(key) is not None:
            out[key] = _duration(p, key, doc[key])
    if doc.get("drift_check_interval") is not None:
        interval = _duration(p, "drift_check_interval", doc["drift_check_interval"])
        if interval is not None:
            out["drift_check_interval"] = interval
    if doc.get("instance_id") is not None:
        out["instance_id"] = _string(p, "instance_id", doc["instance_id"])
    if doc.get("spool_group") is not None:
        group = _string(p, "spool_group", doc["spool_group"])
        if group is not None:
            try:
                grp.getgrnam(group)
            except KeyError:
                p.add("spool_group", f"no group named {group!r} on this host (create it or remove the key)")
        out["spool_group"] = group
    out["channel"] = _channel(p, doc.get("channel"), base)
    out["aws"] = _aws(p, doc.get("aws"))
    return {k: v for k, v in out.items() if v is not None}


def _yaml_problems(text: bytes, source: Path) -> tuple[Any, list[str]]:
    """Parse YAML; return (document, problems). Duplicate keys are problems too (YAML would keep the last)."""
    import yaml

    problems: list[str] = []

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue
            if duplicate:
                mark = key_node.start_mark
                problems.append(
                    f"{source}:{mark.line + 1}:{mark.column + 1}: duplicate key {key!r} (only one value can win)"
                )
        return loader.construct_mapping(node)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        doc = yaml.load(text, Loader=Loader)  # noqa: S506 - Loader derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else str(source)
        what = ": ".join(x for x in (exc.context, exc.problem) if x)
        return None, [f"{where}: YAML syntax error: {what}"]
    except (yaml.YAMLError, RecursionError) as exc:
        return None, [f"{source}: YAML syntax error: {exc}"]
    return doc, problems


def parse_config(text: bytes | str, *, source: Path) -> AgentConfig:
    """Validate configuration text as if read from ``source`` (used for messages and relative paths)."""
    source = Path(os.path.abspath(source))
    raw = text.encode() if isinstance(text, str) else text
    doc, yaml_problems = _yaml_problems(raw, source)
    p = _Problems(source)
    p.lines.extend(yaml_problems)
    if doc is None and not yaml_problems:
        doc = {}  # an empty file means all defaults
    kwargs: dict[str, Any] = {}
    if isinstance(doc, dict):
        kwargs = _validate(p, doc, source.parent)
    elif doc is not None:
        p.lines.append(f"{source}: the file must be a mapping of keys (see docs/configuration.md), not {doc!r}")
    if p.lines:
        count = len(p.lines)
        raise ConfigInvalid(f"{source} has {count} problem{'s' if count > 1 else ''}", problems=p.lines)
    return AgentConfig(**kwargs, source=source)


def load_config(path: Path | None = None, *, must_exist: bool = False) -> AgentConfig:
    """Load and validate the configuration.

    ``path`` None means /etc/berth/agent.yml when it exists, else the built-in defaults (``source`` None). A path
    given explicitly, or ``must_exist``, makes a missing file an error. Raises :class:`ConfigInvalid` carrying every
    problem found, each as ``<file>: <key>: <message>``.
    """
    target = path if path is not None else DEFAULT_CONFIG_PATH
    try:
        text = target.read_bytes()
    except FileNotFoundError:
        if path is None and not must_exist:
            return AgentConfig()
        line = f"{target}: file not found (create it, or pass --config with an existing file)"
        raise ConfigInvalid(line, problems=[line]) from None
    except OSError as exc:
        line = f"{target}: cannot read: {exc.strerror or exc}"
        raise ConfigInvalid(line, problems=[line]) from exc
    return parse_config(text, source=target)
