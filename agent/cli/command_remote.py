"""The AWS side of ``berth command``: send commands through SQS or an S3 prefix, read reports from S3.

Options (added to ``send``, ``rollback`` and ``wait`` by :func:`add_remote_options`):

* ``--sqs QUEUE_URL`` or ``--s3 s3://BUCKET/PREFIX`` instead of ``--spool``; ``--instance ID`` names the agent
  (required for ``--s3`` and for ``wait``).
* ``--revision s3://BUCKET/KEY[?versionId=V]`` or ``--github OWNER/REPO@COMMIT`` instead of ``--bundle``. An S3
  revision is pinned at send time: the client asks S3 for the object's ETag (and version id, in a versioned
  bucket) and puts them in the command, so the agent deploys exactly that object (``--unpinned`` skips this).
* ``--reports s3://BUCKET/PREFIX`` (``wait`` with ``--sqs``): where the agent puts reports, its ``aws.reports_bucket``
  and ``aws.reports_prefix``; default from the local agent configuration. With ``--s3`` the reports are under the
  same prefix.
* ``--endpoint-url URL`` and ``--region REGION`` for other endpoints (a VPC endpoint, a local test server).
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.errors import UsageError

if TYPE_CHECKING:
    from agent.aws import AwsContext
    from agent.model.command import Command
    from agent.model.revision import GitHubRevision, S3Revision
    from agent.reporting.s3 import S3Location


def add_channel_options(p: argparse.ArgumentParser) -> None:
    """``--sqs`` / ``--s3`` / ``--instance`` / ``--endpoint-url`` / ``--region`` (``--spool`` is added apart)."""
    p.add_argument("--sqs", metavar="QUEUE_URL", help="send through (or follow a command sent to) this SQS queue")
    p.add_argument("--s3", metavar="s3://BUCKET/PREFIX", help="send through the agent's S3 prefix channel")
    p.add_argument("--instance", metavar="ID", help="the agent's instance id (required with --s3, and to wait)")
    p.add_argument("--endpoint-url", metavar="URL", help="endpoint for S3 and SQS (VPC endpoints, test servers)")
    p.add_argument("--region", metavar="REGION", help="AWS region (default: environment, queue URL, metadata)")


def add_revision_options(p: argparse.ArgumentParser) -> None:
    """``--revision`` / ``--github`` / ``--sha256`` / ``--unpinned`` (alternatives to ``--bundle``)."""
    p.add_argument("--revision", metavar="s3://BUCKET/KEY[?versionId=V]", help="deploy this S3 object")
    p.add_argument("--github", metavar="OWNER/REPO@COMMIT", help="deploy this GitHub commit's tarball")
    p.add_argument("--sha256", metavar="HEX", help="with --revision: the agent checks the download's sha256")
    p.add_argument("--unpinned", action="store_true",
                   help="with --revision: do not ask S3 for the object's ETag/version at send time")


@dataclass(frozen=True)
class RemoteTarget:
    """Where a remote command goes: ``kind`` is ``sqs`` or ``s3``."""

    kind: str
    queue_url: str | None
    location: S3Location | None
    instance: str | None


def remote_target(args: argparse.Namespace) -> RemoteTarget | None:
    """The --sqs / --s3 target of the arguments, or None for the spool. Raises UsageError for contradictions."""
    from agent.reporting.s3 import S3Location

    sqs, s3 = getattr(args, "sqs", None), getattr(args, "s3", None)
    if getattr(args, "spool", None) is not None and (sqs or s3):
        raise UsageError("--spool, --sqs and --s3 pick the channel: give only one")
    if sqs and s3:
        raise UsageError("--sqs and --s3 pick the channel: give only one")
    if not sqs and not s3:
        return None
    instance = getattr(args, "instance", None)
    if instance is not None:
        from agent.paths import check_name

        check_name("instance id", instance)
    if sqs:
        if not sqs.startswith(("https://", "http://")):
            raise UsageError(f"--sqs needs a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME), not {sqs!r}")
        return RemoteTarget("sqs", sqs, None, instance)
    try:
        location = S3Location.parse(str(s3))
    except ValueError as exc:
        raise UsageError(f"--s3: {exc}") from None
    if instance is None:
        raise UsageError("--s3 needs --instance ID: commands are put under commands/<instance-id>/")
    return RemoteTarget("s3", None, location, instance)


def client_context(args: argparse.Namespace) -> AwsContext:
    """An AwsContext for the client: --endpoint-url for S3 and SQS, --region (or the queue URL's region)."""
    import os

    from agent.aws import AwsContext, AwsSettings
    from agent.cli.aws_wiring import region_from_queue_url

    region = args.region
    if region is None and not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        region = region_from_queue_url(getattr(args, "sqs", None) or "")
    endpoints = {"s3": args.endpoint_url, "sqs": args.endpoint_url} if args.endpoint_url else {}
    return AwsContext(AwsSettings(region=region, endpoints=endpoints, imds_timeout=0.5))


def _guess_s3_bundle_type(key: str, given: str | None) -> str:
    if given is not None:
        if given == "directory":
            raise UsageError("an S3 revision is an archive: --type must be tar, tgz or zip")
        return given
    name = key.lower()
    for suffix, kind in ((".zip", "zip"), (".tar", "tar"), (".tgz", "tgz"), (".tar.gz", "tgz")):
        if name.endswith(suffix):
            return kind
    raise UsageError(f"cannot tell the bundle type of s3 key {key!r} from its name; pass --type tar, tgz or zip")


def parse_s3_revision_url(url: str) -> tuple[str, str, dict[str, str]]:
    """``s3://bucket/key?versionId=V&etag=E`` -> (bucket, key, {versionId, etag, sha256}); UsageError if malformed."""
    if not url.startswith("s3://"):
        raise UsageError(f"--revision must look like s3://BUCKET/KEY[?versionId=V], not {url!r}")
    rest, _, query = url[len("s3://"):].partition("?")
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise UsageError(f"--revision {url!r} needs a bucket and a key: s3://BUCKET/KEY")
    params: dict[str, str] = {}
    for name, values in urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=False).items():
        if name not in ("versionId", "etag", "sha256"):
            raise UsageError(f"--revision: unknown parameter {name!r} (known: versionId, etag, sha256)")
        params[name] = values[-1]
    return bucket, key, params


