"""Helpers for the AWS channel tests: buckets, queues and revisions in a moto server, and the agent as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3

from tests.fakes.revisions import REPO, bundle, make_revision

REGION = "us-east-1"
INSTANCE = "i-0123456789abcdef0"
T = TypeVar("T")

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_DROP = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
         "https_proxy", "ALL_PROXY", "all_proxy", "NOTIFY_SOCKET", "WATCHDOG_USEC")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    env.update(CREDENTIALS)
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def wait_for(fn: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class World:
    """boto3 clients on the moto server (the test's own view, never through the proxy)."""

    def __init__(self, url: str) -> None:
        self.url = url
        kw: dict[str, Any] = {"endpoint_url": url, "region_name": REGION, "aws_access_key_id": "testing",
                              "aws_secret_access_key": "testing"}
        self.s3 = boto3.client("s3", **kw)
        self.sqs = boto3.client("sqs", **kw)
        self.logs = boto3.client("logs", **kw)

    def bucket(self, name: str, *, versioned: bool = True) -> str:
        self.s3.create_bucket(Bucket=name)
        if versioned:
            self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def queue(self, name: str, *, dlq_after: int | None = None) -> tuple[str, str | None]:
        """A queue (and, with ``dlq_after``, its dead-letter queue receiving after that many receives)."""
        attributes: dict[str, str] = {}
        dlq_url = None
        if dlq_after is not None:
            dlq_url = self.sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
            arn = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(dlq_after)})
        url = self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        return url, dlq_url

    def messages_left(self, queue_url: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def upload_revision(self, tmp: Path, bucket: str, key: str, version: str, **kw: Any) -> dict[str, Any]:
        """A marker revision (tests.fakes.revisions) as a tgz in S3; returns its HEAD (ETag, VersionId)."""
        folder = make_revision(tmp / f"rev-{version}", version=version, destination=tmp / "installed", **kw)
        archive = bundle(folder, "tgz", tmp / "bundles")
        self.s3.upload_file(str(archive), bucket, key)
        head: dict[str, Any] = self.s3.head_object(Bucket=bucket, Key=key)
        return head

    def get_json(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        doc: dict[str, Any] = json.loads(body)
        return doc

    def keys(self, bucket: str, prefix: str) -> list[str]:
        page = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for obj in page.get("Contents") or [])

    def log_lines(self, group: str, stream: str) -> list[str]:
        try:
            events = self.logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
        except self.logs.exceptions.ResourceNotFoundException:
            return []
        return [e["message"] for e in events["events"]]


def final_report(world: World, bucket: str, key: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        doc = world.get_json(bucket, key)
        return doc if doc and doc.get("status") not in ("InProgress", "Pending") else None

    return wait_for(done, timeout, f"final report s3://{bucket}/{key}", interval=0.2)


class AgentProcess:
    """``berth agent run`` as a real process with a config file written from keyword arguments."""

    def __init__(self, tmp: Path, *, endpoint: str, channel: dict[str, Any], aws: dict[str, Any],
                 **settings: Any) -> None:
        self.tmp = tmp
        self.root = Path(settings.get("root", tmp / "state"))
        self.markers = tmp / "markers.log"
        self.markers.touch()
        self.log_file = tmp / "agent-output.log"
        self.config = tmp / "agent.yml"
        doc: dict[str, Any] = {
            "root": str(self.root), "log_dir": str(tmp / "log"), "instance_id": INSTANCE, "poll_interval": 0.2,
            "heartbeat_interval": 2, "shutdown_grace": 30, "hook_kill_grace": 1, "channel": channel,
            "aws": {"region": REGION, "endpoints": {"s3": endpoint, "sqs": endpoint, "logs": endpoint}, **aws},
        }
        doc.update(settings)
        self.config.write_text(json.dumps(doc, indent=1))  # JSON is YAML
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = clean_env(BERTH_TEST_MARKERS=str(self.markers))

    def start(self) -> AgentProcess:
        out = self.log_file.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "agent", "run", "--config", str(self.config)],
                                     env=self.env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        wait_for(lambda: (self.root / "status.json").exists() or self.proc.poll() is not None, 30, "agent start")
        assert self.proc.poll() is None, self.output()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def agent_log(self) -> str:
        try:
            return (self.tmp / "log" / "agent.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def markers_of(self, version: str) -> list[str]:
        return [line.split()[0] for line in self.markers.read_text().splitlines() if line.endswith(f" {version}")]

    def stop(self, timeout: float = 40) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the agent did not stop within {timeout} s:\n{self.output()[-3000:]}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def berth_cli(args: list[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=clean_env(),
                          timeout=timeout)
