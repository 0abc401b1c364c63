"""The machinery the network channels (SQS, S3 prefix) share: one background thread does every network call.

The daemon's loop thread must never wait on the network: a hung endpoint would stop systemd watchdog pings and
heartbeats. So :meth:`RemoteChannel.receive` only waits on a local queue, and ack/reject/extend only schedule work.
One thread per channel ("berth-<name>-poll") polls for a command when the loop asks for one (``demand``); another
("berth-<name>-ops") carries out the scheduled operations (deletes, moves, visibility changes), retrying failed
ones with capped exponential backoff. Both back off while the service is unreachable.

The thread polls only while the loop waits in :meth:`receive`: it never receives a second command while one
runs, so an SQS message never sits in a local queue while its visibility timeout runs out.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.channels.base import Channel, Delivery

log = logging.getLogger(__name__)

BACKOFF_BASE = 1.0
BACKOFF_CAP = 20.0  # after an outage, polling resumes at most this long after the service is back
_WARN_EVERY = 60.0  # the same failure is logged at most this often


class ChannelUnavailable(Exception):
    """The channel's service did not answer; the daemon backs off and asks again."""


@dataclass
class Operation:
    """A scheduled network call. ``retry`` False: tried once (a later call supersedes it, e.g. an extension)."""

    name: str
    call: Callable[[], None]
    retry: bool = True
    attempts: int = 0
    due: float = 0.0
    on_done: Callable[[], None] | None = None
    give_up: Callable[[BaseException], bool] = field(default=lambda exc: False)


def _backoff(attempt: int) -> float:
    return float(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempt - 1)))