def s3_revision(args: argparse.Namespace, aws: AwsContext | None) -> S3Revision:
    """The S3 revision of ``--revision``, pinned to the object's ETag and version unless ``--unpinned``."""
    from agent.model.revision import RevisionError, S3Revision, revision_from_dict

    bucket, key, params = parse_s3_revision_url(args.revision)
    version, etag = params.get("versionId") or None, params.get("etag") or None
    sha256 = args.sha256 or params.get("sha256") or None
    if aws is not None and not args.unpinned:
        version, etag = _pin(aws, bucket, key, version)
    doc = {"type": "s3", "bucket": bucket, "key": key, "bundle_type": _guess_s3_bundle_type(key, args.bundle_type),
           "version": version, "etag": etag, "sha256": sha256.lower() if sha256 else None}
    try:
        revision = revision_from_dict(doc)
    except RevisionError as exc:
        raise UsageError(str(exc)) from None
    assert isinstance(revision, S3Revision)
    return revision


def _pin(aws: AwsContext, bucket: str, key: str, version: str | None) -> tuple[str | None, str | None]:
    from botocore.exceptions import BotoCoreError, ClientError

    kwargs = {"Bucket": bucket, "Key": key, **({"VersionId": version} if version else {})}
    try:
        head = aws.client("s3").head_object(**kwargs)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        what = "no such object" if status == 404 else f"S3 answered HTTP {status}"
        raise UsageError(f"s3://{bucket}/{key}: {what}; check the revision (or send it --unpinned)") from None
    except BotoCoreError as exc:
        raise UsageError(f"cannot reach S3 to pin the revision: {exc}") from None
    found = head.get("VersionId")
    return (found if found and found != "null" else version), head.get("ETag")


def github_revision(spec: str, bundle_type: str | None) -> GitHubRevision:
    """``owner/repo@commit`` -> GitHubRevision; UsageError when malformed."""
    from agent.model.revision import GitHubRevision, RevisionError, revision_from_dict

    repository, sep, commit = spec.partition("@")
    if not sep:
        raise UsageError(f"--github must look like OWNER/REPO@COMMIT, not {spec!r}")
    try:
        revision = revision_from_dict({"type": "github", "repository": repository, "commit": commit,
                                       "bundle_type": bundle_type or "tgz"})
    except RevisionError as exc:
        raise UsageError(f"--github: {exc}") from None
    assert isinstance(revision, GitHubRevision)
    return revision


def send(target: RemoteTarget, command: Command, aws: AwsContext) -> str:
    """Send ``command``; returns where it went (a message id or an s3:// URL)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from agent.channels.s3prefix import commands_prefix

    body = command.to_json()
    try:
        if target.kind == "sqs":
            assert target.queue_url is not None
            kwargs: dict[str, Any] = {"QueueUrl": target.queue_url, "MessageBody": body.decode()}
            if target.queue_url.endswith(".fifo"):
                kwargs.update(MessageGroupId=command.deployment_group, MessageDeduplicationId=command.command_id)
            return str(aws.client("sqs").send_message(**kwargs)["MessageId"])
        assert target.location is not None and target.instance is not None
        stamp = command.created_at.replace("-", "").replace(":", "").replace(".", "")
        key = f"{commands_prefix(target.location.prefix, target.instance)}{stamp}-{command.deployment_id}.json"
        aws.client("s3").put_object(Bucket=target.location.bucket, Key=key, Body=body,
                                    ContentType="application/json", IfNoneMatch="*")
        return target.location.url(key)
    except (ClientError, BotoCoreError) as exc:
        raise UsageError(f"could not send the command: {exc}") from None


def reports_location_for(args: argparse.Namespace, target: RemoteTarget) -> S3Location:
    """Where ``wait`` reads reports: --reports, else the --s3 prefix, else the local agent configuration."""
    from agent.reporting.s3 import S3Location

    if getattr(args, "reports", None):
        try:
            return S3Location.parse(args.reports)
        except ValueError as exc:
            raise UsageError(f"--reports: {exc}") from None
    if target.location is not None:
        return target.location
    from agent.config import load_config

    config = load_config(None)
    if config.aws.reports_bucket:
        return S3Location(config.aws.reports_bucket, config.aws.reports_prefix)
    raise UsageError("--sqs: where are the reports? pass --reports s3://BUCKET/PREFIX (the agent's "
                     "aws.reports_bucket and aws.reports_prefix)")


class S3ReportReader:
    """Reads one deployment's report from S3 (``None`` while it does not exist yet)."""

    def __init__(self, aws: AwsContext, location: S3Location, deployment_id: str, instance: str) -> None:
        self.client = aws.client("s3")
        self.location = location
        self.key = location.report_key(deployment_id, instance)
        self.last_error: str | None = None

    def __call__(self) -> dict[str, Any] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(Bucket=self.location.bucket, Key=self.key)
            doc = json.loads(response["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                self.last_error = str(exc)
            return None
        except (BotoCoreError, ValueError) as exc:  # unreachable, or a report being replaced: try again
            self.last_error = str(exc)
            return None
        self.last_error = None
        return doc if isinstance(doc, dict) else None
