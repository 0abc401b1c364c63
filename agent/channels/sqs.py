"""The SQS channel: one command per message (docs/protocol.md, "AWS channels").

* Long polling: the background thread asks SQS with ``WaitTimeSeconds`` (20 s by default) whenever the daemon
  waits for a command, so an idle agent makes three requests a minute and a new message arrives at once.
* A received message is hidden for ``visibility_timeout`` seconds (120 by default); while its deployment runs, the
  daemon calls :meth:`SqsChannel.extend` every 10 s and the visibility is pushed out again, so no other receive
  sees it.
* :meth:`SqsChannel.ack` deletes the message. The daemon acknowledges only after the final report was handed to
  every report sink, and the S3 sink stores it durably on disk (the outbox) before it returns: a deleted message
  always has its report on its way, even across a restart. A delete that fails (SQS unreachable) is retried; if the
  message reappears first, the idempotency store answers it with the earlier report.
* :meth:`SqsChannel.reject` leaves the message alone: it reappears after its visibility timeout and, after the
  queue's ``maxReceiveCount``, SQS moves it to the dead-letter queue (configure a redrive policy; see the docs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.channels.base import Delivery
from agent.channels.remote import Operation, RemoteChannel, is_permanent

log = logging.getLogger(__name__)

DEFAULT_WAIT_TIME = 20
DEFAULT_VISIBILITY_TIMEOUT = 120
# The daemon extends a running command's lease every 10 s; a shorter visibility leaves too little slack.
MIN_SAFE_VISIBILITY = 30


@dataclass(frozen=True)
class SqsReceipt:
    """What :class:`SqsChannel` needs to acknowledge one received message."""

    handle: str
    message_id: str
    receive_count: int


class SqsChannel(RemoteChannel):
    """Commands from one SQS queue (standard or FIFO).

    ``client_factory`` returns a boto3 SQS client (``AwsContext.client_factory("sqs")``); it is called on the
    background thread, so creating the client never delays the daemon. The client's read timeout must exceed
    ``wait_time_seconds`` (agent.aws uses 30 s).
    """

    name = "sqs"

    def __init__(
        self,
        client_factory: Callable[[], Any],
        queue_url: str,
        *,
        wait_time_seconds: int = DEFAULT_WAIT_TIME,
        visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT,
    ) -> None:
        wait = max(0, min(20, int(wait_time_seconds)))
        super().__init__(idle_wait=0.0, poll_budget=wait + 15.0)
        self._client_factory = client_factory
        self.queue_url = queue_url
        self.wait_time_seconds = wait
        self.visibility_timeout = int(visibility_timeout)
        if self.visibility_timeout < MIN_SAFE_VISIBILITY:
            log.warning(
                "sqs channel: visibility_timeout %d s is short: a deployment's message is extended only every 10 s;"
                " use %d s or more unless you know why", self.visibility_timeout, MIN_SAFE_VISIBILITY,
            )

    def _client(self) -> Any:
        return self._client_factory()

    # ------------------------------------------------------------------------------------------ Channel API
    def ack(self, delivery: Delivery) -> None:
        """Delete the message (on the background thread; retried while SQS is unreachable)."""
        receipt: SqsReceipt = delivery.receipt

        def delete() -> None:
            self._client().delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt.handle)

        self._schedule(Operation(
            name=f"delete of message {receipt.message_id}", call=delete, give_up=is_permanent,
            on_done=lambda: log.debug("sqs message %s deleted", receipt.message_id),
        ))

    def reject(self, delivery: Delivery, reason: str, message: str) -> None:
        """Leave the message to the queue's redrive policy: it reappears later and ends in the dead-letter queue."""
        receipt: SqsReceipt = delivery.receipt
        log.warning(
            "rejected sqs message %s (received %d time(s)): %s: %s; it is left to the queue's dead-letter policy",
            receipt.message_id, receipt.receive_count, reason, " ".join(message.split()),
        )

    def extend(self, delivery: Delivery) -> None:
        """Hide the message for another ``visibility_timeout`` seconds, counted from now."""
        receipt: SqsReceipt = delivery.receipt

        def change() -> None:
            self._client().change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt.handle, VisibilityTimeout=self.visibility_timeout,
            )

        self._schedule(Operation(name=f"extension of message {receipt.message_id}", call=change, retry=False))

    # ------------------------------------------------------------------------------------------- internals
    def _poll(self) -> list[Delivery]:
        response = self._client().receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=self.wait_time_seconds,
            VisibilityTimeout=self.visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        deliveries = []
        for message in response.get("Messages") or []:
            attributes = message.get("Attributes") or {}
            try:
                count = int(attributes.get("ApproximateReceiveCount", "1"))
            except ValueError:
                count = 1
            receipt = SqsReceipt(handle=message["ReceiptHandle"], message_id=message["MessageId"],
                                 receive_count=count)
            body = message.get("Body") or ""
            # SQS bodies are text; encode with surrogatepass so that odd bytes still reach the parser (and are
            # rejected there as not UTF-8) instead of failing here.
            data = body.encode("utf-8", "surrogatepass")
            log.info("received sqs message %s (receive %d)", receipt.message_id, count)
            deliveries.append(Delivery(command_bytes=data, receipt=receipt, source=f"sqs message {receipt.message_id}"))
        return deliveries

    def _release(self, delivery: Delivery) -> None:
        """A message received while the agent was stopping becomes visible again at once."""
        receipt: SqsReceipt = delivery.receipt
        self._client().change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=receipt.handle, VisibilityTimeout=0,
        )
