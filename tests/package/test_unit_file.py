"""systemd/berth-agent.service: the settings machine images rely on (fast; no root needed)."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.cli.check_cmd import parse_timespan, unit_stop_timeout
from agent.config import AgentConfig
from tests.package.roots import REPO

pytestmark = pytest.mark.package

UNIT = REPO / "systemd" / "berth-agent.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_unit_is_a_notify_service_with_watchdog_restart_and_kill_switch() -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert parse_timespan(service["WatchdogSec"]) == 60
    assert service["Restart"] == "on-failure"
    assert unit["Unit"]["ConditionPathExists"] == "!/etc/berth/disabled"
    assert service["ExecStart"].startswith("/usr/bin/berth agent run")
    assert (service["StateDirectory"], service["LogsDirectory"], service["ConfigurationDirectory"]) == (
        "berth", "berth", "berth")
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_stop_timeout_outlasts_the_agents_own_graceful_stop() -> None:
    defaults = AgentConfig()
    timeout = parse_timespan(_unit()["Service"]["TimeoutStopSec"])
    assert timeout is not None
    assert timeout > defaults.shutdown_grace + defaults.hook_kill_grace


def test_kill_mode_is_deliberate_and_explained() -> None:
    assert _unit()["Service"]["KillMode"] == "process"
    lines = UNIT.read_text().splitlines()
    at = lines.index("KillMode=process")
    above = []
    for line in reversed(lines[:at]):
        if not line.startswith("#"):
            break
        above.append(line)
    comment = " ".join(reversed(above))
    assert re.search(r"hook", comment, re.IGNORECASE), "the comment above KillMode= must say what happens to hooks"
    assert "survive" in comment.lower()


def test_unit_verifies_with_systemd_analyze(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # ExecStart's binary must exist where the unit is verified: point it at one that does, change nothing else.
    unit = tmp_path / "berth-agent.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/berth ", "/bin/true "))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    # verify only warns (exit 0) about unknown keys and bad values: any line naming the unit is a failure.
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "berth-agent" in ln]
    assert proc.returncode == 0 and not lines, proc.stdout + proc.stderr


def test_check_reads_the_stop_timeout_from_unit_and_drop_ins(tmp_path: Path) -> None:
    system = tmp_path / "usr/lib/systemd/system"
    system.mkdir(parents=True)
    shutil.copy(UNIT, system / "berth-agent.service")
    assert unit_stop_timeout(tmp_path) == 360
    dropin = tmp_path / "etc/systemd/system/berth-agent.service.d"
    dropin.mkdir(parents=True)
    (dropin / "override.conf").write_text("[Service]\nTimeoutStopSec=10min 30s\n")
    assert unit_stop_timeout(tmp_path) == 630
