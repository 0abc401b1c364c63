"""The same .deb on Debian 13 (python3 3.13), whose site-packages hold a broken yaml and an old boto3.

berth must not care: it runs `python3 -I -S` with only the standard library and /opt/berth/lib on sys.path.
No systemd is booted here; commands run chrooted into a copy of the cached root.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.package.conftest import Built, report
from tests.package.roots import REPO, chroot

pytestmark = [pytest.mark.package, pytest.mark.timeout(1200)]

EXAMPLE = REPO / "appspec_examples" / "static-site"
SITE = "opt/berth-examples/static-site/public"

BROKEN_YAML = 'raise ImportError("this is the system\'s broken yaml: berth must never import it")\n'
OLD_BOTO3 = '__version__ = "1.4.0"\nraise RuntimeError("boto3 1.4.0 of the system site-packages: not berth\'s")\n'
# A .pth line starting with "import" is executed by `site` at every interpreter start: this one ends the process.
EVIL_PTH = "import os; os._exit(97)\n"


@dataclass
class Root:
    path: Path
    install: subprocess.CompletedProcess[str]
    seconds: float


@pytest.fixture(scope="module")
def trixie(packages: Built, make_root: Callable[[str], AbstractContextManager[Path]]) -> Iterator[Root]:
    with make_root("trixie") as root:
        shutil.copy(packages.deb, root / "var/tmp" / packages.deb.name)
        shutil.copytree(EXAMPLE, root / "var/tmp/static-site")
        started = time.monotonic()
        install = chroot(root, "apt-get", "install", "-y", "--no-install-recommends",
                         f"/var/tmp/{packages.deb.name}", check=False)
        yield Root(root, install, time.monotonic() - started)


def test_installs_on_python_3_13_enabled_and_checked(trixie: Root, capsys: pytest.CaptureFixture[str]) -> None:
    assert trixie.install.returncode == 0, trixie.install.stdout + trixie.install.stderr
    assert "Python 3.13" in trixie.install.stdout and "berth agent check: all good" in trixie.install.stdout
    # No systemd runs in this chroot: enabling is the wants symlink, created offline.
    assert (trixie.path / "etc/systemd/system/multi-user.target.wants/berth-agent.service").is_symlink()
    # postinst byte-compiled for the interpreter berth runs on, in version-tagged caches.
    assert list((trixie.path / "opt/berth/lib/agent").glob("__pycache__/*.cpython-313.pyc"))
    report(capsys, f"[package] Debian 13: apt-get install took {trixie.seconds:.1f} s")


def test_broken_system_site_packages_do_not_reach_berth(trixie: Root) -> None:
    root = trixie.path
    py = "python3.13"
    for site in ("usr/lib/python3/dist-packages", f"usr/local/lib/{py}/dist-packages",
                 f"root/.local/lib/{py}/site-packages", "var/tmp/pythonpath"):
        (root / site / "yaml").mkdir(parents=True, exist_ok=True)
        (root / site / "yaml/__init__.py").write_text(BROKEN_YAML)
        (root / site / "boto3").mkdir(exist_ok=True)
        (root / site / "boto3/__init__.py").write_text(OLD_BOTO3)
    (root / f"usr/local/lib/{py}/dist-packages/zz-evil.pth").write_text(EVIL_PTH)
    hostile = {"PYTHONPATH": "/var/tmp/pythonpath", "PYTHONHOME": "/nonexistent", "PYTHONWARNINGS": "error"}

    # The sabotage is real: the system's own python3 is broken by it.
    assert chroot(root, "python3", "-c", "print(1)", check=False).returncode == 97
    imported = chroot(root, "python3", "-S", "-c", "import yaml", check=False,
                      env={"PYTHONPATH": "/var/tmp/pythonpath"})
    assert "the system's broken yaml" in imported.stderr

    # berth is not.
    version = chroot(root, "berth", "--version", check=False, env=hostile)
    assert version.returncode == 0, version.stdout + version.stderr
    where = chroot(root, "/opt/berth/bin/python", "-c",
                   "import sys; sys.path.insert(0, '/opt/berth/lib'); import yaml, boto3;"
                   "print(yaml.__file__, boto3.__file__, boto3.__version__ != '1.4.0', yaml.__with_libyaml__)",
                   env=hostile).stdout.split()
    assert where[0].startswith("/opt/berth/lib/yaml/") and where[1].startswith("/opt/berth/lib/boto3/")
    assert where[2:] == ["True", "False"], "bundled boto3, pure-Python yaml"

    validate = chroot(root, "berth", "appspec", "validate", "/var/tmp/static-site", check=False, env=hostile)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    deploy = chroot(root, "berth", "deploy-local", "--bundle", "/var/tmp/static-site", check=False, env=hostile)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert (root / SITE / "index.html").is_file()


def test_a_failing_self_check_fails_the_installation_loudly(
        packages: Built, make_root: Callable[[str], AbstractContextManager[Path]]) -> None:
    with make_root("trixie") as root:
        shutil.copy(packages.deb, root / "var/tmp" / packages.deb.name)
        logs = root / "var/log/berth"
        logs.mkdir()
        logs.chmod(0o777)  # anyone could plant or replace the agent's logs
        install = chroot(root, "apt-get", "install", "-y", "--no-install-recommends",
                         f"/var/tmp/{packages.deb.name}", check=False)
        assert install.returncode != 0
        assert "POST-INSTALL SELF-CHECK FAILED" in install.stderr
        assert "/var/log/berth is writable by everyone" in install.stderr
        logs.chmod(0o750)
        configure = chroot(root, "dpkg", "--configure", "-a", check=False)
        assert configure.returncode == 0, configure.stdout + configure.stderr
        assert "berth agent check: all good" in configure.stdout
