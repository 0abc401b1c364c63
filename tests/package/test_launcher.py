"""/opt/berth/bin/python: which interpreter berth runs on, decided at every start (fast; no root needed).

The script looks in /usr/bin; here it is pointed at a folder of fake interpreters that print who they are.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.package.roots import REPO

pytestmark = pytest.mark.package

SELECTOR = REPO / "packaging" / "files" / "python"


def _fake(bin_dir: Path, name: str, version: str) -> None:
    path = bin_dir / name
    # Answers the version question the selector asks when a name says nothing, and otherwise reports its argv.
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$3" = "-c" ]; then [ "{version}" != 3.9 ]; exit $?; fi\n'
        f'echo "{version} $*"\n'
    )
    path.chmod(0o755)


def _run(tmp_path: Path, links: dict[str, str], fakes: dict[str, str],
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, version in fakes.items():
        _fake(bin_dir, name, version)
    for link, target in links.items():
        os.symlink(target, bin_dir / link)
    script = tmp_path / "python"
    script.write_text(SELECTOR.read_text().replace("/usr/bin/", f"{bin_dir}/"))
    script.chmod(0o755)
    return subprocess.run([str(script), "/opt/berth/bin/berth", "--version"], capture_output=True, text=True,
                          check=False, env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_the_distributions_python3_is_used_when_new_enough(tmp_path: Path) -> None:
    proc = _run(tmp_path, {"python3": "python3.13"}, {"python3.13": "3.13", "python3.12": "3.12"})
    assert proc.stdout.startswith("3.13 -I -S /opt/berth/bin/berth --version"), proc.stderr


def test_a_python3_older_than_3_10_gives_way_to_the_newest_python3_n(tmp_path: Path) -> None:
    # Amazon Linux 2023 / RHEL 9: python3 is 3.9; the rpm pulled in python3.11 (and someone added 3.12).
    proc = _run(tmp_path, {"python3": "python3.9"},
                {"python3.9": "3.9", "python3.11": "3.11", "python3.12": "3.12"})
    assert proc.stdout.startswith("3.12 -I -S "), proc.stderr


def test_an_unversioned_python3_is_asked_its_version(tmp_path: Path) -> None:
    assert _run(tmp_path, {}, {"python3": "3.11"}).stdout.startswith("3.11 -I -S ")


def test_berth_python_overrides_the_choice(tmp_path: Path) -> None:
    other = tmp_path / "custom"
    other.mkdir()
    _fake(other, "py", "custom")
    proc = _run(tmp_path, {"python3": "python3.13"}, {"python3.13": "3.13"}, env={"BERTH_PYTHON": str(other / "py")})
    assert proc.stdout.startswith("custom -I -S ")


def test_no_suitable_python_is_a_clear_error(tmp_path: Path) -> None:
    proc = _run(tmp_path, {"python3": "python3.9"}, {"python3.9": "3.9"})
    assert proc.returncode == 127
    assert "no Python 3.10 or newer" in proc.stderr and "python3.11" in proc.stderr
