"""Human output for deployments: live event lines (with a spinner on a terminal) and the final table."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from typing import Any, TextIO

from agent.model.report import FAILED, IN_PROGRESS, SKIPPED, SUCCEEDED

_SPIN = "|/-\\"
_MARK = {SUCCEEDED: "ok", FAILED: "FAILED", SKIPPED: "skipped"}
_TAIL_LINES = 10


def _dur(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f}s"


class LiveEvents:
    """Prints each event as it starts and ends, from successive report dicts.

    On a terminal a spinner line with the elapsed time is redrawn while an event runs; elsewhere plain lines only.
    """

    def __init__(self, stream: TextIO | None = None, *, spinner: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.spinner = self.stream.isatty() if spinner is None else spinner
        self._seen: dict[str, str] = {}
        self._running: tuple[str, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LiveEvents:
        if self.spinner:
            self._thread = threading.Thread(target=self._spin, name="berth-spinner", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._clear()

    def update(self, report: dict[str, Any]) -> None:
        """Print what changed since the previous report."""
        with self._lock:
            for ev in report.get("events", []):
                name, status = ev["name"], ev["status"]
                if self._seen.get(name) == status:
                    continue
                self._seen[name] = status
                self._clear()
                if status == IN_PROGRESS:
                    self._running = (name, time.monotonic())
                    if not self.spinner:
                        self._line(f"  ... {name}")
                elif status in _MARK:
                    if self._running and self._running[0] == name:
                        self._running = None
                    if status == SKIPPED and ev.get("duration_ms") is None:
                        continue  # never reached: the final table shows it
                    self._line(f"  {_MARK[status]:>7} {name} ({_dur(ev.get('duration_ms'))})")

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _clear(self) -> None:
        if self.spinner:
            self.stream.write("\r\033[K")

    def _spin(self) -> None:
        for ch in itertools.cycle(_SPIN):
            if self._stop.wait(0.1):
                return
            with self._lock:
                if self._running is not None:
                    name, t0 = self._running
                    self.stream.write(f"\r\033[K  {ch} {name} ({time.monotonic() - t0:.1f}s)")
                    self.stream.flush()


def summary_table(report: dict[str, Any]) -> str:
    """The closing table: event, status, duration; for a failed event its error, script and last log lines."""
    rows = [(ev["name"], ev["status"], _dur(ev.get("duration_ms"))) for ev in report.get("events", [])]
    width = max([len(r[0]) for r in rows] + [5])
    out = [f"{'EVENT':<{width}}  {'STATUS':<10}  DURATION"]
    out += [f"{n:<{width}}  {s:<10}  {d}" for n, s, d in rows]
    for ev in report.get("events", []):
        diag = ev.get("diagnostics")
        if not diag or ev["status"] != FAILED:
            continue
        out.append("")
        script = f" in {diag['script_name']}" if diag.get("script_name") else ""
        out.append(f"{ev['name']} failed: {diag['error_name']} (code {diag['error_code']}){script}")
        out.append(f"  {diag['message']}")
        tail = [line for line in str(diag.get("log_tail") or "").splitlines() if line.strip()]
        if tail:
            out.append("  last output:")
            out += [f"    {line}" for line in tail[-_TAIL_LINES:]]
    rb = report.get("rollback")
    if isinstance(rb, dict):
        out.append("")
        out.append(f"rolled back to {report.get('rolled_back_to')}: {rb.get('status')}")
        out.append(summary_table(rb))
    for w in report.get("warnings", []):
        out.append(f"warning: {w}")
    out.append("")
    out.append(f"deployment {report['deployment_id']}: {report['status']}")
    return "\n".join(out)
