"""AWS stops answering in the middle of a deployment: the deployment completes, the agent backs off without
crashing, and the final report reaches S3 once the endpoint is back, also across an agent restart.

The agent reaches the moto server only through a TCP proxy (tests.fakes.tcp_proxy) that the test pauses; the
test's own clients talk to moto directly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.moto_server import MotoServer
from tests.fakes.tcp_proxy import TcpProxy, tcp_proxy
from tests.integration.aws_harness import INSTANCE, AgentProcess, World, berth_cli, final_report, wait_for

pytestmark = pytest.mark.integration

BUCKET = "releases"
GROUP = "berth-outage"
OUTAGE = 30.0
# AfterInstall takes a few seconds: the endpoint goes away while it runs, and the deployment ends during the outage.
SLOW_AFTER_INSTALL = """#!/bin/sh
echo "$LIFECYCLE_EVENT v1" >> "$BERTH_TEST_MARKERS"
echo "working through the outage"
sleep 4
echo "done"
"""


@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[TcpProxy]:
    with tcp_proxy(moto.url) as p:
        yield p


def report_key(deployment_id: str) -> str:
    return f"berth/deployments/{deployment_id}/instances/{INSTANCE}.json"


def event_status(world: World, deployment_id: str, event: str) -> str | None:
    doc = world.get_json(BUCKET, report_key(deployment_id))
    if doc is None:
        return None
    return next((e["status"] for e in doc["events"] if e["name"] == event), None)


def start(tmp: Path, proxy: TcpProxy, queue_url: str, agents: list[AgentProcess], **channel: Any) -> AgentProcess:
    agent = AgentProcess(tmp, endpoint=proxy.url, channel={"kind": "sqs", "queue_url": queue_url, **channel},
                         aws={"reports_bucket": BUCKET, "reports_prefix": "berth", "cloudwatch": True,
                              "log_group": GROUP})
    agents.append(agent)
    return agent.start()


def send_v1(tmp: Path, world: World, queue_url: str) -> str:
    world.upload_revision(tmp, BUCKET, "app/v1.tgz", "v1", scripts={"AfterInstall": SLOW_AFTER_INSTALL})
    proc = berth_cli(["command", "send", "--endpoint-url", world.url, "--sqs", queue_url,
                      "--revision", f"s3://{BUCKET}/app/v1.tgz", "--deployment-group", "web"])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def outbox(agent: AgentProcess, deployment_id: str) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads((agent.root / "outbox" / f"{deployment_id}.json").read_text())
    except FileNotFoundError:
        return None
    return doc


def test_endpoint_gone_for_30s_mid_deployment(tmp_path, world, proxy, agents):
    queue_url, _ = world.queue("commands")
    agent = start(tmp_path, proxy, queue_url, agents)
    dep = send_v1(tmp_path, world, queue_url)
    wait_for(lambda: event_status(world, dep, "AfterInstall") == "InProgress", 60, "AfterInstall to start")

    proxy.pause("drop")
    paused_at = time.monotonic()
    # The deployment goes on and ends while S3, SQS and CloudWatch are unreachable; the report waits on disk.
    waiting = wait_for(lambda: (d := outbox(agent, dep)) and d["status"] != "InProgress" and d, OUTAGE,
                       "the final report in the outbox")
    assert waiting["status"] == "Succeeded"
    assert event_status(world, dep, "AfterInstall") == "InProgress"  # S3 still has the old one
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - paused_at)))
    assert agent.alive, agent.output()[-3000:]
    proxy.resume()

    report = final_report(world, BUCKET, report_key(dep), timeout=45)
    assert report["status"] == "Succeeded"
    assert agent.markers_of("v1") == ["BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService"]
    wait_for(lambda: world.messages_left(queue_url) == 0, 70, "the message to be deleted", interval=0.5)
    wait_for(lambda: outbox(agent, dep) is None, 10, "the outbox to empty")
    log = agent.agent_log()
    assert "cannot send reports" in log and "poll failed" in log  # it noticed, and backed off
    assert agent.alive
    resumed = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    beat = wait_for(lambda: (b := world.get_json(BUCKET, f"berth/agents/{INSTANCE}.json")) and
                    b["state"] == "idle" and (b["last_poll_at"] or "") >= resumed and b, 30,
                    "a heartbeat after a successful poll")
    assert beat["reports_waiting"] == 0
    assert agent.stop() == 0


def test_a_report_waiting_for_s3_survives_an_agent_restart(tmp_path, world, proxy, agents):
    queue_url, _ = world.queue("commands")
    # a short visibility timeout: the message whose delete is lost comes back soon (the deployment is short)
    agent = start(tmp_path, proxy, queue_url, agents, visibility_timeout=20)
    dep = send_v1(tmp_path, world, queue_url)
    wait_for(lambda: event_status(world, dep, "AfterInstall") == "InProgress", 60, "AfterInstall to start")
    proxy.pause("drop")
    wait_for(lambda: (d := outbox(agent, dep)) and d["status"] == "Succeeded", 30, "the final report in the outbox")

    assert agent.stop() == 0  # stopping while S3 is unreachable: the report stays in the outbox
    assert outbox(agent, dep)["status"] == "Succeeded"
    agent.start()  # starts without reaching AWS
    time.sleep(2)
    assert agent.alive
    proxy.resume()

    report = final_report(world, BUCKET, report_key(dep), timeout=45)
    assert report["status"] == "Succeeded"
    wait_for(lambda: outbox(agent, dep) is None, 10, "the outbox to empty")
    # the message whose delete was lost in the outage comes back and is answered from the idempotency store
    wait_for(lambda: world.messages_left(queue_url) == 0, 60, "the message to be deleted", interval=0.5)
    assert agent.markers_of("v1") == ["BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService"]
    assert agent.stop() == 0
