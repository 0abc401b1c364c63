"""What goes wrong on the AWS channels: bad revisions, malformed and duplicate commands, too little disk.

A moto server over real HTTP; the agent is a real process.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.aws_harness import INSTANCE, AgentProcess, World, berth_cli, final_report, wait_for

pytestmark = pytest.mark.integration

BUCKET = "releases"
MiB = 1024 * 1024


def start_agent(tmp: Path, world: World, agents: list[AgentProcess], channel: dict[str, Any],
                **settings: Any) -> AgentProcess:
    agent = AgentProcess(tmp, endpoint=world.url, channel=channel,
                         aws={"reports_bucket": BUCKET, "reports_prefix": "berth"}, **settings)
    agents.append(agent)
    return agent.start()


def send(world: World, *args: str) -> dict[str, Any]:
    """``berth command send --json``; returns the command it sent."""
    proc = berth_cli(["command", "send", "--json", "--endpoint-url", world.url, *args])
    assert proc.returncode == 0, proc.stderr
    command: dict[str, Any] = json.loads(proc.stdout)["command"]
    return command


def report(world: World, deployment_id: str) -> dict[str, Any]:
    return final_report(world, BUCKET, f"berth/deployments/{deployment_id}/instances/{INSTANCE}.json")


def download_failure(doc: dict[str, Any]) -> dict[str, Any]:
    assert doc["status"] == "Failed", doc
    failed = [e for e in doc["events"] if e["status"] == "Failed"]
    assert [e["name"] for e in failed] == ["DownloadBundle"], doc["events"]
    diagnostics: dict[str, Any] = failed[0]["diagnostics"]
    return diagnostics


def test_wrong_etag_wrong_sha256_and_missing_object_fail_the_download(tmp_path, world, agents):
    queue_url, _ = world.queue("commands")
    world.upload_revision(tmp_path, BUCKET, "app/v1.tgz", "v1")
    agent = start_agent(tmp_path, world, agents, {"kind": "sqs", "queue_url": queue_url})
    url = f"s3://{BUCKET}/app/v1.tgz"

    wrong_etag = send(world, "--sqs", queue_url, "--unpinned", "--revision", f"{url}?etag={'0f' * 16}")
    wrong_sha = send(world, "--sqs", queue_url, "--revision", url, "--sha256", "ab" * 32)
    missing = send(world, "--sqs", queue_url, "--unpinned", "--revision", f"s3://{BUCKET}/app/nothing-here.tgz")

    etag_diag = download_failure(report(world, wrong_etag["deployment_id"]))
    assert etag_diag["error_name"] == "ChecksumMismatch" and "ETag" in etag_diag["message"]
    sha_diag = download_failure(report(world, wrong_sha["deployment_id"]))
    assert sha_diag["error_name"] == "ChecksumMismatch" and "sha256" in sha_diag["message"]
    missing_diag = download_failure(report(world, missing["deployment_id"]))
    assert missing_diag["error_name"] == "RevisionUnavailable" and "no such object" in missing_diag["message"]

    assert agent.markers_of("v1") == []  # nothing of the revision ran
    assert not (tmp_path / "installed").exists()
    wait_for(lambda: world.messages_left(queue_url) == 0, 20, "every message to be deleted")
    assert agent.alive
    assert agent.stop() == 0


def test_client_refuses_a_missing_object_when_pinning(world):
    proc = berth_cli(["command", "send", "--endpoint-url", world.url, "--sqs", f"{world.url}/123456789012/q",
                      "--revision", f"s3://{BUCKET}/app/none.tgz"])
    assert proc.returncode == 2
    assert "no such object" in proc.stderr


def test_malformed_messages_are_rejected_and_left_to_the_dead_letter_queue(tmp_path, world, agents):
    queue_url, dlq_url = world.queue("commands", dlq_after=2)
    assert dlq_url is not None
    agent = start_agent(tmp_path, world, agents, {"kind": "sqs", "queue_url": queue_url, "visibility_timeout": 1})
    world.sqs.send_message(QueueUrl=queue_url, MessageBody="this is not a command {")
    invalid = {"schema_version": 1, "command_id": "c-invalid-1", "deployment_id": "d-INVALID00001",
               "application": "shop", "deployment_group": "web", "created_at": "2024-05-01T12:00:00Z",
               "revision": {"type": "s3", "bucket": BUCKET}, "file_exist_behavior": "OVERWRITE"}
    world.sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(invalid))

    rejected = report(world, "d-INVALID00001")
    assert rejected["status"] == "Rejected" and rejected["reason"] == "InvalidCommand"
    assert "revision" in rejected["message"] and "file_exist_behavior" in rejected["message"]
    # both messages end in the dead-letter queue through the queue's redrive policy
    wait_for(lambda: world.messages_left(dlq_url) == 2, 40, "both messages in the dead-letter queue", interval=0.5)
    assert world.messages_left(queue_url) == 0
    assert agent.alive
    assert "this is not a command" not in agent.agent_log()  # the body is not logged, only the reason
    assert "MalformedCommand" in agent.agent_log()
    assert agent.stop() == 0


def test_a_duplicate_delivery_runs_once_and_gets_the_earlier_report(tmp_path, world, agents):
    queue_url, _ = world.queue("commands")
    world.upload_revision(tmp_path, BUCKET, "app/v1.tgz", "v1")
    agent = start_agent(tmp_path, world, agents, {"kind": "sqs", "queue_url": queue_url})
    command = send(world, "--sqs", queue_url, "--revision", f"s3://{BUCKET}/app/v1.tgz")
    first = report(world, command["deployment_id"])
    assert first["status"] == "Succeeded"
    wait_for(lambda: world.messages_left(queue_url) == 0, 20, "the first message to be deleted")

    world.sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(command))  # the same command again
    wait_for(lambda: world.messages_left(queue_url) == 0 and "was seen before" in agent.agent_log(), 30,
             "the duplicate to be acknowledged")
    assert agent.markers_of("v1") == ["BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService"]
    assert report(world, command["deployment_id"]) == first
    assert agent.stop() == 0


def test_a_malformed_s3_command_is_moved_to_rejected_with_its_reason(tmp_path, world, agents):
    agent = AgentProcess(tmp_path, endpoint=world.url, channel={"kind": "s3", "bucket": BUCKET, "prefix": "fleet"},
                         aws={})
    agents.append(agent)
    agent.start()
    folder = f"fleet/commands/{INSTANCE}/"
    world.s3.put_object(Bucket=BUCKET, Key=f"{folder}broken.json", Body=b"\xff\xfe not utf-8")
    reason_key = f"{folder}rejected/broken.reason"
    wait_for(lambda: reason_key in world.keys(BUCKET, folder), 30, "the rejection")
    text = world.s3.get_object(Bucket=BUCKET, Key=reason_key)["Body"].read().decode()
    assert text.startswith("MalformedCommand: command is not UTF-8")
    assert f"{folder}rejected/broken.json" in world.keys(BUCKET, folder)
    assert f"{folder}broken.json" not in world.keys(BUCKET, folder)
    assert agent.stop() == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs for the agent's state root (needs root, as CI has)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_revision_larger_than_the_free_space_fails_before_downloading(tmp_path, world, agents, small_disk):
    queue_url, _ = world.queue("commands")
    big = tmp_path / "big.tar"
    big.write_bytes(os.urandom(8 * MiB))  # S3 revisions are only judged by their size here
    world.s3.upload_file(str(big), BUCKET, "app/big.tar")
    agent = start_agent(tmp_path, world, agents, {"kind": "sqs", "queue_url": queue_url},
                        root=str(small_disk / "state"))
    command = send(world, "--sqs", queue_url, "--revision", f"s3://{BUCKET}/app/big.tar")

    diag = download_failure(report(world, command["deployment_id"]))
    assert diag["error_name"] == "RevisionUnavailable"
    assert "bytes free" in diag["message"] and str(8 * MiB) in diag["message"]
    assert agent.alive
    assert agent.stop() == 0
