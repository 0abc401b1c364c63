"""The command format: what a channel delivers and the daemon executes (docs/protocol.md). Pure data, no I/O.

A command is one versioned JSON object. :func:`parse_command` checks every field and raises
:class:`CommandRejected` listing every problem; its ``partial`` holds the ids that could be read (only values that
are safe as file names), so the daemon can still write a rejection report naming the deployment.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any

from agent.errors import BerthError, UsageError
from agent.model.report import REJECTED, REPORT_SCHEMA_VERSION
from agent.model.revision import Revision, RevisionError, revision_from_dict
from agent.paths import check_name

SUPPORTED_SCHEMA_VERSIONS = (1,)
COMMAND_SCHEMA_VERSION = SUPPORTED_SCHEMA_VERSIONS[-1]  # what new_command writes
MAX_COMMAND_BYTES = 256 * 1024  # SQS's message limit; a real command is a few hundred bytes

COMMAND_TYPES = ("deploy", "plan", "rollback")
DEPLOYMENT_TYPES = ("in_place", "blue_green")
FILE_EXISTS_BEHAVIORS = ("DISALLOW", "OVERWRITE", "RETAIN")
DEFAULT_APPSPEC = "appspec.yml"

# Rejection reasons (the ``reason`` of a rejection report, and the first word of a spool .reason file).
MALFORMED = "MalformedCommand"
UNSUPPORTED_VERSION = "UnsupportedSchemaVersion"
INVALID = "InvalidCommand"
EXPIRED = "CommandExpired"

_FIELDS = (
    "schema_version", "command_id", "type", "deployment_id", "application", "deployment_group", "revision",
    "events", "file_exists_behavior", "ignore_application_stop_failures", "appspec_filename", "deployment_type",
    "is_rollback", "rollback_to", "created_at", "expires_at",
)
_ID_FIELDS = ("schema_version", "command_id", "type", "deployment_id", "application", "deployment_group")
_EVENT = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:?\d{2})$"
)


class CommandRejected(BerthError):
    """A command this agent will not run. ``reason`` is one of the rejection reasons above.

    ``partial`` carries the ids that could be read (command_id, deployment_id, application, deployment_group,
    type, schema_version), each already checked safe to use as a file name; ``problems`` lists every finding.
    """

    def __init__(
        self, reason: str, message: str, partial: Mapping[str, Any] | None = None, problems: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.partial: dict[str, Any] = dict(partial or {})
        self.problems = problems or [message]


@dataclass(frozen=True)
class Command:
    """One validated command. Timestamps are the ISO-8601 strings the sender wrote."""

    schema_version: int
    command_id: str
    type: str
    deployment_id: str
    application: str
    deployment_group: str
    revision: Revision | None
    events: tuple[str, ...] | None
    file_exists_behavior: str | None
    ignore_application_stop_failures: bool
    appspec_filename: str
    deployment_type: str
    is_rollback: bool
    rollback_to: str | None
    created_at: str
    expires_at: str | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this command (parse_command(json.dumps(c.to_dict())) == c), fields in schema order."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["revision"] = self.revision.to_dict() if self.revision is not None else None
        d["events"] = list(self.events) if self.events is not None else None
        return d

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2).encode() + b"\n"

    def ids(self) -> dict[str, Any]:
        """The identifying fields, in the shape of :attr:`CommandRejected.partial`."""
        return {key: getattr(self, key) for key in _ID_FIELDS}


# --- timestamps -----------------------------------------------------------------------------------------------


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO-8601 timestamp that carries a zone (``Z`` or ``+hh:mm``); raises ValueError otherwise.

    Done by hand because Python 3.10's ``fromisoformat`` rejects ``Z`` and most fraction lengths.
    """
    m = _TIMESTAMP.match(value)
    if not m:
        raise ValueError(f"{value!r} is not an ISO-8601 time with a zone, like 2024-05-01T12:00:00Z")
    year, month, day, hour, minute, second = (int(x) for x in m.groups()[:6])
    micro = int((m.group(7) or "0").ljust(6, "0")[:6])
    zone = m.group(8)
    if zone in ("Z", "z"):
        tz = timezone.utc
    else:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid time ({exc})") from None


