"""Shared fixtures. Tests write only under temporary folders and talk only to 127.0.0.1."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "appspec_examples"
BERTH = [sys.executable, "-m", "agent"]


@pytest.fixture
def berth_env() -> dict[str, str]:
    """Environment for running ``berth`` as a subprocess from the source tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    return env
