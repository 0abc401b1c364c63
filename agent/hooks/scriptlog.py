"""A deployment's ``logs/scripts.log`` (SPEC §3), in the CodeDeploy agent's format so existing log shippers work::

    2024-05-01 12:00:00 LifecycleEvent - AfterInstall
    2024-05-01 12:00:00 Script - scripts/migrate.sh
    2024-05-01 12:00:01 [stdout]migrating...
    2024-05-01 12:00:02 [stderr]warning: table is large

Timestamps are local time to the second, as the CodeDeploy agent writes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

# (event, stream, line) -> None; stream is "stdout" or "stderr".
LineCallback = Callable[[str, str, str], None]


def _timestamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


class ScriptLog:
    """Appends hook output to one deployment's scripts.log and hands every line to ``on_line`` as well.

    Opens ``path`` for append at construction (creating its folder); use it as a context manager or call
    :meth:`close`. Lines are flushed after every batch so ``tail -f`` shows them while a script runs.
    ``on_line`` runs in the caller's thread; an exception from it propagates (the runner then ends the script).
    """

    def __init__(self, path: Path, on_line: LineCallback | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._on_line = on_line
        # errors="replace": output is decoded before it gets here, but a lone surrogate must not break the log.
        self._file = path.open("a", encoding="utf-8", errors="replace")

    def __enter__(self) -> ScriptLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def event(self, event: str) -> None:
        """Header line for a lifecycle event whose scripts are about to run."""
        self._header(f"LifecycleEvent - {event}")

    def script(self, location: str) -> None:
        """Header line for one script (its location as the appspec wrote it)."""
        self._header(f"Script - {location}")

    def output(self, event: str, stream: str, lines: Iterable[str]) -> None:
        """Record lines a script wrote on ``stream`` ("stdout"/"stderr") during ``event``."""
        stamp = _timestamp()
        write = self._file.write
        wrote = False
        for line in lines:
            write(f"{stamp} [{stream}]{line}\n")
            wrote = True
            if self._on_line is not None:
                self._on_line(event, stream, line)
        if wrote:
            self._file.flush()

    def _header(self, text: str) -> None:
        self._file.write(f"{_timestamp()} {text}\n")
        self._file.flush()
