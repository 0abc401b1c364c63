"""Command parsing: every way a command can be refused, and what a refusal still tells."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from agent.errors import UsageError
from agent.model.command import (
    EXPIRED,
    INVALID,
    MALFORMED,
    SUPPORTED_SCHEMA_VERSIONS,
    UNSUPPORTED_VERSION,
    CommandRejected,
    is_expired,
    new_command,
    parse_command,
    parse_timestamp,
    rejection_report,
)
from agent.model.revision import LocalRevision, S3Revision


def valid(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": 1,
        "command_id": "7b4c2a0e-2f7e-4f0e-9a53-2d1c4c1f0a11",
        "type": "deploy",
        "deployment_id": "d-ABCDEF123456",
        "application": "shop",
        "deployment_group": "web",
        "revision": {"type": "s3", "bucket": "b", "key": "shop.zip", "bundle_type": "zip", "etag": "abc"},
        "created_at": "2024-05-01T12:00:00Z",
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ...}


def rejected(doc: Any) -> CommandRejected:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(CommandRejected) as info:
        parse_command(raw)
    return info.value


def test_a_minimal_command_gets_the_defaults() -> None:
    cmd = parse_command(json.dumps(valid()).encode())
    assert cmd.type == "deploy" and cmd.deployment_type == "in_place" and cmd.appspec_filename == "appspec.yml"
    assert cmd.revision == S3Revision(bucket="b", key="shop.zip", bundle_type="zip", etag="abc")
    assert cmd.events is None and cmd.file_exists_behavior is None and cmd.expires_at is None
    assert not cmd.ignore_application_stop_failures and not cmd.is_rollback


def test_round_trip_through_json() -> None:
    cmd = parse_command(json.dumps(valid(
        events=["BeforeInstall", "MyCustomEvent"], file_exists_behavior="overwrite", deployment_type="blue_green",
        is_rollback=True, expires_at="2024-05-01T13:00:00.5+02:00",
    )).encode())
    assert cmd.file_exists_behavior == "OVERWRITE" and cmd.events == ("BeforeInstall", "MyCustomEvent")
    assert parse_command(cmd.to_json()) == cmd


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe{}", b"[1, 2]", b"x" * 300_000, b"[" * 200_000])
def test_malformed_bytes(raw: bytes) -> None:
    exc = rejected(raw)
    assert exc.reason == MALFORMED and exc.partial == {}


def test_newer_schema_version_names_the_versions_understood() -> None:
    exc = rejected(valid(schema_version=2, revision={"kind": "something new"}))
    assert exc.reason == UNSUPPORTED_VERSION
    assert "schema_version 2" in exc.message and "understands schema version 1" in exc.message
    assert exc.partial["deployment_id"] == "d-ABCDEF123456" and exc.partial["command_id"]
    assert SUPPORTED_SCHEMA_VERSIONS == (1,)


def test_missing_fields_are_all_listed() -> None:
    exc = rejected({"schema_version": 1})
    assert exc.reason == INVALID
    for field in ("command_id", "deployment_id", "application", "deployment_group", "revision", "created_at"):
        assert any(p.startswith(f"{field}: ") for p in exc.problems), field


def test_missing_schema_version() -> None:
    exc = rejected(valid(schema_version=...))
    assert exc.reason == INVALID and "schema_version must be an integer" in exc.message


def test_bad_names_are_refused_and_left_out_of_partial() -> None:
    exc = rejected(valid(deployment_id="../../etc", application="my app", deployment_group="web"))
    assert exc.reason == INVALID
    assert any(p.startswith("deployment_id: deployment id '../../etc' is not allowed") for p in exc.problems)
    assert any(p.startswith("application: application name 'my app' is not allowed") for p in exc.problems)
    assert "deployment_id" not in exc.partial and "application" not in exc.partial
    assert exc.partial["deployment_group"] == "web"


def test_unknown_fields_and_bad_values() -> None:
    exc = rejected(valid(
        file_exist_behavior="RETAIN", type="destroy", deployment_type="canary", is_rollback="yes",
        events=["Install", "Install", "bad event"], appspec_filename="../appspec.yml", expires_at="tomorrow",
    ))
    text = "\n".join(exc.problems)
    for expected in (
        "file_exist_behavior: unknown field", "type: must be one of deploy, plan, rollback, not 'destroy'",
        "deployment_type: must be one of in_place, blue_green", "is_rollback: must be true or false",
        "events: lists Install more than once", "events: 'bad event' is not an event name",
        "appspec_filename: must be a file name", "expires_at: 'tomorrow' is not an ISO-8601 time",
    ):
        assert expected in text, expected


@pytest.mark.parametrize(
    ("revision", "message"),
    [
        (None, "revision: is required for a deploy or plan"),
        ({"type": "ftp"}, "revision.type must be local, s3 or github"),
        ({"type": "s3", "bucket": "b", "bundle_type": "zip"}, "revision.key is required"),
        ({"type": "local", "path": "/x", "bundle_type": "rar"}, "revision.bundle_type must be one of"),
        ({"type": "github", "repository": "not a repo", "commit": "abc1234"}, "revision.repository must look like"),
    ],
)
def test_revision_errors(revision: Any, message: str) -> None:
    exc = rejected(valid(revision=revision))
    assert exc.reason == INVALID and message in exc.message


def test_rollback_needs_no_revision_and_refuses_one() -> None:
    cmd = parse_command(json.dumps(valid(type="rollback", revision=None, rollback_to="d-OLD")).encode())
    assert cmd.revision is None and cmd.rollback_to == "d-OLD"
    exc = rejected(valid(type="rollback"))
    assert "a rollback redeploys a retained revision" in exc.message


def test_rollback_to_only_with_type_rollback() -> None:
    assert "rollback_to: only applies to type rollback" in rejected(valid(rollback_to="d-OLD")).message


def test_expiry() -> None:
    cmd = parse_command(json.dumps(valid(expires_at="2024-05-01T12:10:00Z")).encode())
    assert not is_expired(cmd, datetime(2024, 5, 1, 12, 9, 59, tzinfo=timezone.utc))
    assert is_expired(cmd, datetime(2024, 5, 1, 12, 10, 0, tzinfo=timezone.utc))
    assert is_expired(cmd, datetime(2024, 5, 1, 12, 10, 0))  # naive means UTC
    forever = parse_command(json.dumps(valid()).encode())
    assert not is_expired(forever, datetime(2999, 1, 1, tzinfo=timezone.utc))


def test_timestamps_need_a_zone() -> None:
    assert parse_timestamp("2024-05-01T12:00:00.123456789-05:30").utcoffset() == -timedelta(hours=5, minutes=30)
    with pytest.raises(ValueError, match="with a zone"):
        parse_timestamp("2024-05-01T12:00:00")
    with pytest.raises(ValueError, match="not a valid time"):
        parse_timestamp("2024-13-01T12:00:00Z")


def test_new_command_builds_a_valid_command() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    cmd = new_command(application="berth-local", deployment_group="default",
                      revision=LocalRevision("/srv/app", "directory"), expires_in=60, now=now)
    assert cmd.deployment_id.startswith("d-") and len(cmd.deployment_id) == 14
    assert cmd.deployment_id[2:].isalnum() and cmd.deployment_id[2:].upper() == cmd.deployment_id[2:]
    assert cmd.created_at == "2024-05-01T12:00:00.000Z" and cmd.expires_at == "2024-05-01T12:01:00.000Z"
    assert parse_command(cmd.to_json()) == cmd
    other = new_command(application="a", deployment_group="g", revision=LocalRevision("/x", "zip"))
    assert other.command_id != cmd.command_id and other.deployment_id != cmd.deployment_id


def test_new_command_reports_bad_input_as_usage_error() -> None:
    with pytest.raises(UsageError, match="application: application name 'a b' is not allowed"):
        new_command(application="a b", deployment_group="g", revision=LocalRevision("/x", "zip"))


def test_rejection_report_names_what_could_be_read() -> None:
    exc = rejected(valid(schema_version=9))
    report = rejection_report(exc.partial, exc.reason, exc.message, now="2024-05-01T12:00:00.000Z",
                              instance_id="i-1", agent_version="0.1.0")
    assert report is not None
    assert report["status"] == "Rejected" and report["reason"] == UNSUPPORTED_VERSION
    assert report["deployment_id"] == "d-ABCDEF123456" and report["events"] == []
    assert report["instance_id"] == "i-1" and report["command_type"] == "deploy"
    assert rejection_report({}, MALFORMED, "x", now="t", instance_id=None, agent_version="0") is None
    cmd = parse_command(json.dumps(valid()).encode())
    expired = rejection_report(cmd.ids(), EXPIRED, "late", now="t", instance_id=None, agent_version="0",
                               revision=cmd.to_dict()["revision"])
    assert expired is not None and expired["revision"]["bucket"] == "b"