def format_timestamp(moment: datetime) -> str:
    """UTC ISO-8601 with milliseconds and ``Z``, the form every berth document uses."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_expired(cmd: Command, now: datetime) -> bool:
    """True when the command has an ``expires_at`` and ``now`` (naive means UTC) is at or past it."""
    if cmd.expires_at is None:
        return False
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return now >= parse_timestamp(cmd.expires_at)


# --- parsing --------------------------------------------------------------------------------------------------


def _safe_name(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        check_name("id", value)
    except UsageError:
        return False
    return True


def _partial(doc: Mapping[str, Any]) -> dict[str, Any]:
    partial: dict[str, Any] = {}
    for key in ("command_id", "deployment_id", "application", "deployment_group"):
        if _safe_name(doc.get(key)):
            partial[key] = doc[key]
    if doc.get("type", "deploy") in COMMAND_TYPES:
        partial["type"] = doc.get("type", "deploy")
    version = doc.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool):
        partial["schema_version"] = version
    return partial


def parse_command(raw: bytes) -> Command:
    """Parse and validate a command's bytes; raises :class:`CommandRejected` (every problem, in ``problems``).

    The schema version is judged first: a newer command is refused as UnsupportedSchemaVersion whatever its
    other fields say, with a message naming the versions this agent understands.
    """
    if len(raw) > MAX_COMMAND_BYTES:
        raise CommandRejected(MALFORMED, f"command is {len(raw)} bytes; the limit is {MAX_COMMAND_BYTES}")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CommandRejected(MALFORMED, f"command is not UTF-8 text (bad byte at offset {exc.start})") from exc
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise CommandRejected(MALFORMED, f"command is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise CommandRejected(MALFORMED, f"command must be a JSON object, not {type(doc).__name__}")
    partial = _partial(doc)
    version = doc.get("schema_version")
    understood = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
    if not isinstance(version, int) or isinstance(version, bool):
        message = f"schema_version must be an integer (this agent understands {understood}), not {version!r}"
        raise CommandRejected(INVALID, "invalid command: " + message, partial, [message])
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise CommandRejected(
            UNSUPPORTED_VERSION,
            f"command schema_version {version} is not supported: this agent (berth) understands schema version"
            f" {understood}; upgrade berth on this host or send a version {SUPPORTED_SCHEMA_VERSIONS[-1]} command",
            partial,
        )
    return _parse_v1(doc, partial)


class _Check:
    """Field checks for one document; collects problems instead of stopping at the first."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc
        self.problems: list[str] = []

    def bad(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def name(self, key: str, kind: str, *, required: bool = True) -> str | None:
        value = self.doc.get(key)
        if value is None:
            if required:
                self.bad(key, "is required")
            return None
        if not isinstance(value, str):
            self.bad(key, f"must be a string, not {value!r}")
            return None
        try:
            return check_name(kind, value)
        except UsageError as exc:
            self.bad(key, str(exc))
            return None

    def choice(self, key: str, choices: tuple[str, ...], default: str | None, *, upper: bool = False) -> str | None:
        value = self.doc.get(key)
        if value is None:
            return default
        if isinstance(value, str) and (value.upper() if upper else value) in choices:
            return value.upper() if upper else value
        self.bad(key, f"must be one of {', '.join(choices)}, not {value!r}")
        return default

    def flag(self, key: str) -> bool:
        value = self.doc.get(key, False)
        if value is None or isinstance(value, bool):
            return bool(value)
        self.bad(key, f"must be true or false, not {value!r}")
        return False

    def timestamp(self, key: str, *, required: bool) -> str | None:
        value = self.doc.get(key)
        if value is None:
            if required:
                self.bad(key, "is required (ISO-8601 with a zone, like 2024-05-01T12:00:00Z)")
            return None
        if not isinstance(value, str):
            self.bad(key, f"must be an ISO-8601 time string like 2024-05-01T12:00:00Z, not {value!r}")
            return None
        try:
            parse_timestamp(value)
        except ValueError as exc:
            self.bad(key, str(exc))
            return None
        return value

    def events(self) -> tuple[str, ...] | None:
        value = self.doc.get("events")
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
            self.bad("events", f"must be a list of lifecycle event names, not {value!r}")
            return None
        for event in value:
            if not _EVENT.match(event):
                self.bad("events", f"{event!r} is not an event name (letters, digits, ._- ; first a letter)")
        duplicates = sorted({e for e in value if value.count(e) > 1})
        if duplicates:
            self.bad("events", f"lists {', '.join(duplicates)} more than once")
        return tuple(value)

    def appspec_filename(self) -> str:
        value = self.doc.get("appspec_filename")
        if value is None:
            return DEFAULT_APPSPEC
        if not isinstance(value, str) or not value or "/" in value or "\0" in value or value in (".", ".."):
            self.bad("appspec_filename", f"must be a file name in the revision root (no '/'), not {value!r}")
            return DEFAULT_APPSPEC
        return value


def _parse_v1(doc: Mapping[str, Any], partial: Mapping[str, Any]) -> Command:
    c = _Check(doc)
    for key in doc:
        if key not in _FIELDS:
            c.bad(str(key), f"unknown field (schema version 1 has: {', '.join(_FIELDS)})")
    command_type = c.choice("type", COMMAND_TYPES, "deploy") or "deploy"
    revision: Revision | None = None
    if command_type == "rollback":
        if doc.get("revision") is not None:
            c.bad("revision", "a rollback redeploys a retained revision: leave revision out (or use type deploy)")
    else:
        try:
            revision = revision_from_dict(doc.get("revision"))
        except RevisionError as exc:
            c.bad("revision", str(exc) if doc.get("revision") is not None else "is required for a deploy or plan")
    rollback_to = c.name("rollback_to", "rollback_to deployment id", required=False)
    if rollback_to is not None and command_type != "rollback":
        c.bad("rollback_to", f"only applies to type rollback, not {command_type}")
    cmd = Command(
        schema_version=int(doc["schema_version"]),
        command_id=c.name("command_id", "command id") or "",
        type=command_type,
        deployment_id=c.name("deployment_id", "deployment id") or "",
        application=c.name("application", "application name") or "",
        deployment_group=c.name("deployment_group", "deployment group name") or "",
        revision=revision,
        events=c.events(),
        file_exists_behavior=c.choice("file_exists_behavior", FILE_EXISTS_BEHAVIORS, None, upper=True),
        ignore_application_stop_failures=c.flag("ignore_application_stop_failures"),
        appspec_filename=c.appspec_filename(),
        deployment_type=c.choice("deployment_type", DEPLOYMENT_TYPES, "in_place") or "in_place",
        is_rollback=c.flag("is_rollback"),
        rollback_to=rollback_to,
        created_at=c.timestamp("created_at", required=True) or "",
        expires_at=c.timestamp("expires_at", required=False),
    )
    if c.problems:
        raise CommandRejected(INVALID, "invalid command: " + "; ".join(c.problems), partial, c.problems)
    return cmd


# --- building commands (clients) ------------------------------------------------------------------------------


def new_deployment_id() -> str:
    """A fresh deployment id: ``d-`` and 12 upper-case letters or digits (CodeDeploy's shape, longer)."""
    n = uuid.uuid4().int
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    chars = []
    for _ in range(12):
        n, digit = divmod(n, 36)
        chars.append(alphabet[digit])
    return "d-" + "".join(chars)


def new_command(
    *,
    application: str,
    deployment_group: str,
    revision: Revision | None,
    type: str = "deploy",  # the field's name in the protocol
    events: Sequence[str] | None = None,
    file_exists_behavior: str | None = None,
    ignore_application_stop_failures: bool = False,
    appspec_filename: str = DEFAULT_APPSPEC,
    deployment_type: str = "in_place",
    is_rollback: bool = False,
    rollback_to: str | None = None,
    expires_in: float | None = None,
    deployment_id: str | None = None,
    now: datetime | None = None,
) -> Command:
    """Build a valid command for a client (fresh command id and, unless given, deployment id).

    Runs the same checks as :func:`parse_command`; a problem raises :class:`UsageError` naming every field.
    """
    moment = now or datetime.now(timezone.utc)
    doc: dict[str, Any] = {
        "schema_version": COMMAND_SCHEMA_VERSION,
        "command_id": str(uuid.uuid4()),
        "type": type,
        "deployment_id": deployment_id or new_deployment_id(),
        "application": application,
        "deployment_group": deployment_group,
        "revision": revision.to_dict() if revision is not None else None,
        "events": list(events) if events is not None else None,
        "file_exists_behavior": file_exists_behavior,
        "ignore_application_stop_failures": ignore_application_stop_failures,
        "appspec_filename": appspec_filename,
        "deployment_type": deployment_type,
        "is_rollback": is_rollback,
        "rollback_to": rollback_to,
        "created_at": format_timestamp(moment),
        "expires_at": format_timestamp(moment + timedelta(seconds=expires_in)) if expires_in is not None else None,
    }
    try:
        return _parse_v1(doc, {})
    except CommandRejected as exc:
        raise UsageError("; ".join(exc.problems)) from None


# --- reports about refused commands ---------------------------------------------------------------------------


def rejection_report(
    ids: Mapping[str, Any],
    reason: str,
    message: str,
    *,
    now: str,
    instance_id: str | None,
    agent_version: str,
    revision: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The report of a refused command (docs/protocol.md, "Rejection reports"); None without a usable deployment id.

    ``ids`` is :attr:`CommandRejected.partial` or :meth:`Command.ids`; ``revision`` the command's revision object
    when it was readable (an expired command's, for instance). Fields that could not be read are null.
    """
    deployment_id = ids.get("deployment_id")
    if not _safe_name(deployment_id):
        return None
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "deployment_id": deployment_id,
        "command_id": ids.get("command_id"),
        "command_type": ids.get("type"),
        "status": REJECTED,
        "reason": reason,
        "message": message,
        "application": ids.get("application"),
        "deployment_group": ids.get("deployment_group"),
        "revision": dict(revision) if revision is not None else None,
        "started_at": now,
        "ended_at": now,
        "events": [],
        "warnings": [],
        "instance_id": instance_id,
        "agent_version": agent_version,
    }
