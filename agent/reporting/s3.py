"""Reports and heartbeats in S3, through a durable outbox on disk (docs/protocol.md, "AWS channels").

Keys, under ``s3://BUCKET/PREFIX/``::

    deployments/<deployment-id>/instances/<instance-id>.json   the report, rewritten after every event
    agents/<instance-id>.json                                  the heartbeat, every heartbeat_interval

:meth:`S3Reporter.publish` never waits for S3: it writes the report to ``<outbox>/<deployment-id>.json``
(atomically, fsync'd; a newer report of the same deployment replaces the older, which then never needs sending)
and wakes the uploader thread. The uploader sends what the outbox holds, oldest first, and removes a file only if
it was not replaced meanwhile. While S3 is unreachable it retries with capped exponential backoff; the files wait
on disk, so no final report is lost, also across a restart: the next start sends what is left.

Heartbeats are not kept on disk: only the newest matters, and the next one follows within an interval.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import __version__
from agent.fsutil import atomic_write_bytes
from agent.model.report import utc_now
from agent.paths import check_name

log = logging.getLogger(__name__)

HEARTBEAT_SCHEMA_VERSION = 1
BACKOFF_CAP = 20.0
_WARN_EVERY = 60.0


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (``""`` or ending in ``/``); :meth:`parse` reads ``s3://bucket/prefix``."""

    bucket: str
    prefix: str = ""

    def __post_init__(self) -> None:
        stripped = self.prefix.strip("/")
        object.__setattr__(self, "prefix", f"{stripped}/" if stripped else "")

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket`` or ``s3://bucket/some/prefix``; raises ValueError saying what is wrong."""
        if not url.startswith("s3://"):
            raise ValueError(f"{url!r} is not an s3:// URL; write s3://BUCKET/PREFIX")
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"{url!r} names no bucket; write s3://BUCKET/PREFIX")
        return cls(bucket, prefix)

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def report_key(self, deployment_id: str, instance_id: str) -> str:
        return f"{self.prefix}deployments/{deployment_id}/instances/{instance_id}.json"

    def heartbeat_key(self, instance_id: str) -> str:
        return f"{self.prefix}agents/{instance_id}.json"


class Outbox:
    """Newest-wins files, one per deployment; safe between threads of one process (one lock)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` as ``name`` durably (replacing what was there). Raises OSError when the disk refuses."""
        with self._lock:
            atomic_write_bytes(self.folder / f"{name}.json", data, mode=0o640)

    def names(self) -> list[str]:
        """Stored names, oldest first."""
        entries = []
        try:
            with os.scandir(self.folder) as it:
                for entry in it:
                    if entry.name.endswith(".json") and not entry.name.startswith("."):
                        try:
                            entries.append((entry.stat().st_mtime_ns, entry.name[: -len(".json")]))
                        except FileNotFoundError:
                            continue
        except FileNotFoundError:
            return []
        return [name for _, name in sorted(entries)]

    def read(self, name: str) -> tuple[bytes, tuple[int, int]] | None:
        """The stored bytes and a token that changes whenever the file is replaced; ``None`` when absent."""
        path = self.folder / f"{name}.json"
        with self._lock:
            try:
                st = os.stat(path)
                return path.read_bytes(), (st.st_ino, st.st_mtime_ns)
            except FileNotFoundError:
                return None

    def remove_if_unchanged(self, name: str, token: tuple[int, int]) -> bool:
        """Delete ``name`` unless it was replaced since :meth:`read` gave ``token``; True when deleted."""
        path = self.folder / f"{name}.json"
        with self._lock:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return False
            if (st.st_ino, st.st_mtime_ns) != token:
                return False
            path.unlink()
            return True


