"""Process helpers that need no child process."""

from __future__ import annotations

import os

import pytest

from agent.hooks.procs import describe_status, kill_process_group


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0, "exited with status 0"),
        (3, "exited with status 3"),
        (-9, "killed by signal SIGKILL"),
        (-15, "killed by signal SIGTERM"),
    ],
)
def test_describe_status(code: int, text: str) -> None:
    assert describe_status(code) == text


@pytest.mark.parametrize("pgid", [0, 1, -5])
def test_kill_refuses_impossible_groups(pgid: int) -> None:
    with pytest.raises(ValueError, match="refusing"):
        kill_process_group(pgid, grace=0)


def test_kill_refuses_the_agents_own_group() -> None:
    with pytest.raises(ValueError, match="refusing"):
        kill_process_group(os.getpgrp(), grace=0)
