"""Fixtures shared by integration tests: the hook-marker environment of revisions built by tests.fakes.revisions,
and for the AWS tests one moto server per module, a fresh world per test, and the agent processes a test started
(killed at its end)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.moto_server import MotoServer, moto_server
from tests.integration.aws_harness import AgentProcess, World

BUCKET = "releases"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Environment for berth runs whose hook scripts append "<event> <version>" to a markers file."""
    markers = tmp_path / "markers.log"
    markers.touch()
    return {"BERTH_TEST_MARKERS": str(markers)}


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def world(moto: MotoServer) -> World:
    """A moto server emptied for this test, with the revisions bucket created."""
    moto.reset()
    w = World(moto.url)
    w.bucket(BUCKET)
    return w


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.kill()
