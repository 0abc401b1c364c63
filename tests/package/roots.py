"""Minimal Debian roots for the package tests: built once with debootstrap, cached, copied fresh for each test.

Cache layout (``build/package-cache``, git-ignored, removed by ``make clean``)::

    debs/                  .deb files debootstrap downloaded (its --cache-dir)
    apt-<suite>/           .deb files apt downloaded while provisioning a root
    roots/<suite>/         the provisioned root; ``.berth-recipe`` inside names the recipe it was built from
    pip/                   pip's download cache for the package build

A root is rebuilt only when its recipe (suite + extra packages) changes. A test never touches the cached root: it
works on ``cp -a`` of it (about 1 s) and deletes the copy afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "build" / "package-cache"
MIRROR = "http://deb.debian.org/debian"

# suite -> packages installed on top of `debootstrap --variant=minbase`. bookworm boots systemd (PID 1 inside the
# root) and checks the logrotate rules; trixie only needs the distribution's python3 (3.13). python3 is installed
# here rather than pulled in by the berth .deb so that a warm run needs no mirror at all.
RECIPES: dict[str, tuple[str, ...]] = {
    "bookworm": ("systemd", "systemd-sysv", "dbus", "python3", "logrotate"),
    "trixie": ("python3",),
}
_STAMP = ".berth-recipe"


class RootUnavailable(Exception):
    """The root cannot be built here (no mirror); tests skip with this message."""


def run(argv: Sequence[str | os.PathLike[str]], *, timeout: float = 600, check: bool = True,
        env: dict[str, str] | None = None, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; on failure raise with everything it printed."""
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=env,
                          input=input_text, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, argv))} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def mirror_reachable(suite: str) -> bool:
    try:
        with urllib.request.urlopen(f"{MIRROR}/dists/{suite}/Release", timeout=10) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _recipe(suite: str) -> str:
    return f"{suite} minbase + {' '.join(RECIPES[suite])}\n"


def cached_root(suite: str) -> Path:
    """The provisioned root of ``suite``, building it first when the cache lacks it (about a minute)."""
    root = CACHE / "roots" / suite
    stamp = root / _STAMP
    if stamp.is_file() and stamp.read_text() == _recipe(suite):
        return root
    if not mirror_reachable(suite):
        raise RootUnavailable(f"cannot reach {MIRROR} to debootstrap {suite}")
    partial = CACHE / "roots" / f"{suite}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    run(["debootstrap", "--variant=minbase", f"--cache-dir={debs}", suite, partial, MIRROR], timeout=900)
    provision(partial, suite)
    (partial / _STAMP).write_text(_recipe(suite))
    partial.rename(root)
    return root


def provision(root: Path, suite: str) -> None:
    """Install the recipe's packages into a fresh debootstrap root (in a private mount namespace)."""
    apt_cache = CACHE / f"apt-{suite}"
    (apt_cache / "partial").mkdir(parents=True, exist_ok=True)
    # No service may start while provisioning: nothing runs systemd in this chroot yet.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    packages = " ".join(RECIPES[suite])
    script = f"""set -e
R={root}
mount -t proc proc "$R/proc"
mount --bind {apt_cache} "$R/var/cache/apt/archives"
chroot "$R" apt-get update -qq
chroot "$R" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {packages}
umount "$R/var/cache/apt/archives"
umount "$R/proc"
"""
    try:
        run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], timeout=900)
    finally:
        policy.unlink()
    # Package lists are not needed to install a local .deb whose dependencies are present; they only make every
    # copy slower.
    for lists in (root / "var/lib/apt/lists").glob("*_*"):
        lists.unlink()


@contextlib.contextmanager
def fresh_root(suite: str, parent: Path | None = None) -> Iterator[Path]:
    """A throw-away copy of the cached ``suite`` root, gone when the block ends.

    The copy is an overlay: the cached root read-only below, a tmpfs on top taking every write. It appears and
    vanishes at once, where `cp -a` and `rm -rf` of 300 MB take 5-10 s each on this kind of disk. Without overlayfs
    it falls back to `cp -a`.
    """
    source = cached_root(suite)
    base = Path(tempfile.mkdtemp(prefix=f"berth-{suite}-", dir=parent)).resolve()
    target = base / "root"
    try:
        if not _overlay(source, base, target):
            run(["cp", "-a", source, target], timeout=300)
        yield target
    finally:
        remove_tree(base)


def _overlay(lower: Path, base: Path, target: Path) -> bool:
    if run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=8g", "tmpfs", base], check=False).returncode != 0:
        return False
    for sub in ("upper", "work", "root"):
        (base / sub).mkdir()
    options = f"lowerdir={lower},upperdir={base / 'upper'},workdir={base / 'work'}"
    if run(["mount", "-t", "overlay", "overlay", "-o", options, target], check=False).returncode == 0:
        return True
    run(["umount", base])
    return False


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        mounted = [line.split()[4] for line in fh]
    prefix = str(path.resolve())
    return [m for m in mounted if m == prefix or m.startswith(prefix + "/")]


def remove_tree(path: Path) -> None:
    """Unmount whatever is mounted at or under ``path`` (deepest first), then delete what is left.

    Deleting never starts while a mount remains: rm would follow it into the host.
    """
    for mount in sorted(_mounts_under(path), key=len, reverse=True):
        if run(["umount", mount], check=False).returncode != 0:
            run(["umount", "--lazy", mount], check=False)
    busy = _mounts_under(path)
    if busy:
        raise AssertionError(f"not deleting {path}: still mounted there: {busy}")
    shutil.rmtree(path, ignore_errors=True)


def chroot(root: Path, *argv: str, timeout: float = 600, check: bool = True,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` chrooted into ``root`` with /proc, /dev and /tmp set up in a private mount namespace."""
    quoted = " ".join(_sh_quote(a) for a in argv)
    script = f"""set -e
R={_sh_quote(str(root))}
mount -t proc proc "$R/proc"
mount --bind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/tmp"
set +e
chroot "$R" {quoted}
rc=$?
umount "$R/tmp" "$R/dev" "$R/proc"
exit $rc
"""
    full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
                "DEBIAN_FRONTEND": "noninteractive"}
    full_env.update(env or {})
    return run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], timeout=timeout,
               check=check, env=full_env)


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def wait_for(predicate: object, timeout: float, what: str) -> None:
    """Poll ``predicate()`` until true; fail naming ``what`` after ``timeout`` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)
