"""Ending scripts: timeouts (SIGTERM, then SIGKILL after the grace), cancellation, and crash-recovery kills."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from agent.hooks.runner import EventOutcome, Script, ScriptLog, hook_environment, kill_process_group, run_event
from tests.fakes.procs import alive, group_empty

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def write(root: Path, name: str, body: str) -> Path:
    path = root / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def run(root: Path, *scripts: Script, **kw: object) -> tuple[EventOutcome, str]:
    log_path = root / "scripts.log"
    with ScriptLog(log_path) as log:
        outcome = run_event(
            "ApplicationStart",
            scripts,
            cwd=root,
            env=hook_environment(os.environ, {}),
            log=log,
            **kw,  # type: ignore[arg-type]
        )
    return outcome, log_path.read_text()


def test_timeout_terminates_the_whole_group(tmp_path: Path) -> None:
    s = write(tmp_path, "slow.sh", "sleep 300 & echo child=$!; sleep 300\n")
    spawned: list[int] = []
    outcome, logged = run(tmp_path, Script("slow.sh", s, 1), kill_grace=5, on_spawn=spawned.append)
    d = outcome.diagnostics
    assert d is not None
    assert (d.error_code, d.error_name, d.script_name) == (3, "ScriptTimedOut", "slow.sh")
    assert "timed out after 1 s" in d.message
    assert "SIGKILL" not in d.message  # it honoured SIGTERM
    child = int(logged.split("[stdout]child=")[1].split()[0])
    assert not alive(child)
    assert group_empty(spawned[0])


def test_script_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    s = write(tmp_path, "stubborn.sh", "trap '' TERM\necho ready\nwhile :; do sleep 1; done\n")
    spawned: list[int] = []
    outcome, logged = run(tmp_path, Script("stubborn.sh", s, 1), kill_grace=1, on_spawn=spawned.append)
    d = outcome.diagnostics
    assert d is not None
    assert d.error_code == 3
    assert "SIGKILL" in d.message
    assert "[stdout]ready" in logged
    assert d.log_tail == "[stdout]ready"
    assert group_empty(spawned[0])


def test_group_member_ignoring_sigterm_after_the_script_exits_is_killed(tmp_path: Path) -> None:
    # The script itself dies on SIGTERM but leaves a TERM-proof child with its output redirected.
    s = write(tmp_path, "leaves.sh", "(trap '' TERM; exec sleep 300) >/dev/null 2>&1 &\nsleep 300\n")
    spawned: list[int] = []
    outcome, _ = run(tmp_path, Script("leaves.sh", s, 1), kill_grace=1, on_spawn=spawned.append)
    assert outcome.diagnostics is not None and outcome.diagnostics.error_code == 3
    assert "SIGKILL" in outcome.diagnostics.message
    assert group_empty(spawned[0])


def test_cancel_kills_a_running_script(tmp_path: Path) -> None:
    s = write(tmp_path, "long.sh", "echo working\nsleep 300\n")
    after = write(tmp_path, "after.sh", "echo after\n")
    cancel = threading.Event()
    spawned: list[int] = []

    def on_spawn(pid: int) -> None:
        spawned.append(pid)
        threading.Timer(0.3, cancel.set).start()

    outcome, logged = run(
        tmp_path,
        Script("long.sh", s, 3600),
        Script("after.sh", after, 10),
        kill_grace=30,
        cancel=cancel,
        on_spawn=on_spawn,
    )
    d = outcome.diagnostics
    assert d is not None
    assert (d.error_code, d.error_name, d.message, d.script_name) == (5, "AgentStopping", "agent stopping", "long.sh")
    assert group_empty(spawned[0])
    assert "after" not in logged.replace("Script - after.sh", "")
    assert len(spawned) == 1


def test_cancel_after_the_script_finished_leaves_its_children(tmp_path: Path) -> None:
    # The script is done (it only left a background process holding its output): cancelling must not kill that.
    s = write(tmp_path, "start.sh", "sleep 300 &\necho bg=$!\n")
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    outcome, logged = run(tmp_path, Script("start.sh", s, 60), output_grace=30, cancel=cancel)
    child = int(logged.split("[stdout]bg=")[1].split()[0])
    try:
        assert outcome.ok
        assert alive(child)
    finally:
        os.kill(child, signal.SIGKILL)


def test_on_spawn_failure_kills_the_script(tmp_path: Path) -> None:
    s = write(tmp_path, "long.sh", "sleep 300\n")
    spawned: list[int] = []

    def on_spawn(pid: int) -> None:
        spawned.append(pid)
        raise OSError("disk full while writing the crash marker")

    with pytest.raises(OSError, match="crash marker"):
        run(tmp_path, Script("long.sh", s, 60), on_spawn=on_spawn)
    assert group_empty(spawned[0])


def test_on_line_failure_kills_the_script(tmp_path: Path) -> None:
    s = write(tmp_path, "chatty.sh", "echo one\nsleep 300\n")
    spawned: list[int] = []

    def on_line(event: str, stream: str, line: str) -> None:
        raise RuntimeError("log shipper broke")

    with ScriptLog(tmp_path / "scripts.log", on_line=on_line) as log, pytest.raises(RuntimeError):
        run_event(
            "ApplicationStart",
            [Script("chatty.sh", s, 60)],
            cwd=tmp_path,
            env=dict(os.environ),
            log=log,
            on_spawn=spawned.append,
        )
    assert group_empty(spawned[0])


def detached(script: str) -> subprocess.Popen[bytes]:
    """A process group as an earlier agent process would have left it."""
    return subprocess.Popen(["/bin/sh", "-c", script], start_new_session=True, stdin=subprocess.DEVNULL)


def test_kill_process_group_ends_a_detached_group() -> None:
    proc = detached("sleep 300 & sleep 300")
    try:
        assert kill_process_group(proc.pid, grace=5)
        assert group_empty(proc.pid)
        assert not kill_process_group(proc.pid, grace=5)  # nothing left
    finally:
        proc.wait()


def ignores_term(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def test_kill_process_group_uses_sigkill_when_term_is_ignored() -> None:
    proc = detached("trap '' TERM; while :; do sleep 1; done")
    try:
        # The shell needs a moment to install its trap; a TERM arriving before would end it the easy way.
        # (test the TERM bit alone: a parent started in the background may leave INT and QUIT ignored too)
        while not ignores_term(proc.pid):
            threading.Event().wait(0.01)
        assert kill_process_group(proc.pid, grace=0.5)
        assert group_empty(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode in {-signal.SIGKILL, 0}  # reaped by kill_process_group (0) or by wait


def test_kill_process_group_of_a_vanished_group() -> None:
    proc = detached("exit 0")
    proc.wait()
    assert not kill_process_group(proc.pid, grace=1)
