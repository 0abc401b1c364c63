"""Watch one running script: read its output, enforce its timeout, honour cancellation, never hang on its pipes.

One loop per script, woken only by output, by the script's exit (a pidfd) or by a deadline: no thread per stream,
no sleep-polling on the normal path. The kill path (SIGTERM, grace, SIGKILL) is the only place that polls.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from agent.hooks.output import LineSplitter
from agent.hooks.procs import pipe_holders, session_members, signal_group, wait_group_empty

_READ_SIZE = 64 * 1024
# Without a pidfd (old kernel, seccomp), the script's exit is noticed by polling at this interval.
_EXIT_POLL = 0.05
# A threading.Event cannot wake a selector: cancellation is checked at this interval while a script runs.
_CANCEL_POLL = 0.1
# After SIGKILL a process normally vanishes at once; one stuck in the kernel (a hung NFS mount) is given up on.
_MIN_KILL_WAIT = 1.0

# (stream, lines) -> None
LinesCallback = Callable[[str, list[str]], None]

_RUN, _TERM, _KILL = "run", "term", "kill"


@dataclass(frozen=True)
class ProcessResult:
    """How a script ended.

    ``returncode`` is ``None`` only when the script could not be reaped even after SIGKILL. ``lingering`` lists
    (pid, command) of processes that still held the script's output when reading stopped; they were left running.
    """

    returncode: int | None
    timed_out: bool = False
    cancelled: bool = False
    killed: bool = False  # SIGKILL was needed: the group outlived SIGTERM plus the grace
    lingering: tuple[tuple[int, str], ...] = ()
    left_open: bool = False  # reading stopped while something still held the pipes


def _open_pidfd(pid: int) -> int | None:
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def drain_in_background(files: list[IO[bytes]], name: str) -> None:
    """Keep reading (and discarding) ``files`` in a daemon thread until every writer has closed them.

    Closing the read end instead would make a background process the script started (an app server launched with
    ``&``) die of SIGPIPE, or fail with EPIPE, the next time it writes to its inherited stdout.
    """

    def drain() -> None:
        sel = selectors.DefaultSelector()
        try:
            for f in files:
                sel.register(f.fileno(), selectors.EVENT_READ, f)
            while sel.get_map():
                for key, _ in sel.select():
                    try:
                        data = os.read(key.fd, _READ_SIZE)
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(key.fd)
                        key.data.close()
        finally:
            sel.close()
            for f in files:
                with contextlib.suppress(OSError):
                    f.close()

    threading.Thread(target=drain, name=name, daemon=True).start()


class Supervisor:
    """Runs the loop for one spawned script. Use :meth:`run` once; it always reaps the script or gives up on it."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        *,
        timeout: float,
        kill_grace: float,
        output_grace: float,
        cancel: threading.Event | None,
        on_lines: LinesCallback,
    ) -> None:
        self.proc = proc
        self.pgid = proc.pid  # start_new_session: the script leads its own session and group
        self.kill_grace = max(0.0, kill_grace)
        self.output_grace = max(0.0, output_grace)
        self.cancel = cancel
        self.on_lines = on_lines
        self.sel = selectors.DefaultSelector()
        self.streams: dict[int, tuple[str, IO[bytes], LineSplitter]] = {}
        for name, f in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            if f is not None:
                self.streams[f.fileno()] = (name, f, LineSplitter())
                self.sel.register(f.fileno(), selectors.EVENT_READ, name)
        self.pidfd = _open_pidfd(proc.pid)
        if self.pidfd is not None:
            self.sel.register(self.pidfd, selectors.EVENT_READ, None)
        now = time.monotonic()
        self.phase = _RUN
        self.deadline = now + max(0.0, timeout)  # timeout while running; grace while terminating
        self.exited = proc.returncode is not None
        # When the script has exited, reading its output stops at this time even if something still holds the pipes.
        self.output_deadline: float | None = now + self.output_grace if self.exited else None
        self.timed_out = False
        self.cancelled = False

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> ProcessResult:
        """Supervise until the script has exited and its output is read (or abandoned); see :class:`ProcessResult`."""
        try:
            while True:
                now = time.monotonic()
                self._timers(now)
                if self._finished(now):
                    break
                for key, _ in self.sel.select(self._wait(now)):
                    if key.data is None:
                        self._on_exit()
                    else:
                        self._read(key.fd)
                if not self.exited and self.pidfd is None and self.proc.poll() is not None:
                    self._on_exit()
            return self._finish()
        except BaseException:
            # A callback failed or the agent is being interrupted: leave nothing behind.
            self._abort()
            raise
        finally:
            self.sel.close()
            if self.pidfd is not None:
                os.close(self.pidfd)
                self.pidfd = None

    def _wait(self, now: float) -> float:
        wake = [self.output_deadline if self.exited else self.deadline]
        if self.phase != _RUN:
            wake.append(self.deadline)
        if not self.exited and self.pidfd is None:
            wake.append(now + _EXIT_POLL)
        if self.cancel is not None and not self.cancelled:
            wake.append(now + _CANCEL_POLL)
        return max(0.0, min(w for w in wake if w is not None) - now)

    def _timers(self, now: float) -> None:
        if not self.cancelled and self.cancel is not None and self.cancel.is_set():
            if not self.exited:
                self.cancelled = True
                if self.phase == _RUN:
                    self._terminate(now)
            elif self.output_deadline is not None and self.output_deadline > now:
                # The script itself finished: stop waiting for its output, but leave what it started running.
                self.output_deadline = now
        if self.phase == _RUN and not self.exited and now >= self.deadline:
            self.timed_out = True
            self._terminate(now)
        elif self.phase == _TERM and now >= self.deadline:
            signal_group(self.pgid, signal.SIGKILL)
            self.phase = _KILL
            self.deadline = now + max(self.kill_grace, _MIN_KILL_WAIT)
            if self.exited and self.output_deadline is not None:
                self.output_deadline = min(self.output_deadline, now + self.output_grace)

    def _finished(self, now: float) -> bool:
        if not self.exited:
            return self.phase == _KILL and now >= self.deadline  # SIGKILL did not end it: give up
        if not self.streams:
            return True
        return self.output_deadline is not None and now >= self.output_deadline

    def _terminate(self, now: float) -> None:
        signal_group(self.pgid, signal.SIGTERM)
        self.phase = _TERM
        self.deadline = now + self.kill_grace

    def _on_exit(self) -> None:
        if self.pidfd is not None:
            self.sel.unregister(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None
        self.proc.wait()
        self.exited = True
        self.output_deadline = time.monotonic() + self.output_grace

    def _read(self, fd: int) -> None:
        name, f, splitter = self.streams[fd]
        try:
            data = os.read(fd, _READ_SIZE)
        except OSError:
            data = b""
        if data:
            lines = splitter.feed(data)
        else:
            self.sel.unregister(fd)
            del self.streams[fd]
            f.close()
            lines = splitter.close()
        if lines:
            self.on_lines(name, lines)

    # -- the end ----------------------------------------------------------------------------------------------
    def _finish(self) -> ProcessResult:
        killed = self.phase == _KILL
        # The script is gone and its output read; whatever else of its group got SIGTERM gets the rest of the grace,
        # then SIGKILL.
        if self.phase == _TERM and not wait_group_empty(self.pgid, self.deadline):
            signal_group(self.pgid, signal.SIGKILL)
            killed = True
        lingering: tuple[tuple[int, str], ...] = ()
        left_open = bool(self.streams)
        if self.streams:
            for name, _, splitter in self.streams.values():
                lines = splitter.close()
                if lines:
                    self.on_lines(name, lines)
            inodes = [os.fstat(fd).st_ino for fd in self.streams]
            lingering = tuple(pipe_holders(inodes) or session_members(self.pgid))
            drain_in_background([f for _, f, _ in self.streams.values()], f"berth-hook-drain-{self.pgid}")
            self.streams.clear()
        return ProcessResult(
            returncode=self.proc.returncode,
            timed_out=self.timed_out,
            cancelled=self.cancelled,
            killed=killed,
            lingering=lingering,
            left_open=left_open,
        )

    def _abort(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            signal_group(self.pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=_MIN_KILL_WAIT)
        for _, f, _ in self.streams.values():
            with contextlib.suppress(OSError):
                f.close()
        self.streams.clear()
