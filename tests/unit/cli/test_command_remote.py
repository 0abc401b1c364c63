"""Client-side parsing of the AWS options of ``berth command`` and the AWS wiring helpers (no network)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agent.cli.aws_wiring import aws_settings, region_from_queue_url, reports_location
from agent.cli.command_remote import github_revision, parse_s3_revision_url, remote_target, s3_revision
from agent.cli.main import main
from agent.config import parse_config
from agent.errors import ConfigInvalid, UsageError


def args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"spool": None, "sqs": None, "s3": None, "instance": None, "revision": None,
                               "sha256": None, "unpinned": True, "bundle_type": None}
    base.update(kw)
    return argparse.Namespace(**base)


def test_s3_revision_urls() -> None:
    assert parse_s3_revision_url("s3://b/dir/app.zip?versionId=v1") == ("b", "dir/app.zip", {"versionId": "v1"})
    rev = s3_revision(args(revision="s3://b/app.tar.gz?versionId=v1&etag=abc", sha256="AB" * 32), None)
    assert (rev.bucket, rev.key, rev.bundle_type, rev.version, rev.etag, rev.sha256) == (
        "b", "app.tar.gz", "tgz", "v1", "abc", "ab" * 32)
    with pytest.raises(UsageError, match="unknown parameter 'version'"):
        parse_s3_revision_url("s3://b/app.zip?version=1")
    with pytest.raises(UsageError, match="needs a bucket and a key"):
        parse_s3_revision_url("s3://b")
    with pytest.raises(UsageError, match="bundle type"):
        s3_revision(args(revision="s3://b/app.bin"), None)
    assert s3_revision(args(revision="s3://b/app.bin", bundle_type="tar"), None).bundle_type == "tar"


def test_github_revisions() -> None:
    rev = github_revision("octo/app@0123abc", None)
    assert (rev.repository, rev.commit, rev.bundle_type) == ("octo/app", "0123abc", "tgz")
    with pytest.raises(UsageError, match="OWNER/REPO@COMMIT"):
        github_revision("octo/app", None)
    with pytest.raises(UsageError, match="owner/repo"):
        github_revision("octo@abc", None)


def test_remote_targets() -> None:
    assert remote_target(args()) is None
    sqs = remote_target(args(sqs="https://sqs.eu-west-1.amazonaws.com/1/q"))
    assert sqs is not None and sqs.kind == "sqs"
    s3 = remote_target(args(s3="s3://b/fleet", instance="i-1"))
    assert s3 is not None and s3.location is not None and s3.location.prefix == "fleet/"
    with pytest.raises(UsageError, match="--instance"):
        remote_target(args(s3="s3://b/fleet"))
    with pytest.raises(UsageError, match="only one"):
        remote_target(args(s3="s3://b/fleet", sqs="https://q", instance="i-1"))
    with pytest.raises(UsageError, match="queue URL"):
        remote_target(args(sqs="my-queue"))


def test_send_needs_exactly_one_revision(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["command", "send", "--spool", "/nonexistent"]) == 2
    assert "exactly one of --bundle" in capsys.readouterr().err
    assert main(["command", "send", "--bundle", "x", "--github", "o/r@1", "--spool", "/nonexistent"]) == 2


def test_region_hints_and_reports_location(tmp_path: Path) -> None:
    assert region_from_queue_url("https://sqs.eu-west-1.amazonaws.com/123/q") == "eu-west-1"
    assert region_from_queue_url("https://eu-west-2.queue.amazonaws.com/123/q") == "eu-west-2"
    assert region_from_queue_url("http://127.0.0.1:5000/123/q") is None
    sqs = parse_config("channel: {kind: sqs, queue_url: 'https://sqs.ap-south-1.amazonaws.com/1/q'}\n",
                       source=tmp_path / "agent.yml")
    assert aws_settings(sqs, env={}).region == "ap-south-1"
    assert aws_settings(sqs, env={"AWS_REGION": "us-west-2"}).region is None  # the environment decides
    with pytest.raises(ConfigInvalid, match=r"aws\.reports_bucket: is required for a sqs channel"):
        reports_location(sqs)
    s3 = parse_config("channel: {kind: s3, bucket: b, prefix: fleet}\n", source=tmp_path / "agent.yml")
    loc = reports_location(s3)
    assert (loc.bucket, loc.prefix) == ("b", "fleet/")
    both = parse_config("channel: {kind: s3, bucket: b, prefix: fleet}\naws: {reports_bucket: r}\n",
                        source=tmp_path / "agent.yml")
    assert (reports_location(both).bucket, reports_location(both).prefix) == ("r", "berth/reports/")
