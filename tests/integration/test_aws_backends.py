"""The SQS and S3 prefix channels, the S3 reporter and CloudWatch shipping in-process, against a moto server over
real HTTP (clients made by AwsContext), sometimes behind a pausable TCP proxy."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest

from agent.aws import AwsContext, AwsSettings
from agent.channels.base import Delivery
from agent.channels.remote import ChannelUnavailable
from agent.channels.s3prefix import S3PrefixChannel
from agent.channels.sqs import SqsChannel
from agent.reporting.cloudwatch import CloudWatchShipper
from agent.reporting.s3 import S3Location, S3Reporter
from tests.fakes.moto_server import MotoServer, moto_server, use_dummy_credentials
from tests.fakes.tcp_proxy import TcpProxy, tcp_proxy
from tests.integration.aws_harness import World, wait_for

pytestmark = pytest.mark.integration

BUCKET = "berth"
INSTANCE = "i-0abc"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def world(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> World:
    use_dummy_credentials(monkeypatch)
    moto.reset()
    w = World(moto.url)
    w.bucket(BUCKET, versioned=False)
    return w


@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[TcpProxy]:
    with tcp_proxy(moto.url) as p:
        yield p


def context(url: str) -> AwsContext:
    return AwsContext(AwsSettings(region="us-east-1", endpoints=dict.fromkeys(("s3", "sqs", "logs"), url),
                                  max_attempts=2, connect_timeout=2, read_timeout=25))


def receive(channel: SqsChannel | S3PrefixChannel, timeout: float = 10) -> Delivery:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delivery = channel.receive(0.5)
        if delivery is not None:
            return delivery
    raise AssertionError("no delivery")


def test_sqs_extend_keeps_a_running_command_hidden_and_ack_deletes_it(world):
    queue_url, _ = world.queue("q")
    channel = SqsChannel(context(world.url).client_factory("sqs"), queue_url, wait_time_seconds=20,
                         visibility_timeout=2)
    channel.start()
    try:
        world.sqs.send_message(QueueUrl=queue_url, MessageBody='{"hello": 1}')
        delivery = receive(channel)
        assert delivery.command_bytes == b'{"hello": 1}'
        for _ in range(5):  # 5 s of "deployment", more than twice the visibility timeout
            channel.extend(delivery)
            other = world.sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)
            assert "Messages" not in other  # no other receive sees it
            time.sleep(1)
        channel.ack(delivery)
        wait_for(lambda: world.messages_left(queue_url) == 0, 10, "the delete")
    finally:
        channel.close()


def test_sqs_a_message_received_while_stopping_is_given_back(world):
    queue_url, _ = world.queue("q")
    channel = SqsChannel(context(world.url).client_factory("sqs"), queue_url, visibility_timeout=600)
    channel.start()
    world.sqs.send_message(QueueUrl=queue_url, MessageBody="x")
    assert channel.receive(0.01) is None  # starts the long poll; the message lands in the channel's inbox
    wait_for(lambda: not channel._inbox.empty(), 10, "the poll")
    channel.close()
    again = world.sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)
    assert again["Messages"][0]["Body"] == "x"  # visible at once, not after 600 s


def test_sqs_receive_raises_while_sqs_is_unreachable_and_recovers(world, proxy):
    queue_url, _ = world.queue("q")
    channel = SqsChannel(context(proxy.url).client_factory("sqs"), queue_url, wait_time_seconds=1)
    proxy.pause("drop")
    channel.start()
    try:
        with pytest.raises(ChannelUnavailable, match=r"Connection|closed|Endpoint"):
            wait_for(lambda: channel.receive(0.5) or None, 20, "an error")
        proxy.resume()
        world.sqs.send_message(QueueUrl=queue_url, MessageBody="after")

        def got() -> Delivery | None:
            try:
                return channel.receive(0.5)
            except Exception:
                return None

        delivery = wait_for(got, 40, "a delivery after the outage")
        assert delivery.command_bytes == b"after"
    finally:
        channel.close()


def put_command(world: World, name: str, body: bytes = b"{}") -> str:
    key = f"fleet/commands/{INSTANCE}/{name}"
    world.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return key


def test_s3_prefix_oldest_first_claims_survive_a_crash_and_handled_ones_never_return(world, tmp_path):
    factory = context(world.url).client_factory("s3")
    put_command(world, "b.json", b"first")
    time.sleep(1.1)  # LastModified has a one-second resolution
    put_command(world, "a.json", b"second")
    put_command(world, ".hidden.json")
    put_command(world, "notes.txt")

    channel = S3PrefixChannel(factory, BUCKET, "/fleet/", INSTANCE, tmp_path / "claims", poll_interval=0.1)
    channel.start()
    first = receive(channel)
    assert first.command_bytes == b"first"
    channel.ack(first)
    second = receive(channel)
    assert second.command_bytes == b"second"
    channel._closing.set()  # a crash: the second command was claimed but never acknowledged
    channel._threads = []

    again = S3PrefixChannel(factory, BUCKET, "fleet", INSTANCE, tmp_path / "claims", poll_interval=0.1)
    again.start()
    try:
        redelivered = receive(again)
        assert redelivered.command_bytes == b"second"  # the daemon's idempotency store judges it
        again.reject(redelivered, "InvalidCommand", "bad\nthing")
        folder = f"fleet/commands/{INSTANCE}/"
        wait_for(lambda: f"{folder}rejected/a.reason" in world.keys(BUCKET, folder), 10, "the rejection")
        wait_for(lambda: f"{folder}done/b.json" in world.keys(BUCKET, folder), 10, "the move to done/")
        assert again.receive(1.0) is None  # nothing else: dotfiles and other names are not commands
        # A new command under a handled name is a new command.
        put_command(world, "b.json", b"third")
        assert receive(again).command_bytes == b"third"
    finally:
        again.close()
    claims = json.loads((tmp_path / "claims" / "claims.json").read_text())["claims"]
    assert list(claims) == [f"fleet/commands/{INSTANCE}/b.json"]  # only the unfinished one is remembered


def test_s3_reporter_keeps_reports_on_disk_while_s3_is_down(world, proxy, tmp_path):
    location = S3Location(BUCKET, "reports/")
    reporter = S3Reporter(context(proxy.url).client_factory("s3"), location, INSTANCE, tmp_path / "outbox",
                          backoff_cap=1.0)
    reporter.start()
    try:
        proxy.pause("drop")
        started = time.monotonic()
        for status in ("InProgress", "InProgress", "Succeeded"):
            reporter.publish({"deployment_id": "d-1", "status": status})
        reporter.publish({"deployment_id": "d-2", "status": "Failed"})
        reporter.heartbeat({"state": "idle", "version": "0.1.0"})
        assert time.monotonic() - started < 1.0  # publishing never waits for S3
        time.sleep(2)
        assert reporter.pending() == 3 and reporter.last_error
        assert json.loads((tmp_path / "outbox" / "d-1.json").read_text())["status"] == "Succeeded"
        proxy.resume()
        wait_for(lambda: reporter.pending() == 0, 20, "the uploads")
    finally:
        reporter.close()
    assert world.get_json(BUCKET, f"reports/deployments/d-1/instances/{INSTANCE}.json")["status"] == "Succeeded"
    assert world.get_json(BUCKET, f"reports/deployments/d-2/instances/{INSTANCE}.json")["status"] == "Failed"
    beat = world.get_json(BUCKET, f"reports/agents/{INSTANCE}.json")
    assert beat["state"] == "idle" and beat["free_disk_bytes"] > 0


def test_cloudwatch_streams_and_bounded_drops_when_cloudwatch_is_down(world, proxy, caplog):
    shipper = CloudWatchShipper(context(proxy.url).client_factory("logs"), "grp", INSTANCE, max_queued=50,
                                script_send_interval=0.2)
    shipper.deployment_update("d-1", "web", final=False)
    for i in range(3):
        shipper.script_line("BeforeInstall", "stdout", f"line {i}")
    shipper.script_line("BeforeInstall", "stderr", "")
    shipper.deployment_update("d-1", "web", final=True)
    lines = wait_for(lambda: world.log_lines("grp", f"web/d-1/{INSTANCE}"), 20, "the stream")
    assert lines == [f"BeforeInstall [stdout] line {i}" for i in range(3)] + ["BeforeInstall [stderr]"]
    assert shipper.dropped == 0

    proxy.pause("hang")  # CloudWatch stops answering: shipping must not block the caller
    shipper.deployment_update("d-2", "web", final=False)
    started = time.monotonic()
    for i in range(500):
        shipper.script_line("AfterInstall", "stdout", f"line {i}")
    assert time.monotonic() - started < 2.0
    assert shipper.dropped >= 400  # the queue holds 50 lines
    with caplog.at_level(logging.WARNING):
        shipper.report_drops()
    assert "log line(s) dropped" in caplog.text
    assert shipper.stats()["cloudwatch_dropped_lines"] == shipper.dropped
    proxy.resume()
    shipper.close(timeout=5)
