"""Fixtures of the package tests: the built .deb/.rpm (once per session) and fresh Debian roots.

These tests need root, debootstrap, rpm (rpmbuild) and Debian's mirror (only while the root cache is cold); they
skip, saying why, when one is missing. ``make test`` installs the tools (target test-deps).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.package.roots import CACHE, REPO, RootUnavailable, fresh_root, remove_tree

BUILD = REPO / "build"
FOOTPRINT_FILE = BUILD / "package-footprint.txt"
TOOLS = ("dpkg-deb", "rpmbuild", "rpm", "debootstrap", "unshare", "nsenter", "chroot", "mountpoint")


@dataclass(frozen=True)
class Built:
    deb: Path
    rpm: Path
    version: str
    seconds: float


@pytest.fixture(scope="session")
def package_host() -> None:
    """Skip unless this host can build packages and make roots (root, and the Debian tools)."""
    if os.geteuid() != 0:
        pytest.skip("package tests need root (debootstrap, chroot, namespaces)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (make test-deps installs them)")


def _build(name: str, *extra: str) -> tuple[list[Path], float]:
    """Run packaging/build.py as `make packages` does, into build/package-test/<name>; return the packages."""
    config = Path(os.environ.get("BERTH_PACKAGE_CONFIG", REPO / "packaging" / "agent.yml"))
    out = BUILD / "package-test" / name
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(REPO / "packaging" / "build.py"), "--out", str(out),
         "--work", str(BUILD / "package-test" / f"work-{name}"), "--cache", str(CACHE), "--config", str(config),
         *extra],
        capture_output=True, text=True, check=False, timeout=900,
    )
    assert proc.returncode == 0, f"packaging/build.py failed:\n{proc.stdout}{proc.stderr}"
    return sorted(out.iterdir()), time.monotonic() - started


@pytest.fixture(scope="session")
def packages(package_host: None) -> Built:
    """Both packages, built once per session."""
    built, seconds = _build("dist")
    debs, rpms = [p for p in built if p.suffix == ".deb"], [p for p in built if p.suffix == ".rpm"]
    assert len(debs) == 1 and len(rpms) == 1, f"expected one .deb and one .rpm: {built}"
    version = debs[0].name.split("_")[1]
    return Built(deb=debs[0], rpm=rpms[0], version=version, seconds=seconds)


@pytest.fixture(scope="session")
def upgrade_deb(packages: Built) -> Path:
    """The same berth packaged as a newer version (<version>+upgrade1), to test upgrades."""
    built, _ = _build("dist-upgrade", "--formats", "deb", "--version", f"{packages.version}+upgrade1")
    return built[0]


@pytest.fixture(scope="session")
def make_root(package_host: None) -> Callable[[str], AbstractContextManager[Path]]:
    """``with make_root("bookworm") as root:`` a throw-away copy of the cached root (skips without a mirror)."""

    @contextmanager
    def factory(suite: str) -> Iterator[Path]:
        try:
            cm = fresh_root(suite, parent=BUILD / "package-test")
            root = cm.__enter__()
        except RootUnavailable as exc:
            pytest.skip(str(exc))
        try:
            yield root
        finally:
            cm.__exit__(None, None, None)

    scratch = BUILD / "package-test"
    scratch.mkdir(parents=True, exist_ok=True)
    for stale in scratch.glob("berth-*"):  # left by a run that was killed (remove_tree refuses if still mounted)
        remove_tree(stale)
    return factory


def host_fingerprint() -> dict[str, str]:
    """What a booted systemd must not change on the host: cgroup mounts, their top folders, two kernel settings."""
    with open("/proc/self/mountinfo") as fh:
        mounts = sorted(line.split(" ", 4)[4] for line in fh if " /sys/fs/cgroup" in line)
    settings = {}
    for name in ("fs/file-max", "net/unix/max_dgram_qlen"):
        settings[name] = Path("/proc/sys", name).read_text().strip()
    top = sorted(p.name for p in Path("/sys/fs/cgroup").iterdir())
    return {"mounts": "\n".join(mounts), "cgroup-top": " ".join(top), **settings}


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Show ``text`` on the terminal even when pytest captures output."""
    with capsys.disabled():
        print(f"\n{text}", flush=True)
