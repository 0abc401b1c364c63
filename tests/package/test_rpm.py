"""The .rpm installed with `rpm --root` into a copy of a Debian root, so that its scriptlets really run.

(rpm's database there knows nothing of dpkg's packages, hence --nodeps; python3 3.11 is present.) A failing %post
makes rpm only warn and still exit 0, so the output is checked, not just the exit status.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.package.conftest import Built
from tests.package.roots import chroot, run

pytestmark = [pytest.mark.package, pytest.mark.timeout(1200)]

WANTS = "etc/systemd/system/multi-user.target.wants/berth-agent.service"


def _rpm(root: Path, *args: str) -> tuple[int, str]:
    proc = run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", *args], check=False, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def test_rpm_installs_runs_post_and_erases(packages: Built,
                                          make_root: Callable[[str], AbstractContextManager[Path]]) -> None:
    with make_root("bookworm") as root:
        shutil.copy(packages.rpm, root / "var/tmp" / packages.rpm.name)
        code, out = _rpm(root, "-ivh", "--nodeps", str(root / "var/tmp" / packages.rpm.name))
        assert code == 0, out
        assert "scriptlet failed" not in out and "warning" not in out.lower(), out
        assert "berth agent check: all good" in out, "%post runs the self-check"
        # %post enabled the unit offline (systemctl enable in the chroot) and started nothing.
        assert (root / WANTS).is_symlink()
        assert list((root / "opt/berth/lib/agent").glob("__pycache__/*.cpython-311.pyc"))
        assert _rpm(root, "-q", "berth-agent")[1].strip() == f"berth-agent-{packages.version}-1.noarch"
        assert _rpm(root, "-V", "--nodeps", "berth-agent") == (0, ""), "installed files match the package"
        version = chroot(root, "berth", "--version")
        assert version.stdout.strip() == f"berth {packages.version}"

        code, out = _rpm(root, "-e", "berth-agent")
        assert code == 0 and "scriptlet failed" not in out, out
        for gone in ("opt/berth", "usr/bin/berth", "usr/lib/systemd/system/berth-agent.service", WANTS):
            assert not (root / gone).exists() and not (root / gone).is_symlink(), f"{gone} left after rpm -e"
