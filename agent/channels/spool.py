"""The spool channel: commands are JSON files dropped into a local folder (docs/protocol.md, "Spool channel").

Layout of the spool folder (default ``<root>/spool``)::

    incoming/     clients write ``.<name>.tmp`` then rename it to ``<name>.json`` here (dotfiles and other
                  names are ignored, so a half-written file is never read)
    processing/   a command claimed by the agent (os.rename from incoming/: two agents never both get one)
    rejected/     refused commands: ``<name>.json`` and ``<name>.reason`` (one line: ``<Reason>: <message>``)
    reports/      ``<deployment_id>.json``, rewritten atomically after every event
    done/         acknowledged commands, the newest 200 kept

Whoever can write to incoming/ runs code as the agent's user: :func:`check_spool_permissions` lists what is
unsafe, and the daemon refuses to start while the list is not empty.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import pwd
import stat
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.channels.base import Channel, Delivery, ReportSink
from agent.errors import StateError, UsageError
from agent.fsutil import atomic_write_bytes
from agent.model.command import MALFORMED, MAX_COMMAND_BYTES
from agent.paths import check_name

if TYPE_CHECKING:
    from watchdog.events import FileSystemEvent
    from watchdog.observers.api import BaseObserver

log = logging.getLogger(__name__)

INCOMING, PROCESSING, REJECTED, REPORTS, DONE = "incoming", "processing", "rejected", "reports", "done"
SPOOL_FOLDERS = (INCOMING, PROCESSING, REJECTED, REPORTS, DONE)
DONE_KEEP = 200
# An empty file this young is probably being written by a client that did not use a temp name: leave it a moment.
_EMPTY_GRACE_NS = 2_000_000_000


def _is_command_name(name: str) -> bool:
    return name.endswith(".json") and not name.startswith(".")


def _benign(record: logging.LogRecord) -> bool:
    """Drop watchdog's error for a race inside its own stop() (events still queued while the watch closes)."""
    return "called when the thread is inactive" not in str(record.msg)


