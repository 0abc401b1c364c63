"""Fixtures for the state tests: a store under tmp_path and a second process that holds a group's lock."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.paths import Paths
from agent.state import StateStore

APP, GROUP = "shop", "prod"

# A separate agent process: takes the group lock, starts a deployment, says "locked", waits for a line on stdin,
# then leaves a flag file and releases the lock by leaving the ``with`` block.
HOLDER = """
import sys
from pathlib import Path
from agent.paths import Paths
from agent.state import StateStore
root, app, group, dep, flag = sys.argv[1:]
store = StateStore(Paths(Path(root)))
with store.lock(app, group, timeout=0):
    store.begin(app, group, dep, command_id="cmd-1")
    store.mark_event(app, group, "AfterInstall")
    print("locked", flush=True)
    sys.stdin.readline()
    store.end(app, group)
    Path(flag).write_text("released")
print("released", flush=True)
"""


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "root")


@pytest.fixture
def store(paths: Paths) -> StateStore:
    return StateStore(paths)


@pytest.fixture
def holder(paths: Paths, tmp_path: Path, berth_env: dict[str, str]) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """Start a process holding the lock of shop/prod for deployment ``dep``; returns once it holds it."""
    procs: list[subprocess.Popen[str]] = []

    def start(dep: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(paths.root), APP, GROUP, dep, str(tmp_path / "released")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=berth_env,
        )
        procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream:
                stream.close()
