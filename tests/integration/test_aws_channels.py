"""The agent on the SQS and S3 prefix channels, end to end against a moto server over real HTTP.

The agent is a real process (``berth agent run``); commands are sent with ``berth command send`` and followed with
``berth command wait``; reports, heartbeats and CloudWatch streams are read back from moto.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.aws_harness import (
    INSTANCE,
    AgentProcess,
    World,
    berth_cli,
    wait_for,
)

pytestmark = pytest.mark.integration

BUCKET = "releases"
GROUP = "berth-test"


def sqs_agent(tmp: Path, world: World, queue_url: str, agents: list[AgentProcess], **settings: object) -> AgentProcess:
    agent = AgentProcess(tmp, endpoint=world.url, channel={"kind": "sqs", "queue_url": queue_url},
                         aws={"reports_bucket": BUCKET, "reports_prefix": "berth", "cloudwatch": True,
                              "log_group": GROUP}, **settings)
    agents.append(agent)
    return agent.start()


def s3_agent(tmp: Path, world: World, agents: list[AgentProcess], **settings: object) -> AgentProcess:
    agent = AgentProcess(tmp, endpoint=world.url, channel={"kind": "s3", "bucket": BUCKET, "prefix": "fleet"},
                         aws={"cloudwatch": True, "log_group": GROUP}, **settings)
    agents.append(agent)
    return agent.start()


def send(*args: str) -> str:
    proc = berth_cli(["command", "send", *args])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def report_key(prefix: str, deployment_id: str) -> str:
    return f"{prefix}/deployments/{deployment_id}/instances/{INSTANCE}.json"


def test_sqs_end_to_end_s3_revision_report_and_cloudwatch(tmp_path, world, agents):
    queue_url, _ = world.queue("berth-commands")
    head = world.upload_revision(tmp_path, BUCKET, "app/v1.tgz", "v1")
    agent = sqs_agent(tmp_path, world, queue_url, agents)

    dep = send("--sqs", queue_url, "--revision", f"s3://{BUCKET}/app/v1.tgz", "--endpoint-url", world.url,
               "--application", "shop", "--deployment-group", "web")
    waited = berth_cli(["command", "wait", dep, "--sqs", queue_url, "--instance", INSTANCE,
                        "--reports", f"s3://{BUCKET}/berth", "--endpoint-url", world.url, "--timeout", "60"])
    assert waited.returncode == 0, waited.stdout + waited.stderr + agent.output()[-3000:]
    assert "ApplicationStart" in waited.stdout

    report = world.get_json(BUCKET, report_key("berth", dep))
    assert report is not None and report["status"] == "Succeeded"
    assert report["instance_id"] == INSTANCE
    # the client pinned the object it saw at send time
    assert report["revision"]["etag"].strip('"') == head["ETag"].strip('"')
    assert report["revision"]["version"] == head["VersionId"]
    assert (tmp_path / "installed" / "index.html").read_text() == "<h1>v1</h1>\n"
    assert agent.markers_of("v1") == ["BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService"]

    # the message is deleted once the report is written
    wait_for(lambda: world.messages_left(queue_url) == 0, 20, "the message to be deleted")
    # heartbeat: version, state, last poll, free disk
    beat = wait_for(lambda: world.get_json(BUCKET, f"berth/agents/{INSTANCE}.json"), 20, "a heartbeat")
    assert beat["instance_id"] == INSTANCE and beat["agent_version"] and beat["free_disk_bytes"] > 0
    assert beat["state"] in ("idle", "deploying") and "last_poll_at" in beat

    # script output in CloudWatch Logs, one stream per deployment; the agent log in <instance-id>/agent
    stream = f"web/{dep}/{INSTANCE}"
    lines = wait_for(lambda: world.log_lines(GROUP, stream), 30, "script output in CloudWatch")
    assert any("AfterInstall [stdout] AfterInstall of v1 ran in" in line for line in lines), lines
    agent_lines = wait_for(lambda: world.log_lines(GROUP, f"{INSTANCE}/agent"), 30, "agent log in CloudWatch")
    assert any("agent started" in line for line in agent_lines)
    assert agent.stop() == 0


def test_s3_prefix_end_to_end_runs_each_command_once_across_restarts(tmp_path, world, agents):
    world.upload_revision(tmp_path, BUCKET, "app/v2.tgz", "v2")
    agent = s3_agent(tmp_path, world, agents)

    dep = send("--s3", f"s3://{BUCKET}/fleet", "--instance", INSTANCE, "--revision", f"s3://{BUCKET}/app/v2.tgz",
               "--endpoint-url", world.url, "--deployment-group", "web")
    waited = berth_cli(["command", "wait", dep, "--s3", f"s3://{BUCKET}/fleet", "--instance", INSTANCE,
                        "--endpoint-url", world.url, "--timeout", "60", "--json"])
    assert waited.returncode == 0, waited.stdout + waited.stderr + agent.output()[-3000:]
    assert json.loads(waited.stdout)["status"] == "Succeeded"
    assert world.get_json(BUCKET, report_key("fleet", dep))["status"] == "Succeeded"

    # the command object is moved to done/ once handled
    folder = f"fleet/commands/{INSTANCE}/"
    done = wait_for(lambda: [k for k in world.keys(BUCKET, folder) if "/done/" in k], 20, "the command in done/")
    assert done[0].endswith(f"-{dep}.json")
    assert [k for k in world.keys(BUCKET, folder) if "/done/" not in k] == []
    lines = wait_for(lambda: world.log_lines(GROUP, f"web/{dep}/{INSTANCE}"), 30, "script output in CloudWatch")
    assert any("ValidateService [stdout]" in line for line in lines)
    assert agent.stop() == 0

    # Put the very same command object back (as if the move had never happened): after a restart it is not run
    # again, its earlier report is published once more.
    body = world.s3.get_object(Bucket=BUCKET, Key=done[0])["Body"].read()
    world.s3.put_object(Bucket=BUCKET, Key=f"{folder}again.json", Body=body)
    agent.start()
    wait_for(lambda: [k for k in world.keys(BUCKET, folder) if k.endswith("done/again.json")], 30,
             "the redelivered command to be acknowledged")
    assert agent.markers_of("v2") == ["BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService"]
    assert agent.stop() == 0
