"""RemoteChannel's threads without a network: polling on demand, backoff, operations retried or given up."""

from __future__ import annotations

import threading
import time

import pytest

from agent.channels.base import Delivery
from agent.channels.remote import ChannelUnavailable, Operation, RemoteChannel, is_permanent


class Scripted(RemoteChannel):
    """Each poll pops the next outcome: a list of bodies, or an exception to raise."""

    name = "scripted"

    def __init__(self, outcomes: list[object]) -> None:
        super().__init__(idle_wait=0.05)
        self.outcomes = outcomes
        self.polls = 0
        self.released: list[bytes] = []
        self.lock = threading.Lock()

    def _poll(self) -> list[Delivery]:
        with self.lock:
            self.polls += 1
            outcome = self.outcomes.pop(0) if self.outcomes else []
        if isinstance(outcome, Exception):
            raise outcome
        assert isinstance(outcome, list)
        return [Delivery(command_bytes=b, receipt=b, source="test") for b in outcome]

    def _release(self, delivery: Delivery) -> None:
        self.released.append(delivery.command_bytes)

    def ack(self, delivery: Delivery) -> None: ...
    def reject(self, delivery: Delivery, reason: str, message: str) -> None: ...
    def extend(self, delivery: Delivery) -> None: ...


def test_polls_only_while_the_daemon_waits_for_work() -> None:
    channel = Scripted([[b"one"], [b"two"]])
    channel.start()
    try:
        time.sleep(0.3)
        assert channel.polls == 0  # nobody asked yet
        assert channel.receive(2.0) is not None
        time.sleep(0.3)
        assert channel.polls == 1  # a command is running: no poll, so nothing waits in a local queue
        delivery = channel.receive(2.0)
        assert delivery is not None and delivery.command_bytes == b"two"
    finally:
        channel.close()


def test_receive_raises_while_polls_fail_then_recovers() -> None:
    channel = Scripted([OSError("endpoint unreachable"), [b"later"]])
    channel.start()
    try:
        with pytest.raises(ChannelUnavailable, match="endpoint unreachable"):
            channel.receive(0.5)
        deadline = time.monotonic() + 5
        got = None
        while got is None and time.monotonic() < deadline:
            try:
                got = channel.receive(0.5)
            except ChannelUnavailable:
                continue
        assert got is not None and got.command_bytes == b"later"  # after a 1 s backoff
    finally:
        channel.close()


def test_operations_are_retried_until_they_work_and_permanent_errors_give_up() -> None:
    channel = Scripted([])
    calls: list[str] = []
    done = threading.Event()

    def flaky() -> None:
        calls.append("flaky")
        if len(calls) < 2:
            raise OSError("timeout")

    class Forbidden(Exception):
        response = {"ResponseMetadata": {"HTTPStatusCode": 403}}

    def forbidden() -> None:
        calls.append("forbidden")
        raise Forbidden("AccessDenied")

    channel.start()
    try:
        channel._schedule(Operation(name="flaky", call=flaky, on_done=done.set))
        channel._schedule(Operation(name="forbidden", call=forbidden, give_up=is_permanent))
        assert done.wait(5)
        time.sleep(0.2)
        assert calls.count("flaky") == 2 and calls.count("forbidden") == 1
        assert channel.pending_operations() == 0
    finally:
        channel.close()


def test_close_gives_back_what_the_daemon_never_took() -> None:
    channel = Scripted([[b"a", b"b"]])
    channel.start()
    assert channel.receive(2.0) is not None
    channel.close()
    assert channel.released == [b"b"]
