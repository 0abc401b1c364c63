"""One deployment per group at a time: a second one waits, or fails naming the running deployment."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.errors import Cancelled, DeploymentLocked
from agent.state import StateStore

from .conftest import APP, GROUP

Holder = Callable[[str], "subprocess.Popen[str]"]


def test_a_second_deployment_waits_and_proceeds_when_the_first_ends(
    store: StateStore, holder: Holder, tmp_path: Path
) -> None:
    first = holder("d-1")
    waiting = threading.Event()
    seen: dict[str, bool] = {}

    def second() -> None:
        def cancel() -> bool:
            waiting.set()  # polled only while the lock is busy: proof that we are waiting
            return False

        with store.lock(APP, GROUP, timeout=120, cancel=cancel):
            seen["first_released"] = (tmp_path / "released").exists()
            seen["marker_gone"] = not store.paths.group(APP, GROUP).inflight_file.exists()

    thread = threading.Thread(target=second)
    thread.start()
    assert waiting.wait(60)
    assert first.stdin is not None and first.stdout is not None
    first.stdin.write("done\n")
    first.stdin.flush()
    thread.join(60)
    assert not thread.is_alive()
    assert seen == {"first_released": True, "marker_gone": True}
    assert first.stdout.readline().strip() == "released"


@pytest.mark.parametrize("timeout", [0, 0.2])
def test_a_busy_group_fails_naming_the_running_deployment(store: StateStore, holder: Holder, timeout: float) -> None:
    first = holder("d-running")
    with pytest.raises(DeploymentLocked) as err, store.lock(APP, GROUP, timeout=timeout):
        pytest.fail("the lock was granted while another process held it")
    message = str(err.value)
    assert "d-running" in message
    assert f"pid {first.pid}" in message and "AfterInstall" in message
    assert "once d-running has finished" in message
    assert err.value.reason == "DeploymentLocked"


def test_the_lock_is_released_when_its_holder_is_killed(store: StateStore, holder: Holder) -> None:
    first = holder("d-killed")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    with store.lock(APP, GROUP, timeout=0):
        [marker] = store.find_interrupted()  # and the restarted agent learns which deployment died
        assert marker.deployment_id == "d-killed" and marker.event == "AfterInstall"


def test_other_groups_are_not_blocked(store: StateStore, holder: Holder) -> None:
    holder("d-1")
    with store.lock(APP, "beta", timeout=0), store.lock("blog", GROUP, timeout=0):
        pass


def test_the_same_process_cannot_take_a_group_twice(store: StateStore) -> None:
    with (
        store.lock(APP, GROUP, timeout=0),
        pytest.raises(DeploymentLocked, match="has not started a deployment yet"),
        store.lock(APP, GROUP, timeout=0),
    ):
        pass
    with store.lock(APP, GROUP, timeout=0):  # released on leaving the block
        pass


def test_the_lock_is_released_when_the_block_raises(store: StateStore) -> None:
    with pytest.raises(RuntimeError), store.lock(APP, GROUP, timeout=0):
        raise RuntimeError("deployment failed")
    with store.lock(APP, GROUP, timeout=0):
        pass


def test_a_stopping_agent_stops_waiting(store: StateStore, holder: Holder) -> None:
    holder("d-1")
    with pytest.raises(Cancelled), store.lock(APP, GROUP, timeout=120, cancel=lambda: True):
        pytest.fail("the lock was granted while another process held it")
