"""The agent's run loop: receive commands, run them one at a time with the engine, report, stop gracefully.

Signal handlers only set flags. The first SIGTERM/SIGINT is a warm stop: no new command is taken and the running
deployment may finish within ``shutdown_grace``, after which it is cancelled (its hook process group is killed and
the event reported failed with "agent stopping"). A second signal cancels at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import FrameType
from typing import Any

from agent import __version__
from agent.channels.base import Channel, Delivery, ReportSink
from agent.config import AgentConfig
from agent.daemon.recovery import recover_interrupted
from agent.daemon.sdnotify import SdNotifier
from agent.daemon.seen import SeenCommand, SeenCommands
from agent.daemon.status import write_status
from agent.engine.deployment import DeploymentRequest, Engine, LineCallback, UpdateCallback
from agent.errors import BerthError
from agent.logs import bind_deployment, deployments_log
from agent.model.command import Command, CommandRejected, is_expired, parse_command, rejection_report
from agent.model.report import FAILED, SUCCEEDED, Report, utc_now

log = logging.getLogger(__name__)

EngineFactory = Callable[[UpdateCallback, LineCallback], Engine]


@dataclass
class Backoff:
    """Capped exponential backoff for channel errors, reset on success."""

    base: float = 1.0
    cap: float = 60.0
    _next: float = field(default=0.0, init=False)

    def reset(self) -> None:
        self._next = 0.0

    def next(self) -> float:
        self._next = self.base if self._next == 0 else min(self.cap, self._next * 2)
        return self._next


class Agent:
    """Runs commands from one channel until stopped. Construct with concrete parts; ``run`` blocks."""

    def __init__(
        self,
        *,
        config: AgentConfig,
        engine_factory: EngineFactory,
        channel: Channel,
        sinks: Sequence[ReportSink],
        instance_id: str,
        notifier: SdNotifier | None = None,
        heartbeat: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = config
        self.channel = channel
        self.sinks = list(sinks)
        self.instance_id = instance_id
        self.notifier = notifier or SdNotifier()
        self.heartbeat = heartbeat
        self.engine = engine_factory(self._on_update, self._on_line)
        self.seen = SeenCommands(self.engine.settings.paths.commands_dir)
        self.backoff = Backoff(cap=max(1.0, min(60.0, config.heartbeat_interval)))
        self._stop = threading.Event()
        self._cold = threading.Event()
        self._cancel = threading.Event()
        self._status: dict[str, Any] = {
            "state": "starting", "version": __version__, "pid": os.getpid(), "instance_id": instance_id,
            "started_at": utc_now(), "deployment_id": None, "application": None, "deployment_group": None,
            "event": None, "last_poll_at": None, "last_error": None, "deployments_run": 0,
        }
        self._status_written = 0.0
        self._last_watchdog = 0.0
        self._last_heartbeat = 0.0
        self._last_drift = time.monotonic()
        self._watchdog_every = self.notifier.watchdog_interval()

    # --------------------------------------------------------------------------------------------- signals
    def request_stop(self, *_: Any) -> None:
        """First call: warm stop. Second call: cold stop (cancel the running deployment now)."""
        if self._stop.is_set():
            self._cold.set()
            self._cancel.set()
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # ------------------------------------------------------------------------------------------------ loop
    def run(self, *, once: bool = False) -> int:
        """Recover, announce READY, then take commands until stopped (``once``: until none is waiting)."""
        paths = self.engine.settings.paths
        paths.root.mkdir(parents=True, exist_ok=True)
        for report in recover_interrupted(self.engine.store, kill_grace=self.config.hook_kill_grace):
            report.extra.setdefault("instance_id", self.instance_id)
            report.extra.setdefault("agent_version", __version__)
            self._publish(report.to_dict())
        self.seen.prune()
        self.channel.start()
        self._set_status(state="idle", force=True)
        self.notifier.ready()
        self.notifier.status("idle: waiting for commands")
        log.info("agent started", extra={"instance_id": self.instance_id, "version": __version__})
        try:
            while not self._stop.is_set():
                self._tick()
                try:
                    delivery = self.channel.receive(timeout=self._wait_time())
                    self.backoff.reset()
                    self._set_status(last_poll_at=utc_now(), last_error=None)
                except Exception as exc:  # noqa: BLE001 - loop boundary: a channel error must not kill the agent
                    delay = self.backoff.next()
                    log.warning("channel error, retrying in %.1fs: %s", delay, exc)
                    self._set_status(last_error=f"{type(exc).__name__}: {exc}", force=True)
                    self._sleep(delay)
                    continue
                if delivery is None:
                    if once:
                        break
                    continue
                self._handle(delivery)
        finally:
            self.notifier.stopping()
            self._set_status(state="stopped", deployment_id=None, event=None, force=True)
            log.info("agent stopped")  # before close(): the channel may ship this line (CloudWatch)
            self.channel.close()
        return 0

    def _wait_time(self) -> float:
        wait = self.config.poll_interval
        if self._watchdog_every:
            wait = min(wait, self._watchdog_every)
        return max(0.05, min(wait, 1.0))

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            self._tick()
            self._stop.wait(min(0.5, max(0.0, deadline - time.monotonic())))

    def _tick(self) -> None:
        """Housekeeping between waits: watchdog pings, status file, heartbeat."""
        now = time.monotonic()
        if self._watchdog_every and now - self._last_watchdog >= self._watchdog_every:
            self.notifier.watchdog()
            self._last_watchdog = now
        if now - self._status_written >= 5.0:
            self._write_status()
        interval = self.config.drift_check_interval
        if interval and now - self._last_drift >= interval and self._status.get("state") == "idle":
            self._last_drift = now
            self._check_drift()
        if self.heartbeat is not None and now - self._last_heartbeat >= self.config.heartbeat_interval:
            self._last_heartbeat = now
            try:
                self.heartbeat(dict(self._status))
            except Exception as exc:  # noqa: BLE001 - heartbeats are best effort
                log.warning("heartbeat failed: %s", exc)

    def _check_drift(self) -> None:
        """The periodic drift check (``drift_check_interval``): its summary goes into status and heartbeat."""
        from agent.engine.verify import verify_all

        try:
            drift = verify_all(self.engine.store)
        except Exception as exc:  # noqa: BLE001 - housekeeping must not stop the agent
            log.warning("drift check failed: %s", exc)
            return
        drift["checked_at"] = utc_now()
        if not drift["clean"]:
            log.warning("drift found: %s", drift["summary"])
        self._set_status(drift=drift, force=True)

    # -------------------------------------------------------------------------------------------- commands
    def _handle(self, delivery: Delivery) -> None:
        try:
            command = parse_command(delivery.command_bytes)
        except CommandRejected as rej:
            self._reject(delivery, rej.partial, rej.reason, rej.message)
            return
        earlier = self.seen.get(command.command_id)
        if earlier is not None:
            self._reemit(delivery, earlier)
            return
        if is_expired(command, datetime.now(timezone.utc)):
            self._reject(delivery, command.to_dict(), "CommandExpired",
                         f"the command expired at {command.expires_at} before this agent received it")
            return
        self.seen.add(SeenCommand(command.command_id, command.deployment_id, command.application,
                                  command.deployment_group, command.type))
        with bind_deployment(command.deployment_id):
            self._run_command(delivery, command)
        self.channel.ack(delivery)

    def _run_command(self, delivery: Delivery, command: Command) -> None:
        extra = {
            "instance_id": self.instance_id, "agent_version": __version__, "command_id": command.command_id,
            "command_type": command.type,
        }
        self._set_status(state="deploying", deployment_id=command.deployment_id, application=command.application,
                         deployment_group=command.deployment_group, event=None, force=True)
        self.notifier.status(f"deploying {command.deployment_id} ({command.application}/{command.deployment_group})")
        try:
            report = self._in_worker(delivery, lambda: self._execute(command, extra))
        except BerthError as exc:  # refused before it could run (e.g. nothing to roll back to)
            report = self._rejection(command.to_dict(), exc.reason, str(exc)) or {}
        except Exception as exc:
            log.exception("deployment %s crashed the engine", command.deployment_id)
            report = self._rejection(command.to_dict(), "InternalError", f"{type(exc).__name__}: {exc}") or {}
        if report:
            self._publish(report)
        self._log_deployment(report)
        self._status["deployments_run"] += 1
        self._set_status(state="idle", deployment_id=None, application=None, deployment_group=None, event=None,
                         force=True)
        self.notifier.status("idle: waiting for commands")
        log.info("deployment %s finished: %s", command.deployment_id, report.get("status"))

    def _execute(self, command: Command, extra: dict[str, Any]) -> dict[str, Any]:
        if command.type == "rollback":
            return self.engine.rollback(
                command.application, command.deployment_group, deployment_id=command.deployment_id,
                to=command.rollback_to, report_extra=extra, cancel=self._cancel,
            ).to_dict()
        if command.revision is None:
            raise BerthError("a deploy or plan command needs a revision")
        request = DeploymentRequest(
            deployment_id=command.deployment_id,
            application=command.application,
            deployment_group=command.deployment_group,
            revision=command.revision,
            events=command.events,
            file_exists_behavior=command.file_exists_behavior,
            ignore_application_stop_failures=command.ignore_application_stop_failures,
            appspec_filename=command.appspec_filename,
            command_id=command.command_id,
            with_traffic=command.deployment_type == "blue_green",
            report_extra=extra,
        )
        if command.type == "plan":
            from agent.engine.plan import plan_deployment

            plan = plan_deployment(self.engine, request)
            report = Report(command.deployment_id, command.application, command.deployment_group,
                            revision=plan["revision"], status=SUCCEEDED if plan["would_succeed"] else FAILED,
                            started_at=utc_now(), extra={**extra, "plan": plan})
            report.ended_at = utc_now()
            doc = report.to_dict()
            self.engine.store.write_report(command.application, command.deployment_group, command.deployment_id, doc)
            return doc
        return self.engine.deploy(request, cancel=self._cancel).to_dict()

    def _in_worker(self, delivery: Delivery, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run ``fn`` in a worker thread while this thread pings the watchdog and watches for stop requests."""
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the loop thread
                box["error"] = exc

        worker = threading.Thread(target=work, name="berth-deployment", daemon=True)
        self._cancel.clear()
        worker.start()
        grace_deadline: float | None = None
        last_extend = time.monotonic()
        while worker.is_alive():
            worker.join(timeout=self._wait_time())
            self._tick()
            now = time.monotonic()
            if now - last_extend >= 10.0:
                last_extend = now
                try:
                    self.channel.extend(delivery)
                except Exception as exc:  # noqa: BLE001 - keep-alive is best effort
                    log.warning("could not extend the command's lease: %s", exc)
            if self._stop.is_set() and grace_deadline is None:
                grace_deadline = now + self.config.shutdown_grace
                self._set_status(state="stopping", force=True)
                self.notifier.status("stopping: waiting for the running deployment to finish")
                log.warning("stop requested: letting the deployment finish for up to %.0fs",
                            self.config.shutdown_grace)
            if self._cold.is_set() or (grace_deadline is not None and now >= grace_deadline):
                self._cancel.set()
        if "error" in box:
            raise box["error"]
        value: dict[str, Any] = box["value"]
        return value

    # ------------------------------------------------------------------------------------------- reporting
    def _log_deployment(self, report: dict[str, Any]) -> None:
        """One line per finished deployment in deployments.log (the aggregated history operators grep)."""
        failed = next((ev for ev in report.get("events", []) if ev.get("status") == FAILED), None)
        summary = {
            "deployment_id": report.get("deployment_id"), "command_id": report.get("command_id"),
            "application": report.get("application"), "deployment_group": report.get("deployment_group"),
            "status": report.get("status"), "started_at": report.get("started_at"),
            "ended_at": report.get("ended_at"), "revision": report.get("revision"),
            "failed_event": failed.get("name") if failed else None,
            "error": (failed.get("diagnostics") or {}).get("error_name") if failed else report.get("reason"),
            "rolled_back_to": report.get("rolled_back_to"),
        }
        try:
            deployments_log(self.config.log_dir).info(summary)
        except OSError as exc:
            log.warning("cannot write deployments.log: %s", exc)

    def _on_update(self, report: Report) -> None:
        current = next((ev.name for ev in report.events if ev.status == "InProgress"), None)
        self._set_status(event=current)
        if current:
            self.notifier.status(f"deploying {report.deployment_id}: {current}")
        self._publish(report.to_dict())

    def _on_line(self, event: str, stream: str, line: str) -> None:
        log.debug("%s [%s] %s", event, stream, line)

    def _publish(self, report: dict[str, Any]) -> None:
        for sink in self.sinks:
            try:
                sink.publish(report)
            except Exception as exc:  # noqa: BLE001 - one broken sink must not stop the deployment
                log.warning("report sink %s failed: %s", type(sink).__name__, exc)

    def _rejection(self, ids: dict[str, Any], reason: str, message: str) -> dict[str, Any] | None:
        revision = ids.get("revision")
        return rejection_report(ids, reason, message, now=utc_now(), instance_id=self.instance_id,
                                agent_version=__version__, revision=revision if isinstance(revision, dict) else None)

    def _reject(self, delivery: Delivery, partial: dict[str, Any], reason: str, message: str) -> None:
        log.warning("command rejected (%s): %s", reason, message)
        report = self._rejection(partial, reason, message)
        if report is not None:
            self._publish(report)
        self.channel.reject(delivery, reason, message)

    def _reemit(self, delivery: Delivery, earlier: SeenCommand) -> None:
        """A command seen before is never executed twice: its earlier report is published again."""
        doc = self.engine.store.read_report(earlier.application, earlier.deployment_group, earlier.deployment_id)
        log.info("command %s was seen before (deployment %s): re-emitting its report",
                 earlier.command_id, earlier.deployment_id)
        if doc is not None:
            self._publish(doc)
        self.channel.ack(delivery)

    # ---------------------------------------------------------------------------------------------- status
    def _set_status(self, *, force: bool = False, **fields: Any) -> None:
        changed = any(self._status.get(k) != v for k, v in fields.items() if k != "last_poll_at")
        self._status.update(fields)
        if force or changed:
            self._write_status()

    def _write_status(self) -> None:
        self._status_written = time.monotonic()
        try:
            write_status(self.engine.settings.paths.status_file, dict(self._status))
        except OSError as exc:
            log.warning("cannot write the status file: %s", exc)

    @property
    def status(self) -> dict[str, Any]:
        return dict(self._status)