class S3Reporter:
    """Report sink (the daemon's ReportSink protocol) and heartbeat writer for S3.

    Call :meth:`start` once before the first :meth:`publish`, and :meth:`close` at the end.

    ``client_factory`` returns a boto3 S3 client; it is only called on the uploader thread. ``free_space`` gives
    the free bytes for heartbeats (default: the filesystem of the outbox). ``extra`` adds fields to every
    heartbeat (for instance CloudWatch drop counts).
    """

    def __init__(
        self,
        client_factory: Callable[[], Any],
        location: S3Location,
        instance_id: str,
        outbox_dir: Path,
        *,
        free_space: Callable[[], int] | None = None,
        extra: Callable[[], Mapping[str, Any]] | None = None,
        backoff_cap: float = BACKOFF_CAP,
    ) -> None:
        self._client_factory = client_factory
        self.location = location
        self.instance_id = instance_id
        self.outbox = Outbox(outbox_dir)
        self._free_space = free_space or (lambda: shutil.disk_usage(outbox_dir).free)
        self._extra = extra
        self.backoff_cap = backoff_cap
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._heartbeat: bytes | None = None
        self._heartbeat_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._last_warned = -_WARN_EVERY
        self.last_error: str | None = None
        self.uploaded = 0

    # ------------------------------------------------------------------------------------------------ life
    def start(self) -> None:
        """Create the outbox and start the uploader; reports left from before a restart are sent first."""
        self.outbox.folder.mkdir(mode=0o750, parents=True, exist_ok=True)
        left = self.outbox.names()
        if left:
            log.info("%d report(s) from an earlier run are waiting to be sent to %s", len(left),
                     self.location.url(self.location.prefix))
        self._thread = threading.Thread(target=self._run, name="berth-s3-reports", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Try to send what is waiting for up to ``timeout`` s, then stop; what is left stays in the outbox."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        deadline = time.monotonic() + timeout
        self._retry_at = 0.0
        while time.monotonic() < deadline and self.pending() and thread.is_alive():
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        thread.join(timeout=max(0.1, deadline - time.monotonic()))
        left = len(self.outbox.names())
        if left:
            log.warning("%d report(s) not yet in S3 stay in %s and are sent at the next start", left,
                        self.outbox.folder)

    def pending(self) -> int:
        """Reports (and a heartbeat) not yet in S3."""
        with self._heartbeat_lock:
            beat = 1 if self._heartbeat is not None else 0
        return len(self.outbox.names()) + beat

    # ------------------------------------------------------------------------------------------ publishing
    def publish(self, report: dict[str, Any]) -> None:
        """Store the report durably in the outbox and return; the uploader sends it. Raises for an unsafe id."""
        deployment_id = check_name("deployment id", str(report.get("deployment_id", "")))
        self.outbox.put(deployment_id, json.dumps(report, indent=2).encode() + b"\n")
        self._wake.set()

    def heartbeat(self, status: Mapping[str, Any]) -> None:
        """The daemon's heartbeat callback: queue ``agents/<instance-id>.json`` for upload (never blocks)."""
        doc = {
            "schema_version": HEARTBEAT_SCHEMA_VERSION,
            "instance_id": self.instance_id,
            "agent_version": status.get("version", __version__),
            "state": status.get("state"),
            "deployment_id": status.get("deployment_id"),
            "application": status.get("application"),
            "deployment_group": status.get("deployment_group"),
            "event": status.get("event"),
            "last_poll_at": status.get("last_poll_at"),
            "last_error": status.get("last_error"),
            "started_at": status.get("started_at"),
            "deployments_run": status.get("deployments_run"),
            "pid": status.get("pid"),
            "free_disk_bytes": self._free_disk(),
            "reports_waiting": len(self.outbox.names()),
            "sent_at": utc_now(),
        }
        if self._extra is not None:
            doc.update(self._extra())
        with self._heartbeat_lock:
            self._heartbeat = json.dumps(doc, indent=2).encode() + b"\n"
        self._wake.set()

    def _free_disk(self) -> int | None:
        try:
            return int(self._free_space())
        except OSError:
            return None

    # ---------------------------------------------------------------------------------------------- upload
    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                self._wake.wait(timeout=min(wait, 1.0))
                self._wake.clear()
                continue
            try:
                sent = self._send_all()
            except Exception as exc:  # noqa: BLE001 - S3 unreachable or refusing: back off, keep the files
                self._failed(exc)
                continue
            if self._failures:
                log.info("S3 reachable again: %d upload(s) after %d failed attempt(s)", sent, self._failures)
            self._failures = 0
            self.last_error = None
            if not self._has_work():
                self._wake.wait(timeout=1.0)
                self._wake.clear()

    def _has_work(self) -> bool:
        with self._heartbeat_lock:
            if self._heartbeat is not None:
                return True
        return bool(self.outbox.names())

    def _send_all(self) -> int:
        """Send every waiting report, then the heartbeat; raises on the first failure (the rest wait)."""
        sent = 0
        for name in self.outbox.names():
            entry = self.outbox.read(name)
            if entry is None:
                continue
            data, token = entry
            self._put(self.location.report_key(name, self.instance_id), data)
            self.outbox.remove_if_unchanged(name, token)
            sent += 1
        with self._heartbeat_lock:
            beat = self._heartbeat
        if beat is not None:
            self._put(self.location.heartbeat_key(self.instance_id), beat)
            with self._heartbeat_lock:
                if self._heartbeat is beat:
                    self._heartbeat = None
            sent += 1
        self.uploaded += sent
        return sent

    def _put(self, key: str, data: bytes) -> None:
        self._client_factory().put_object(Bucket=self.location.bucket, Key=key, Body=data,
                                          ContentType="application/json")

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        delay = min(self.backoff_cap, 2.0 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        self.last_error = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        message = (f"cannot send reports to {self.location.url(self.location.prefix)} ({self.last_error}); "
                   f"{len(self.outbox.names())} waiting on disk, retrying in {delay:.0f} s")
        if now - self._last_warned >= _WARN_EVERY:
            self._last_warned = now
            log.warning(message)
        else:
            log.debug(message)
