"""Shared helpers for the bench scripts: timing medians, ratio lines, a child's peak RSS.

Benchmarks print figures and ratios against a baseline measured in the same run; they never assert times (machines
differ too much). Importing this module puts the repository on ``sys.path`` so scripts can import ``agent``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def bench_dir(name: str) -> Path:
    """A scratch folder for one bench under ``build/bench`` (kept between runs, for cached inputs)."""
    path = REPO / "build" / "bench" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn()`` takes (wall clock)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_of(
    runs: int,
    fn: Callable[[], object],
    *,
    setup: Callable[[], object] | None = None,
) -> tuple[float, list[float]]:
    """Run ``fn`` ``runs`` times (``setup`` untimed before each); returns (median seconds, every time)."""
    times = []
    for _ in range(runs):
        if setup is not None:
            setup()
        times.append(timed(fn))
    return statistics.median(times), times


def interleaved(
    runs: int,
    fns: dict[str, Callable[[], object]],
    *,
    setup: Callable[[], object] | None = None,
) -> dict[str, tuple[float, list[float]]]:
    """Like :func:`median_of` for several contenders, taking turns each round so load changes hit all alike."""
    times: dict[str, list[float]] = {label: [] for label in fns}
    for _ in range(runs):
        for label, fn in fns.items():
            if setup is not None:
                setup()
            times[label].append(timed(fn))
    return {label: (statistics.median(ts), ts) for label, ts in times.items()}


def ratio_line(label: str, value: float, baseline: float, baseline_label: str, target: float | None = None) -> str:
    """One result line: ``label: 1.234 s vs baseline 1.000 s = 1.23x (target <= 1.5x)``."""
    ratio = value / baseline if baseline > 0 else float("inf")
    goal = "" if target is None else f" (target <= {target:g}x: {'met' if ratio <= target else 'NOT met'})"
    return f"{label}: {value:.3f} s vs {baseline_label} {baseline:.3f} s = {ratio:.2f}x{goal}"


def fmt_times(times: Sequence[float]) -> str:
    return " ".join(f"{t:.3f}" for t in times)


@dataclass(frozen=True)
class ChildRun:
    returncode: int
    seconds: float
    peak_rss_kib: int  # ru_maxrss of that child alone (Linux reports KiB)


def run_child(
    argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, stdout_null: bool = False
) -> ChildRun:
    """Run a child process to completion (output inherited unless ``stdout_null``); its wall time and its own peak
    RSS (os.wait4)."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=subprocess.DEVNULL if stdout_null else None)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen, so it does not wait again
    return ChildRun(returncode=proc.returncode, seconds=seconds, peak_rss_kib=usage.ru_maxrss)
