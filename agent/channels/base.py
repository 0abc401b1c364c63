"""What the daemon needs from a command channel (spool now; SQS and S3 prefix later) and from a report sink.

A channel only moves bytes: it never parses a command. The daemon parses, judges (idempotency, expiry), runs and
reports, then tells the channel the command is handled (:meth:`Channel.ack`) or refused (:meth:`Channel.reject`).
Delivery is at-least-once: after a crash the same command may be delivered again, and the daemon's idempotency
store makes sure it is not executed twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Delivery:
    """One command as received. ``receipt`` is the channel's own handle (a file path, an SQS receipt handle)."""

    command_bytes: bytes
    receipt: Any
    source: str  # for logs and reasons: a file name, a message id, an object key


class Channel(Protocol):
    """A source of commands. Methods are called from the daemon's loop thread only."""

    def start(self) -> None:
        """Prepare to receive (open watches, connect). Called once before the first :meth:`receive`."""

    def receive(self, timeout: float) -> Delivery | None:
        """Return the next command, blocking up to ``timeout`` seconds; wakes early when new work arrives."""

    def ack(self, delivery: Delivery) -> None:
        """The command is fully handled (its final report is written): never deliver it again."""

    def reject(self, delivery: Delivery, reason: str, message: str) -> None:
        """The command was refused (malformed, invalid, expired...): set it aside with the reason."""

    def extend(self, delivery: Delivery) -> None:
        """Keep-alive while the command runs (an SQS visibility extension); a no-op where not needed."""

    def close(self) -> None:
        """Release watches and connections. Safe to call twice."""


class ReportSink(Protocol):
    """Where reports go; :meth:`publish` is called after every event with the whole report (a rewrite)."""

    def publish(self, report: dict[str, Any]) -> None:
        """Store or send ``report`` (a ``Report.to_dict()``), replacing the previous one of that deployment."""
