"""The .deb on Debian 12 (python3 3.11) under a real systemd booted as PID 1 inside a debootstrap root.

One root for the whole module, in the order an operator meets the package: install (enabled, not started), start
(READY), deploy a command from the spool, upgrade while idle (restarted) and during a deployment (not restarted),
stop, `berth clean`, remove (config and state stay), purge.
The host's own root filesystem never sees systemd: see tests/package/systemd_boot.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.package.conftest import FOOTPRINT_FILE, Built, host_fingerprint, report
from tests.package.roots import REPO, wait_for
from tests.package.systemd_boot import BootedSystemd

pytestmark = [pytest.mark.package, pytest.mark.timeout(1200)]

EXAMPLE = REPO / "appspec_examples" / "static-site"
SITE = "opt/berth-examples/static-site/public"
UNIT = "berth-agent.service"
# A revision whose AfterInstall hook holds the deployment until the test creates /var/tmp/release.
HELD_APPSPEC = """version: 0.0
os: linux
files:
  - source: app
    destination: /srv/held-app
hooks:
  AfterInstall:
    - location: hold.sh
      timeout: 300
"""
HOLD_SH = "#!/bin/sh\ntouch /var/tmp/holding\nwhile [ ! -e /var/tmp/release ]; do sleep 0.1; done\n"

# Paths that change under a booted system whatever berth does (package manager and journal bookkeeping).
NOISE = re.compile(
    r"^(var/lib/dpkg|var/lib/apt|var/cache|var/log/apt|var/log/journal|var/lib/systemd/(?!deb-systemd)"
    r"|var/tmp|var/lib/logrotate|var/lib/dbus|etc/machine-id)(/|$)"
    r"|^var/log/(dpkg|alternatives)\.log$|^etc/ld\.so\.cache$"
)
# What a removal may leave: configuration and state (plus the application berth deployed).
KEPT = re.compile(
    r"^(etc/berth|var/lib/berth|var/log/berth|opt/berth-examples|srv/held-app)(/|$)|^etc/logrotate\.d/berth-agent$"
    r"|^etc/systemd/system/(multi-user\.target\.wants/)?berth-agent\.service$"
    r"|^var/lib/systemd/deb-systemd-helper-(enabled|masked)(/|$)"
)


@dataclass
class Host:
    root: Path
    sd: BootedSystemd
    before: set[str]
    install: subprocess.CompletedProcess[str]
    install_seconds: float
    deployment_id: str | None = None


def snapshot(root: Path) -> set[str]:
    """Every path in the root as seen from the host (the booted system's /proc, /run, /tmp are not on disk)."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel in ("proc", "sys", "dev", "run", "tmp"):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            found.add(os.path.normpath(os.path.join(rel, name)))
    return found


@pytest.fixture(scope="module")
def host(packages: Built, upgrade_deb: Path, make_root: Callable[[str], AbstractContextManager[Path]],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    fingerprint = host_fingerprint()
    with make_root("bookworm") as root:
        for deb in (packages.deb, upgrade_deb):
            shutil.copy(deb, root / "var/tmp" / deb.name)
        shutil.copytree(EXAMPLE, root / "var/tmp/static-site")
        held = root / "var/tmp/held-app"
        (held / "app").mkdir(parents=True)
        (held / "app/index.txt").write_text("held\n")
        (held / "appspec.yml").write_text(HELD_APPSPEC)
        (held / "hold.sh").write_text(HOLD_SH)
        (held / "hold.sh").chmod(0o755)
        log = tmp_path_factory.mktemp("bookworm") / "systemd.log"
        with BootedSystemd(root, log) as sd:
            before = snapshot(root)
            started = time.monotonic()
            install = sd.run("apt-get", "install", "-y", "--no-install-recommends", f"/var/tmp/{packages.deb.name}",
                             check=False)
            yield Host(root, sd, before, install, time.monotonic() - started)
    assert host_fingerprint() == fingerprint, "booting systemd in the root changed the host"


def test_install_enables_the_service_but_does_not_start_it(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    assert host.install.returncode == 0, host.install.stdout + host.install.stderr
    assert "berth agent check: all good" in host.install.stdout, "the post-install self-check must run and pass"
    assert host.sd.systemctl("is-enabled", UNIT).stdout.strip() == "enabled"
    active = host.sd.systemctl("is-active", UNIT, check=False)
    assert active.stdout.strip() == "inactive"
    du = host.sd.run("du", "-sk", "/opt/berth").stdout.split()[0]
    files = host.sd.run("find", "/opt/berth", "-type", "f").stdout.count("\n")
    python = host.sd.run("python3", "--version").stdout.strip()
    biggest = host.sd.run("sh", "-c", "du -sk /opt/berth/lib/* | sort -n | tail -4").stdout.split("\n")
    text = (f"/opt/berth footprint on Debian 12 ({python}): {int(du) / 1024:.1f} MiB in {files} files "
            f"(byte-code for this Python included); biggest: "
            + ", ".join(f"{Path(p).name} {int(k) / 1024:.1f} MiB" for k, p in (ln.split() for ln in biggest if ln)))
    FOOTPRINT_FILE.write_text(text + "\n")
    report(capsys, f"[package] {text}\n[package] apt-get install took {host.install_seconds:.1f} s")


def test_unit_and_logrotate_rules_verify_inside_the_root(host: Host) -> None:
    verify = host.sd.run("systemd-analyze", "verify", f"/usr/lib/systemd/system/{UNIT}", check=False)
    lines = [ln for ln in (verify.stdout + verify.stderr).splitlines() if "berth" in ln]
    assert verify.returncode == 0 and not lines, verify.stdout + verify.stderr
    rotate = host.sd.run("logrotate", "--debug", "/etc/logrotate.d/berth-agent", check=False)
    assert rotate.returncode == 0 and "error" not in rotate.stderr.lower(), rotate.stderr


def test_start_waits_for_ready_and_the_agent_runs(host: Host) -> None:
    # Type=notify: `systemctl start` returns only once the agent has sent READY=1.
    start = host.sd.systemctl("start", UNIT, check=False, timeout=180)
    journal = host.sd.run("journalctl", "-u", UNIT, "--no-pager", check=False).stdout
    assert start.returncode == 0, start.stderr + journal
    show = host.sd.systemctl("show", "-p", "ActiveState", "-p", "SubState", "-p", "StatusText", UNIT).stdout
    assert "ActiveState=active" in show and "SubState=running" in show, show + journal
    status = host.sd.run("berth", "agent", "status", "--json", check=False)
    assert '"state": "idle"' in status.stdout, status.stdout + status.stderr


def test_a_command_dropped_in_the_spool_is_deployed(host: Host) -> None:
    send = host.sd.run("berth", "command", "send", "--spool", "/var/lib/berth/spool", "--bundle",
                       "/var/tmp/static-site", check=False)
    assert send.returncode == 0, send.stdout + send.stderr
    deployment_id = send.stdout.split()[-1]
    wait = host.sd.run("berth", "command", "wait", deployment_id, "--spool", "/var/lib/berth/spool",
                       "--timeout", "120", check=False, timeout=180)
    journal = host.sd.run("journalctl", "-u", UNIT, "--no-pager", check=False).stdout
    assert wait.returncode == 0, wait.stdout + wait.stderr + journal
    assert (host.root / SITE / "index.html").is_file()
    host.deployment_id = deployment_id


def _main_pid(host: Host) -> str:
    return host.sd.systemctl("show", "-p", "MainPID", "--value", UNIT).stdout.strip()


def test_an_upgrade_of_an_idle_agent_restarts_it_on_the_new_version(host: Host, upgrade_deb: Path) -> None:
    before = _main_pid(host)
    upgrade = host.sd.run("apt-get", "install", "-y", f"/var/tmp/{upgrade_deb.name}", check=False)
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert "the agent is idle: restarting it on the new version" in upgrade.stdout
    assert host.sd.systemctl("is-active", UNIT).stdout.strip() == "active"
    assert _main_pid(host) not in (before, "0")
    assert host.sd.run("dpkg-query", "-W", "-f", "${Version}", "berth-agent").stdout.endswith("+upgrade1")


def test_an_upgrade_during_a_deployment_leaves_the_agent_alone(host: Host, upgrade_deb: Path) -> None:
    release = host.root / "var/tmp/release"
    try:
        send = host.sd.run("berth", "command", "send", "--spool", "/var/lib/berth/spool", "--bundle",
                           "/var/tmp/held-app", "--application", "held", check=False)
        assert send.returncode == 0, send.stdout + send.stderr
        deployment_id = send.stdout.split()[-1]
        wait_for(lambda: (host.root / "var/tmp/holding").exists(), 60, "the held deployment's AfterInstall hook")
        before = _main_pid(host)
        # Re-installing runs the same maintainer scripts as an upgrade (prerm upgrade, postinst configure <ver>).
        upgrade = host.sd.run("dpkg", "-i", f"/var/tmp/{upgrade_deb.name}", check=False)
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        assert "the running agent is deploying: NOT restarting it" in upgrade.stderr
        assert "systemctl restart berth-agent.service" in upgrade.stderr
        assert _main_pid(host) == before
    finally:
        release.touch()  # never leave the hook holding: stopping the agent would then wait for shutdown_grace
    wait = host.sd.run("berth", "command", "wait", deployment_id, "--spool", "/var/lib/berth/spool",
                       "--timeout", "120", check=False, timeout=180)
    assert wait.returncode == 0, wait.stdout + wait.stderr
    assert (host.root / "srv/held-app/index.txt").is_file()
    assert _main_pid(host) == before


def test_stop_is_clean(host: Host) -> None:
    stop = host.sd.systemctl("stop", UNIT, check=False, timeout=400)
    assert stop.returncode == 0, stop.stderr
    show = host.sd.systemctl("show", "-p", "ActiveState", "-p", "Result", "-p", "ExecMainStatus", UNIT).stdout
    assert "ActiveState=inactive" in show and "Result=success" in show, show
    assert host.sd.run("berth", "agent", "status", "--json", check=False).stdout.count('"state": "stopped"') == 1


def test_clean_before_a_snapshot_keeps_only_the_configuration(host: Host) -> None:
    clean = host.sd.run("berth", "clean", check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert list((host.root / "var/lib/berth").iterdir()) == []
    assert list((host.root / "var/log/berth").iterdir()) == []
    assert (host.root / "etc/berth/agent.yml").is_file()
    assert host.sd.run("berth", "agent", "check", check=False).returncode == 0
    assert host.sd.systemctl("is-enabled", UNIT).stdout.strip() == "enabled"


def test_remove_leaves_only_configuration_and_state(host: Host) -> None:
    # Give the removal some state to keep: a deployment made after the clean. The clean forgot what berth installed,
    # so the site's files now count as not installed by berth: OVERWRITE, as for a first deployment on an image.
    deploy = host.sd.run("berth", "deploy-local", "--bundle", "/var/tmp/static-site", "--file-exists-behavior",
                         "OVERWRITE", check=False)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    remove = host.sd.run("apt-get", "remove", "-y", "berth-agent", check=False)
    assert remove.returncode == 0, remove.stdout + remove.stderr
    for gone in ("opt/berth", "usr/bin/berth", f"usr/lib/systemd/system/{UNIT}"):
        assert not os.path.lexists(host.root / gone), f"{gone} is still there after removal"
    assert (host.root / "etc/berth/agent.yml").is_file()
    assert any((host.root / "var/lib/berth").iterdir()), "the state must survive a removal"
    new = {p for p in snapshot(host.root) - host.before if not NOISE.search(p)}
    assert new, "nothing kept at all?"
    assert sorted(p for p in new if not KEPT.search(p)) == []


def test_purge_leaves_nothing(host: Host) -> None:
    purge = host.sd.run("apt-get", "purge", "-y", "berth-agent", check=False)
    assert purge.returncode == 0, purge.stdout + purge.stderr
    new = {p for p in snapshot(host.root) - host.before if not NOISE.search(p)}
    assert sorted(p for p in new if not re.match(r"(opt/berth-examples|srv/held-app)(/|$)", p)) == []