def _start_observer(folder: Path, wake: threading.Event) -> BaseObserver:
    """Watch ``folder`` with inotify (via watchdog) and set ``wake`` when a command file may have arrived."""
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    class _Wake(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type not in ("created", "moved", "closed") or event.is_directory:
                return
            paths = (event.src_path, getattr(event, "dest_path", ""))
            if any(_is_command_name(os.path.basename(os.fsdecode(p))) for p in paths if p):
                wake.set()

    logging.getLogger("watchdog.observers.inotify").addFilter(_benign)  # the same function: added once
    observer = Observer(timeout=0.2)  # how long stop() may take; the wake-up itself is immediate
    observer.daemon = True
    observer.schedule(_Wake(), str(folder), recursive=False)
    observer.start()
    return observer


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or a unique variant of it when that is taken (a re-used client file name)."""
    target = folder / name
    if not target.exists():
        return target
    stem = name[: -len(".json")] if name.endswith(".json") else name
    return folder / f"{stem}.{uuid.uuid4().hex[:8]}.json"


class SpoolChannel(Channel):
    """Commands from ``<spool_dir>/incoming``. Used from one thread (the daemon loop) plus watchdog's thread."""

    def __init__(self, spool_dir: Path, *, rescan_interval: float = 1.0, done_keep: int = DONE_KEEP) -> None:
        self.spool_dir = spool_dir
        self.rescan_interval = rescan_interval
        self.done_keep = done_keep
        self._wake = threading.Event()
        self._observer: BaseObserver | None = None
        self._leftovers: deque[Path] = deque()

    def folder(self, name: str) -> Path:
        return self.spool_dir / name

    def start(self) -> None:
        """Create missing folders, queue leftovers of a crash (processing/) first, and start watching incoming/."""
        for name in SPOOL_FOLDERS:
            self.folder(name).mkdir(mode=0o750, parents=True, exist_ok=True)
        self._leftovers = deque(path for _, path in self._listing(self.folder(PROCESSING)))
        if self._leftovers:
            log.warning("%d command(s) left in processing/ by an earlier run", len(self._leftovers))
        try:
            self._observer = _start_observer(self.folder(INCOMING), self._wake)
        except OSError as exc:  # inotify watch limit reached, or no inotify at all
            log.warning(
                "cannot watch %s (%s): new commands are picked up by a rescan every %.1f s",
                self.folder(INCOMING), exc, self.rescan_interval,
            )

    def receive(self, timeout: float) -> Delivery | None:
        """The oldest command (leftovers from processing/ first), waiting up to ``timeout`` s for one to arrive.

        inotify wakes the wait at once; without it the folder is rescanned every ``rescan_interval`` s. When the
        time is up no last scan is made: the next call scans first anyway.
        """
        if self._leftovers:
            path = self._leftovers.popleft()
            delivery = self._delivery(path, path.name)
            if delivery is not None:
                return delivery
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            self._wake.clear()  # before the scan, so a file arriving during it still wakes the wait
            delivery = self._claim_next()
            if delivery is not None:
                return delivery
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            woke = self._wake.wait(min(remaining, self.rescan_interval))
            if not woke and time.monotonic() >= deadline:
                return None

    def ack(self, delivery: Delivery) -> None:
        """Move the command to done/ (its report is already written) and keep only the newest ``done_keep``."""
        path = Path(delivery.receipt)
        target = self.folder(DONE) / path.name
        try:
            os.replace(path, target)
            os.utime(target)  # the age done/ is pruned by is the ack time, not the client's write time
        except FileNotFoundError:
            log.warning("command %s was already moved out of processing/", delivery.source)
            return
        self._prune_done()

    def reject(self, delivery: Delivery, reason: str, message: str) -> None:
        """Move the command to rejected/ with a ``.reason`` file beside it (written first)."""
        self._reject_path(Path(delivery.receipt), reason, message)

    def extend(self, delivery: Delivery) -> None:
        """Nothing to do: a claimed file stays claimed."""

    def close(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

    # --- internals ---------------------------------------------------------------------------------------------

    @staticmethod
    def _listing(folder: Path) -> list[tuple[tuple[int, str], Path]]:
        """Command files of ``folder``, oldest first (mtime, then name)."""
        entries = []
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        for name in names:
            if not _is_command_name(name):
                continue
            try:
                st = os.lstat(folder / name)
            except FileNotFoundError:
                continue
            entries.append(((st.st_mtime_ns, name), folder / name))
        entries.sort(key=lambda e: e[0])
        return entries

    def _claim_next(self) -> Delivery | None:
        now_ns = time.time_ns()
        for _, path in self._listing(self.folder(INCOMING)):
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_size == 0 and now_ns - st.st_mtime_ns < _EMPTY_GRACE_NS:
                continue
            target = _free_name(self.folder(PROCESSING), path.name)
            try:
                os.rename(path, target)  # the claim: exactly one renamer succeeds
            except FileNotFoundError:
                continue  # another agent claimed it first
            if not stat.S_ISREG(st.st_mode):
                self._reject_path(target, MALFORMED, "not a regular file (symlinks and folders are not commands)")
                continue
            delivery = self._delivery(target, path.name)
            if delivery is not None:
                return delivery
        return None

    def _delivery(self, path: Path, source: str) -> Delivery | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._reject_path(path, MALFORMED, f"cannot read the command file: {exc.strerror}")
            return None
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(MAX_COMMAND_BYTES + 1)  # more than the limit is enough to reject it
        log.info("claimed command %s", source)
        return Delivery(command_bytes=data, receipt=path, source=source)

    def _reject_path(self, path: Path, reason: str, message: str) -> None:
        target = _free_name(self.folder(REJECTED), path.name)
        reason_file = target.with_name(target.name[: -len(".json")] + ".reason")
        one_line = " ".join(message.split())
        atomic_write_bytes(reason_file, f"{reason}: {one_line}\n".encode(), mode=0o644)
        try:
            os.replace(path, target)
        except FileNotFoundError:
            log.warning("rejected command %s was already moved out of processing/", path.name)
        log.warning("rejected command %s: %s: %s", path.name, reason, one_line)

    def _prune_done(self) -> None:
        listing = self._listing(self.folder(DONE))
        for _, path in listing[: max(0, len(listing) - self.done_keep)]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class SpoolReportSink(ReportSink):
    """Writes ``<spool_dir>/reports/<deployment_id>.json`` atomically (readers see the old or the new report)."""

    def __init__(self, spool_dir: Path) -> None:
        self.reports_dir = spool_dir / REPORTS

    def path_for(self, deployment_id: str) -> Path:
        return self.reports_dir / f"{check_name('deployment id', deployment_id)}.json"

    def publish(self, report: dict[str, Any]) -> None:
        """Replace the deployment's report file. Raises UsageError for a deployment id unsafe as a file name."""
        data = json.dumps(report, indent=2, sort_keys=False).encode() + b"\n"
        atomic_write_bytes(self.path_for(str(report.get("deployment_id", ""))), data, mode=0o644,
                           durable=report.get("status") != "InProgress")


# --- permissions ----------------------------------------------------------------------------------------------


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def check_spool_permissions(spool_dir: Path, *, allowed_group: str | None) -> list[str]:
    """What makes the spool unsafe, one message each (empty when safe).

    Each spool folder must be a real folder owned by the agent's effective user, not writable by others, and
    group-writable only when its group is ``allowed_group`` (config ``spool_group``). Ancestors must not let
    others replace the spool (writable by others without the sticky bit).
    """
    problems: list[str] = []
    allowed_gid: int | None = None
    if allowed_group is not None:
        try:
            allowed_gid = grp.getgrnam(allowed_group).gr_gid
        except KeyError:
            problems.append(f"spool_group {allowed_group!r} does not exist on this host")
    euid = os.geteuid()
    for folder in (spool_dir, *(spool_dir / name for name in SPOOL_FOLDERS)):
        try:
            st = os.lstat(folder)
        except FileNotFoundError:
            problems.append(f"{folder} does not exist")
            continue
        mode = stat.S_IMODE(st.st_mode)
        if not stat.S_ISDIR(st.st_mode):
            problems.append(f"{folder} is not a folder (a symlink or file); make it a real folder")
            continue
        if st.st_uid != euid:
            problems.append(f"{folder} is owned by {_user(st.st_uid)}, not the agent's user {_user(euid)}: chown it")
        if mode & stat.S_IWOTH:
            problems.append(
                f"{folder} is writable by everyone (mode {mode:04o}), so anyone could run code as the agent's user:"
                f" chmod o-w {folder}"
            )
        if mode & stat.S_IWGRP and st.st_gid != allowed_gid:
            configured = f"spool_group is {allowed_group!r}" if allowed_group else "no spool_group is configured"
            problems.append(
                f"{folder} is writable by group {_group(st.st_gid)} (mode {mode:04o}) but {configured}:"
                f" chmod g-w {folder}, or set spool_group: {_group(st.st_gid)} in the agent configuration"
            )
    for ancestor in spool_dir.absolute().parents:
        try:
            st = os.stat(ancestor)
        except OSError:
            continue
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            problems.append(
                f"{ancestor} is writable by everyone without the sticky bit, so the spool inside it could be replaced:"
                f" chmod o-w {ancestor}"
            )
    return problems


def ensure_spool(spool_dir: Path, *, group: str | None) -> None:
    """Create the spool folders that are missing (existing ones are left as they are, for the check to judge).

    Without a group they are 0750. With one they belong to it with the setgid bit: incoming/ 2770 (members drop
    commands), the others 2750 (members read reports). Raises StateError when a folder cannot be created.
    """
    gid: int | None = None
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            message = f"spool_group {group!r} does not exist on this host: create it or remove the key"
            raise UsageError(message) from None
    try:
        spool_dir.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        for folder in (spool_dir, *(spool_dir / name for name in SPOOL_FOLDERS)):
            try:
                os.mkdir(folder, 0o700)
            except FileExistsError:
                continue
            if gid is None:
                os.chmod(folder, 0o750)  # noqa: S103 - group read: see the docstring
            else:
                os.chown(folder, -1, gid)
                os.chmod(folder, 0o2770 if folder.name == INCOMING and folder != spool_dir else 0o2750)
    except OSError as exc:
        raise StateError(f"cannot create the spool folder {exc.filename}: {exc.strerror}") from exc
