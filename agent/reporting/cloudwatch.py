"""CloudWatch Logs through watchtower: the agent's log and every deployment's script output.

Streams in the configured log group (``aws.log_group``)::

    <instance-id>/agent                                   the agent's log lines (the JSON lines of agent.log)
    <deployment-group>/<deployment-id>/<instance-id>      one deployment's hook output, ``<event> [<stream>] <line>``

Shipping never blocks or fails a deployment. Each stream has a bounded queue (``max_queued`` lines); watchtower's
thread sends batches from it. When CloudWatch is slow or down the queue fills and further lines are dropped, and a
batch CloudWatch would not take after watchtower's retries is dropped too; both are counted (:attr:`dropped`) and
the count is logged (:meth:`report_drops`, called with every heartbeat and after each deployment) and put in the
heartbeat. The log group is created on first use when it does not exist (needs ``logs:CreateLogGroup``; create it
beforehand otherwise). The local files (agent.log, scripts.log) always hold everything.

watchtower is imported only when shipping starts. Its private ``_submit_batch`` is wrapped (not replaced) to count
lost batches; checked against watchtower 3.x.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUED = 10_000
AGENT_SEND_INTERVAL = 5.0
SCRIPT_SEND_INTERVAL = 1.0
_GROUP_RETRY = 30.0
_NOISY = ("botocore", "urllib3", "s3transfer", "watchtower")


class _RecordingClient:
    """Wraps a boto3 logs client to remember whether the last PutLogEvents call got through."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.last_put_ok: bool | None = None

    def put_log_events(self, **kwargs: Any) -> Any:
        try:
            response = self._client.put_log_events(**kwargs)
        except Exception:
            self.last_put_ok = False
            raise
        self.last_put_ok = "rejectedLogEventsInfo" not in response
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@functools.lru_cache(maxsize=1)
def _bounded_handler_class() -> Any:
    """watchtower's handler with a bounded queue and drop counting (built once; imports watchtower)."""
    import warnings

    import watchtower

    # watchtower warns through the warnings module on every failed delivery; berth counts and logs drops itself.
    warnings.filterwarnings("ignore", category=watchtower.WatchtowerWarning)

    class Bounded(watchtower.CloudWatchLogHandler):
        max_queued = DEFAULT_MAX_QUEUED
        on_drop: Callable[[int], None] = staticmethod(lambda lines: None)
        ensure_group: Callable[[], bool] = staticmethod(lambda: True)

        def emit(self, record: logging.LogRecord) -> None:
            pending = self.queues.get(self.log_stream_name)
            if pending is not None and pending.qsize() >= self.max_queued:
                self.on_drop(1)
                return
            super().emit(record)  # type: ignore[no-untyped-call]

        def _submit_batch(self, batch: list[Any], log_stream_name: str, max_retries: int = 5) -> None:
            if not batch:
                return
            self.ensure_group()
            recorder: Any = self.cwl_client  # type: ignore[has-type]
            recorder.last_put_ok = None
            super()._submit_batch(batch, log_stream_name, max_retries)  # type: ignore[no-untyped-call]
            if recorder.last_put_ok is not True:
                self.on_drop(len(batch))

    return Bounded


def _handler(
    client: Any, group: str, stream: str, *, send_interval: float, max_queued: int,
    on_drop: Callable[[int], None], ensure_group: Callable[[], bool],
) -> logging.Handler:
    """A watchtower handler for one stream (a name without ``{`` or ``}``), bounded, counting what it drops."""
    handler: Any = _bounded_handler_class()(
        log_group_name=group,
        log_stream_name=stream,
        boto3_client=_RecordingClient(client),
        create_log_group=False,  # done by ensure_group on watchtower's thread: never a network call here
        send_interval=send_interval,
        max_batch_count=1000,
    )
    handler.max_queued = max_queued
    handler.on_drop = on_drop
    handler.ensure_group = ensure_group
    return handler  # type: ignore[no-any-return]


