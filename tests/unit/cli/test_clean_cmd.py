"""``berth clean``: empties state and logs before an image snapshot, keeps configuration, refuses mid-deployment."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.daemon.status import write_status
from agent.paths import Paths
from agent.state.store import StateStore


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host layout under tmp_path: config in etc/, state in state/, logs in logs/, with some of everything."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "agent.yml").write_text(f"root: {tmp_path / 'state'}\nlog_dir: {tmp_path / 'logs'}\n")
    paths = Paths(tmp_path / "state")
    group = paths.group("shop", "web")
    revision = group.deployment("d-AAAAAAAAA").revision_dir
    revision.mkdir(parents=True)
    (revision / "appspec.yml").write_text("version: 0.0\nos: linux\n")
    group.manifest_file.write_text("{}")
    (paths.spool_dir / "incoming").mkdir(parents=True)
    (paths.spool_dir / "incoming" / "pending.json").write_text("{}")  # would run on every instance of the image
    (paths.root / "instance.json").write_text('{"instance_id": "i-0123"}')
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "agent.log").write_text("x\n")
    return tmp_path


def _clean(host: Path, *extra: str) -> int:
    return main(["clean", "--config", str(host / "etc" / "agent.yml"), *extra])


def test_clean_empties_state_and_logs_and_keeps_the_configuration(host: Path, capsys) -> None:
    assert _clean(host) == 0
    assert list((host / "state").iterdir()) == []
    assert list((host / "logs").iterdir()) == []
    assert (host / "etc" / "agent.yml").is_file()
    out = capsys.readouterr().out
    assert f"removed {host / 'state' / 'groups'}" in out and f"kept {host / 'etc' / 'agent.yml'}" in out


def test_dry_run_lists_and_removes_nothing(host: Path, capsys) -> None:
    assert _clean(host, "--dry-run") == 0
    assert f"would remove {host / 'state' / 'spool'}" in capsys.readouterr().out
    assert (host / "state" / "spool" / "incoming" / "pending.json").is_file()


def test_refuses_while_a_deployment_holds_its_group_lock(host: Path, capsys) -> None:
    store = StateStore(Paths(host / "state"))
    with store.lock("shop", "web", timeout=0):
        assert _clean(host) == 1
    err = capsys.readouterr().err
    assert "refusing" in err and "shop/web" in err
    assert (host / "state" / "groups").is_dir() and (host / "logs" / "agent.log").is_file()


def test_refuses_while_a_live_process_owns_an_in_flight_marker(host: Path, capsys) -> None:
    StateStore(Paths(host / "state")).begin("shop", "web", "d-BBBBBBBBB")  # marker of this (live) process
    assert _clean(host) == 1
    assert "in progress" in capsys.readouterr().err
    assert (host / "state" / "groups").is_dir()


def test_a_marker_left_by_a_dead_agent_is_cleaned_away(host: Path) -> None:
    paths = Paths(host / "state")
    StateStore(paths).begin("shop", "web", "d-BBBBBBBBB")
    dead = subprocess.Popen(["true"])
    dead.wait()
    marker = paths.group("shop", "web").inflight_file
    doc = json.loads(marker.read_text())
    doc.update(pid=dead.pid, pid_start=None)
    marker.write_text(json.dumps(doc))
    assert _clean(host) == 0
    assert list((host / "state").iterdir()) == []


def test_refuses_when_the_agent_says_it_is_deploying(host: Path, capsys) -> None:
    write_status(Paths(host / "state").status_file, {
        "state": "deploying", "pid": os.getpid(), "deployment_id": "d-CCCCCCCCC", "application": "shop",
        "deployment_group": "web"})
    assert _clean(host) == 1
    assert "d-CCCCCCCCC" in capsys.readouterr().err


def test_an_idle_running_agent_is_only_a_warning(host: Path, capsys) -> None:
    write_status(Paths(host / "state").status_file, {"state": "idle", "pid": os.getpid()})
    assert _clean(host) == 0
    assert "stop it first" in capsys.readouterr().err


@pytest.mark.parametrize("root", ["/", "/var/lib"])
def test_refuses_a_root_that_must_never_be_emptied(tmp_path: Path, root: str, capsys) -> None:
    config = tmp_path / "agent.yml"
    config.write_text(f"root: {root}\nlog_dir: {tmp_path / 'logs'}\n")
    assert main(["clean", "--config", str(config), "--dry-run"]) == 2
    assert "must never be emptied" in capsys.readouterr().err


def test_refuses_a_root_that_holds_the_configuration(tmp_path: Path, capsys) -> None:
    config = tmp_path / "agent.yml"
    config.write_text(f"root: {tmp_path}\nlog_dir: {tmp_path / 'logs'}\n")
    assert main(["clean", "--config", str(config), "--dry-run"]) == 2
    assert "holds the configuration" in capsys.readouterr().err
    assert config.is_file()


def test_a_spool_outside_the_root_keeps_its_folders_but_loses_its_commands(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    for sub in ("incoming", "processing", "rejected", "reports", "done"):
        (spool / sub).mkdir(parents=True)
    (spool / "incoming" / "c1.json").write_text("{}")
    (spool / "reports" / "d-1.json").write_text("{}")
    config = tmp_path / "agent.yml"
    config.write_text(f"root: {tmp_path / 'state'}\nlog_dir: {tmp_path / 'logs'}\n"
                      f"channel:\n  kind: spool\n  dir: {spool}\n")
    assert main(["clean", "--config", str(config)]) == 0
    assert sorted(p.name for p in spool.iterdir()) == ["done", "incoming", "processing", "rejected", "reports"]
    assert not any(p.is_file() for p in spool.rglob("*"))