class RemoteChannel(Channel):
    """Base of channels whose polls and acknowledgements are network calls.

    Subclasses implement :meth:`_poll` (one poll; may block up to its own long-poll time; returns deliveries) and
    :meth:`_release` (give back a delivery the loop never took), and schedule their acknowledgements with
    :meth:`_schedule`. ``idle_wait`` is the pause after a poll that found nothing (0 for a long poll).
    """

    name = "remote"

    def __init__(self, *, idle_wait: float, poll_budget: float = 15.0) -> None:
        self.idle_wait = idle_wait
        self.poll_budget = poll_budget  # a poll in flight for longer than this means the service hangs
        self._poll_started: float | None = None
        self._inbox: queue.Queue[Delivery] = queue.Queue()
        self._demand = threading.Event()
        self._wake = threading.Event()  # the poller's
        self._ops_wake = threading.Event()
        self._closing = threading.Event()
        self._ops: list[Operation] = []
        self._ops_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._failures = 0  # consecutive failed polls
        self._error: str | None = None
        self._next_poll = 0.0
        self._last_warned: dict[str, float] = {}
        self.last_success: float | None = None  # time.time() of the last poll that reached the service

    # ------------------------------------------------------------------------------------------ Channel API
    def start(self) -> None:
        """Start the background threads (subclasses prepare their own state first, then call this)."""
        self._threads = [
            threading.Thread(target=self._poll_loop, name=f"berth-{self.name}-poll", daemon=True),
            threading.Thread(target=self._ops_loop, name=f"berth-{self.name}-ops", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def receive(self, timeout: float) -> Delivery | None:
        """The next command, waiting up to ``timeout`` s. Raises :class:`ChannelUnavailable` while polls fail."""
        try:
            return self._inbox.get_nowait()
        except queue.Empty:
            pass
        self._demand.set()
        self._wake.set()
        try:
            return self._inbox.get(timeout=max(0.0, timeout))
        except queue.Empty:
            pass
        error = self._error
        if error is not None:
            raise ChannelUnavailable(error)
        started = self._poll_started
        if started is not None and time.monotonic() - started > self.poll_budget:
            raise ChannelUnavailable(f"no answer from the {self.name} service for {time.monotonic() - started:.0f} s")
        return None

    def close(self) -> None:
        """Stop polling, give back commands the loop never took, and try the pending operations once more."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._wake.set()
        self._ops_wake.set()
        threads, self._threads = self._threads, []
        deadline = time.monotonic() + 2.0
        for thread in threads:  # a long poll in flight cannot be interrupted; the threads are daemons
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._release_inbox()
        deadline = time.monotonic() + 5.0
        with self._ops_lock:
            ops, self._ops = self._ops, []
        for op in ops:
            if self._error is not None or time.monotonic() >= deadline:  # unreachable: do not delay the stop
                log.warning("%s channel: %s not done before stopping; the next start takes care of it", self.name,
                            op.name)
                continue
            self._attempt(op, final=True)

    # ------------------------------------------------------------------------------------------- subclasses
    def _poll(self) -> list[Delivery]:
        raise NotImplementedError

    def _release(self, delivery: Delivery) -> None:
        """Give back a delivery that was never handled (the default: nothing; it is redelivered in time)."""

    def _schedule(self, op: Operation) -> None:
        """Run ``op`` on the operations thread at once; a retried op waits its backoff."""
        with self._ops_lock:
            if not op.retry:  # a newer one-shot operation of the same name replaces an older one not yet run
                self._ops = [o for o in self._ops if o.retry or o.name != op.name]
            self._ops.append(op)
        self._ops_wake.set()

    def pending_operations(self) -> int:
        with self._ops_lock:
            return len(self._ops)

    # ------------------------------------------------------------------------------------------ the threads
    def _poll_loop(self) -> None:
        while not self._closing.is_set():
            now = time.monotonic()
            if self._demand.is_set() and self._inbox.empty() and now >= self._next_poll:
                self._poll_once()
                continue
            wait = self._next_poll - now if self._demand.is_set() else 1.0
            self._wake.wait(timeout=max(0.01, min(wait, 1.0)))
            self._wake.clear()
        self._release_inbox()

    def _ops_loop(self) -> None:
        while not self._closing.is_set():
            self._run_ops()
            now = time.monotonic()
            with self._ops_lock:
                waits = [op.due - now for op in self._ops]
            self._ops_wake.wait(timeout=max(0.01, min([1.0, *waits])))
            self._ops_wake.clear()

    def _poll_once(self) -> None:
        self._poll_started = time.monotonic()
        try:
            deliveries = self._poll()
        except Exception as exc:  # noqa: BLE001 - any failure of the service: back off, never die
            self._poll_started = None
            self._failures += 1
            delay = _backoff(self._failures)
            self._error = f"{type(exc).__name__}: {exc}"
            self._next_poll = time.monotonic() + delay
            self._warn("poll", f"{self.name} channel: poll failed ({self._error}); retrying in {delay:.0f} s")
            return
        self._poll_started = None
        if self._failures:
            log.info("%s channel: the service answers again after %d failed poll(s)", self.name, self._failures)
            with self._ops_lock:  # operations waiting out their backoff are likely to work now
                for op in self._ops:
                    op.due = 0.0
            self._ops_wake.set()
        self._failures = 0
        self._error = None
        self.last_success = time.time()
        if self._closing.is_set():
            for delivery in deliveries:
                self._release(delivery)
            return
        if deliveries:
            self._demand.clear()  # before handing over, so the loop's next receive() sets it again
            for delivery in deliveries:
                self._inbox.put(delivery)
        else:
            self._next_poll = time.monotonic() + self.idle_wait

    def _run_ops(self) -> None:
        now = time.monotonic()
        with self._ops_lock:
            due = [op for op in self._ops if op.due <= now]
            self._ops = [op for op in self._ops if op.due > now]
        for op in due:
            if self._closing.is_set():
                with self._ops_lock:
                    self._ops.append(op)
                continue
            self._attempt(op, final=False)

    def _attempt(self, op: Operation, *, final: bool) -> None:
        op.attempts += 1
        try:
            op.call()
        except Exception as exc:  # noqa: BLE001 - network and service errors: retried or given up, never raised
            if op.give_up(exc):
                log.warning("%s channel: %s failed and is not retried: %s", self.name, op.name, exc)
                return
            if not op.retry or final:
                self._warn(op.name, f"{self.name} channel: {op.name} failed: {exc}")
                return
            delay = _backoff(op.attempts)
            op.due = time.monotonic() + delay
            self._warn(op.name, f"{self.name} channel: {op.name} failed ({exc}); retrying in {delay:.0f} s")
            with self._ops_lock:
                self._ops.append(op)
            return
        if op.on_done is not None:
            op.on_done()

    def _release_inbox(self) -> None:
        while True:
            try:
                delivery = self._inbox.get_nowait()
            except queue.Empty:
                return
            try:
                self._release(delivery)
            except Exception as exc:  # noqa: BLE001 - best effort: the service redelivers in time anyway
                log.warning("%s channel: could not give back %s: %s", self.name, delivery.source, exc)

    def _warn(self, key: str, message: str) -> None:
        """Log ``message`` unless the same kind of failure was logged less than a minute ago."""
        now = time.monotonic()
        if now - self._last_warned.get(key, -_WARN_EVERY) >= _WARN_EVERY:
            self._last_warned[key] = now
            log.warning(message)
        else:
            log.debug(message)


def client_error_status(exc: BaseException) -> int:
    """The HTTP status of a botocore ClientError (0 for anything else: a network error)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return 0
    meta = response.get("ResponseMetadata") or {}
    try:
        return int(meta.get("HTTPStatusCode") or 0)
    except (TypeError, ValueError):
        return 0


def is_permanent(exc: BaseException) -> bool:
    """A client error that retrying cannot fix (4xx other than throttling and timeouts)."""
    status = client_error_status(exc)
    return 400 <= status < 500 and status not in (408, 429)