class CloudWatchShipper:
    """Sends the agent log and script output to CloudWatch Logs. ``client_factory`` returns a boto3 logs client."""

    def __init__(
        self,
        client_factory: Callable[[], Any],
        log_group: str,
        instance_id: str,
        *,
        max_queued: int = DEFAULT_MAX_QUEUED,
        agent_send_interval: float = AGENT_SEND_INTERVAL,
        script_send_interval: float = SCRIPT_SEND_INTERVAL,
    ) -> None:
        self._client_factory = client_factory
        self.log_group = log_group
        self.instance_id = instance_id
        self.max_queued = max_queued
        self.agent_send_interval = agent_send_interval
        self.script_send_interval = script_send_interval
        self._lock = threading.Lock()
        self._dropped = 0
        self._reported = 0
        self._group_ok = False
        self._group_next_try = 0.0
        self._group_lock = threading.Lock()
        self._agent_handler: logging.Handler | None = None
        self._deployments: dict[str, logging.Handler] = {}
        self._current: str | None = None
        self._closing: list[threading.Thread] = []

    # ------------------------------------------------------------------------------------------------ life
    def start(self, formatter: logging.Formatter | None = None) -> None:
        """Attach the ``<instance-id>/agent`` stream to the root logger (``formatter``: how agent.log writes)."""
        handler = self._new_handler(f"{self.instance_id}/agent", self.agent_send_interval)
        if formatter is not None:
            handler.setFormatter(formatter)
        handler.addFilter(lambda record: not record.name.startswith(_NOISY))
        self._agent_handler = handler
        logging.getLogger().addHandler(handler)

    def close(self, timeout: float = 5.0) -> None:
        """Flush and stop every stream for up to ``timeout`` s (lines not sent by then are dropped)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            handlers = list(self._deployments.values())
            self._deployments.clear()
            self._current = None
        agent_handler, self._agent_handler = self._agent_handler, None
        if agent_handler is not None:
            logging.getLogger().removeHandler(agent_handler)
            handlers.append(agent_handler)
        for handler in handlers:
            self._close_later(handler)
        for thread in self._closing:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self.report_drops()

    # ----------------------------------------------------------------------------------------- deployments
    def deployment_update(self, deployment_id: str, deployment_group: str, *, final: bool) -> None:
        """Follow the engine's report updates: the first opens the deployment's stream, the final one closes it."""
        with self._lock:
            handler = self._deployments.get(deployment_id)
            if final:
                if handler is not None:
                    del self._deployments[deployment_id]
                if self._current == deployment_id:
                    self._current = None
            elif handler is None:
                stream = f"{deployment_group}/{deployment_id}/{self.instance_id}"
                self._deployments[deployment_id] = self._new_handler(stream, self.script_send_interval)
                self._current = deployment_id
            else:
                self._current = deployment_id
        if final and handler is not None:
            self._close_later(handler)
            self.report_drops()

    def script_line(self, event: str, stream: str, line: str) -> None:
        """One line of hook output of the running deployment (dropped when its queue is full; never blocks)."""
        with self._lock:
            handler = self._deployments.get(self._current) if self._current else None
        if handler is None:
            return
        text = f"{event} [{stream}] {line}" if line else f"{event} [{stream}]"
        record = logging.LogRecord("berth.scripts", logging.INFO, "", 0, text, None, None)
        handler.handle(record)

    # ---------------------------------------------------------------------------------------------- drops
    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped

    def stats(self) -> dict[str, Any]:
        """Fields for the heartbeat."""
        return {"cloudwatch_dropped_lines": self.dropped}

    def report_drops(self) -> None:
        """Log how many lines were dropped since the last call (nothing when none were)."""
        with self._lock:
            new = self._dropped - self._reported
            self._reported = self._dropped
            total = self._dropped
        if new > 0:
            log.warning("CloudWatch Logs is slow or unreachable: %d log line(s) dropped (%d since start); the local "
                        "agent.log and scripts.log files have them all", new, total)

    def _count_drop(self, lines: int) -> None:
        with self._lock:
            self._dropped += lines

    # ------------------------------------------------------------------------------------------- internals
    def _new_handler(self, stream: str, send_interval: float) -> logging.Handler:
        return _handler(self._client_factory(), self.log_group, stream, send_interval=send_interval,
                        max_queued=self.max_queued, on_drop=self._count_drop, ensure_group=self._ensure_group)

    def _ensure_group(self) -> bool:
        """Create the log group once (on a watchtower thread); after a failure, try again at most every 30 s."""
        with self._group_lock:
            if self._group_ok or time.monotonic() < self._group_next_try:
                return self._group_ok
            client = self._client_factory()
            try:
                client.create_log_group(logGroupName=self.log_group)
                self._group_ok = True
            except Exception as exc:  # noqa: BLE001 - a missing permission or an outage must not stop shipping
                code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
                if code == "ResourceAlreadyExistsException":
                    self._group_ok = True
                else:
                    self._group_next_try = time.monotonic() + _GROUP_RETRY
                    log.debug("cannot create CloudWatch log group %s: %s", self.log_group, exc)
            return self._group_ok

    def _close_later(self, handler: logging.Handler) -> None:
        """watchtower's close() waits for its queue to drain: do it off the caller's thread."""
        thread = threading.Thread(target=handler.close, name="berth-cloudwatch-close", daemon=True)
        thread.start()
        self._closing = [t for t in self._closing if t.is_alive()]
        self._closing.append(thread)
