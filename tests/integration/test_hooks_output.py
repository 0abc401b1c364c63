"""Script output: scripts.log format, the failed event's log tail, line caps, and output left open by children."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from agent.hooks.output import MAX_LINE_BYTES
from agent.hooks.runner import EventOutcome, Script, ScriptLog, hook_environment, run_event
from tests.fakes.procs import alive

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def write(root: Path, name: str, body: str, *, shebang: str = "#!/bin/sh\n") -> Path:
    path = root / name
    path.write_text(shebang + body)
    path.chmod(0o755)
    return path


def run(
    root: Path, *scripts: Script, event: str = "ApplicationStart", log: ScriptLog | None = None, **kw: object
) -> tuple[EventOutcome, str]:
    log_path = root / "logs" / "scripts.log"
    own = log is None
    log = log or ScriptLog(log_path)
    try:
        outcome = run_event(
            event,
            scripts,
            cwd=root,
            env=hook_environment(os.environ, {}),
            log=log,
            kill_grace=1,
            **kw,  # type: ignore[arg-type]
        )
    finally:
        if own:
            log.close()
    return outcome, log_path.read_text()


def test_log_format_headers_and_callback(tmp_path: Path) -> None:
    a = write(tmp_path, "a.sh", "echo out-a; echo err-a >&2\n")
    b = write(tmp_path, "b.sh", "printf 'no newline at end'\n")
    seen: list[tuple[str, str, str]] = []
    with ScriptLog(tmp_path / "logs" / "scripts.log", on_line=lambda *x: seen.append(x)) as log:
        outcome, logged = run(tmp_path, Script("a.sh", a, 10), Script("scripts/../b.sh", b, 10), log=log)
    assert outcome.ok
    lines = logged.splitlines()
    assert re.fullmatch(f"{STAMP} LifecycleEvent - ApplicationStart", lines[0])
    assert re.fullmatch(f"{STAMP} Script - a.sh", lines[1])
    body = {line.split(" ", 2)[2] for line in lines[2:4]}
    assert body == {"[stdout]out-a", "[stderr]err-a"}
    assert re.fullmatch(f"{STAMP} Script - scripts/../b.sh", lines[4])
    assert re.fullmatch(rf"{STAMP} \[stdout\]no newline at end", lines[5])
    assert len(lines) == 6
    assert ("ApplicationStart", "stdout", "out-a") in seen
    assert ("ApplicationStart", "stderr", "err-a") in seen
    assert ("ApplicationStart", "stdout", "no newline at end") in seen


def test_log_tail_is_the_last_2048_bytes_in_whole_lines(tmp_path: Path) -> None:
    s = write(
        tmp_path, "noisy.sh", 'i=0; while [ $i -lt 300 ]; do echo "line $i of the output"; i=$((i+1)); done; exit 2\n'
    )
    outcome, _ = run(tmp_path, Script("noisy.sh", s, 10))
    d = outcome.diagnostics
    assert d is not None and d.error_code == 4
    tail = d.log_tail
    assert 2048 - 40 < len(tail.encode()) <= 2048
    lines = tail.split("\n")
    assert all(re.fullmatch(r"\[stdout\]line \d+ of the output", line) for line in lines)
    assert lines[-1] == "[stdout]line 299 of the output"


def test_log_tail_of_one_overlong_line_is_cut_to_fit(tmp_path: Path) -> None:
    s = write(tmp_path, "long.sh", "echo short; head -c 5000 /dev/zero | tr '\\0' x; echo END; exit 1\n")
    outcome, _ = run(tmp_path, Script("long.sh", s, 10))
    d = outcome.diagnostics
    assert d is not None
    assert len(d.log_tail.encode()) <= 2048
    assert d.log_tail.startswith("[stdout]")
    assert d.log_tail.endswith("xxxxEND")


def test_log_tail_holds_only_the_failed_events_output(tmp_path: Path) -> None:
    ok = write(tmp_path, "ok.sh", "echo from-first-event\n")
    bad = write(tmp_path, "bad.sh", "echo from-second-event; exit 1\n")
    with ScriptLog(tmp_path / "logs" / "scripts.log") as log:
        first, _ = run(tmp_path, Script("ok.sh", ok, 10), event="BeforeInstall", log=log)
        second, logged = run(tmp_path, Script("bad.sh", bad, 10), event="AfterInstall", log=log)
    assert first.ok
    assert second.diagnostics is not None
    assert second.diagnostics.log_tail == "[stdout]from-second-event"
    assert "LifecycleEvent - BeforeInstall" in logged and "LifecycleEvent - AfterInstall" in logged


def test_an_overlong_line_is_cut_in_the_log(tmp_path: Path) -> None:
    size = MAX_LINE_BYTES * 3
    s = write(tmp_path, "blob.sh", f"head -c {size} /dev/zero | tr '\\0' y; echo; echo next\n")
    outcome, logged = run(tmp_path, Script("blob.sh", s, 10))
    assert outcome.ok
    lines = logged.splitlines()
    blob = next(line for line in lines if "[stdout]yyy" in line)
    assert "line cut" in blob
    assert len(blob) < MAX_LINE_BYTES + 200
    assert lines[-1].endswith("[stdout]next")


def test_large_output_is_logged_completely(tmp_path: Path) -> None:
    s = write(tmp_path, "many.sh", "seq 1 100000; seq 1 1000 >&2\n")
    outcome, logged = run(tmp_path, Script("many.sh", s, 60))
    assert outcome.ok
    assert logged.count("[stdout]") == 100000
    assert logged.count("[stderr]") == 1000
    assert logged.rstrip().endswith("[stdout]100000") or "[stdout]100000\n" in logged


def test_background_child_holding_output_does_not_hang_and_keeps_running(tmp_path: Path) -> None:
    s = write(tmp_path, "start.sh", "sleep 300 &\necho started $!\n")
    outcome, logged = run(tmp_path, Script("start.sh", s, 60), output_grace=0.5)
    child = int(logged.split("[stdout]started ")[1].split()[0])
    try:
        assert outcome.ok
        assert len(outcome.warnings) == 1
        assert f"pid {child} (sleep)" in outcome.warnings[0]
        assert alive(child)
    finally:
        os.kill(child, signal.SIGKILL)


def test_background_server_that_keeps_writing_survives(tmp_path: Path) -> None:
    # An app server started with `&` that logs to its inherited stdout: when berth stops reading it must not die
    # of SIGPIPE (or EPIPE) at its next write.
    server = write(
        tmp_path,
        "server.py",
        "import sys, time\nwhile True:\n    print('request served', flush=True)\n    time.sleep(0.05)\n",
        shebang=f"#!{sys.executable}\n",
    )
    s = write(tmp_path, "start.sh", f"{server} &\necho pid $!\n")
    outcome, logged = run(tmp_path, Script("start.sh", s, 60), output_grace=0.3)
    pid = int(logged.split("[stdout]pid ")[1].split()[0])
    try:
        assert outcome.ok
        assert "request served" in logged
        time.sleep(1.0)  # the server writes about 20 more lines after berth stopped reading
        assert alive(pid)
    finally:
        os.kill(pid, signal.SIGKILL)


def test_failed_script_with_a_lingering_child_is_judged_by_its_exit_code(tmp_path: Path) -> None:
    s = write(tmp_path, "half.sh", "sleep 300 &\necho bg $!\nexit 7\n")
    outcome, logged = run(tmp_path, Script("half.sh", s, 60), output_grace=0.3)
    child = int(logged.split("[stdout]bg ")[1].split()[0])
    try:
        d = outcome.diagnostics
        assert d is not None
        assert d.error_code == 4 and "exited with status 7" in d.message
        assert d.log_tail == f"[stdout]bg {child}"
        assert any(f"pid {child}" in w for w in outcome.warnings)
    finally:
        os.kill(child, signal.SIGKILL)
