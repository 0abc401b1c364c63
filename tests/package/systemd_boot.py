"""Boot a real systemd as PID 1 inside a Debian root -- never on the host's own root filesystem.

The recipe (docs: /work/shared/design/TESTING-NOTES.md, "systemd"): new PID, mount and UTS namespaces; inside them
the root is bind-mounted onto itself (units with PrivateTmp=/ProtectSystem= need a mount point), gets its own proc
with a read-only /proc/sys (so the chrooted systemd cannot change the host's kernel settings), a read-only sysfs
of its own with a private tmpfs on /sys/fs/cgroup, a private /dev,
/run and /tmp, and then ``chroot ROOT /lib/systemd/systemd``. Powering off ends the PID namespace, which takes every
mount with it; the empty cgroup folders systemd leaves in the host's hierarchies are removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.package.roots import run, wait_for

CGROUP_FS = Path("/sys/fs/cgroup")

_BOOT_SCRIPT = r"""set -e
R="$1"
case "$R" in /?*) ;; *) echo "refusing to boot systemd on root '$R'" >&2; exit 1 ;; esac
[ "$(stat -c %d:%i "$R")" != "$(stat -c %d:%i /)" ] || { echo "refusing: $R is the host's root" >&2; exit 1; }
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount --bind "$R/proc/sys" "$R/proc/sys"
mount -o remount,bind,ro "$R/proc/sys"
# A sysfs of our own, read-only, with a private tmpfs for the cgroup mount points: with `--rbind /sys` the chrooted
# systemd remounts the host's /sys/fs/cgroup tmpfs (a shared superblock) read-only and leaves folders in it. The
# host's cgroup hierarchies are bind-mounted in as they are: left to mount cgroup2 itself, systemd would add
# `nsdelegate` to the host's (single) cgroup2 superblock.
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount -t tmpfs -o mode=0755,nosuid,nodev,noexec tmpfs "$R/sys/fs/cgroup"
for h in /sys/fs/cgroup/*; do
    if [ -L "$h" ]; then
        cp -P "$h" "$R$h"
    elif mountpoint -q "$h"; then
        mkdir -p "$R$h"
        mount --bind "$h" "$R$h"
    fi
done
mount -t tmpfs -o mode=0755,nosuid tmpfs "$R/dev"
for node in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
    set -- $node
    mknod -m 0666 "$R/dev/$1" c "$2" "$3"
done
mkdir -p "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
exec chroot "$R" env container=other /lib/systemd/systemd --system
"""


class BootedSystemd:
    """``with BootedSystemd(root, log) as sd:`` -- systemd runs as PID 1 of a new PID namespace chrooted in root."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root.resolve()
        self.log = log
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._cgroups_before: set[Path] = set()

    def __enter__(self) -> BootedSystemd:
        here, host = self.root.stat(), Path("/").stat()
        if self.root == Path("/") or (here.st_dev, here.st_ino) == (host.st_dev, host.st_ino):
            raise AssertionError("refusing to boot systemd on the host's root filesystem")
        self._cgroups_before = _cgroup_dirs()
        script = self.log.with_suffix(".boot.sh")
        script.write_text(_BOOT_SCRIPT)
        with open(self.log, "wb") as out:
            self._proc = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount", "--uts", "--propagation", "private",
                 "sh", str(script), str(self.root)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            wait_for(self._find_pid, 20, "the namespace's first process")
            wait_for(self._systemd_ready, 60, f"systemd to open its private socket (log: {self.log})")
            # Wait until boot has finished (running or degraded); is-system-running --wait blocks until then.
            self.run("systemctl", "is-system-running", "--wait", check=False, timeout=120)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _find_pid(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise AssertionError(f"unshare exited {self._proc.returncode}: {self.log.read_text(errors='replace')}")
        children = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children")
        with contextlib.suppress(OSError):
            text = children.read_text().split()
            if text:
                self.pid = int(text[0])
                return True
        return False

    def _systemd_ready(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise AssertionError(f"systemd exited: {self.log.read_text(errors='replace')}")
        try:
            comm = Path(f"/proc/{self.pid}/comm").read_text().strip()
        except OSError:
            return False
        return comm == "systemd" and Path(f"/proc/{self.pid}/root/run/systemd/private").exists()

    def run(self, *argv: str, check: bool = True, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the booted root (its namespaces, root and working folder)."""
        full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
                    "DEBIAN_FRONTEND": "noninteractive", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
        full_env.update(env or {})
        return run(["nsenter", "-t", str(self.pid), "-m", "-p", "-u", "-r", "-w", *argv], check=check,
                   timeout=timeout, env=full_env)

    def systemctl(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, check=check, timeout=timeout)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None and self.pid:
                # SIGRTMIN+4: systemd's "poweroff now"; the PID namespace and every mount in it go with it.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGRTMIN + 4)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
            if proc.poll() is None:
                # Killing PID 1 of the namespace kills everything in it.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        finally:
            self._proc = None
            _remove_new_cgroups(self._cgroups_before)


def _cgroup_dirs() -> set[Path]:
    found: set[Path] = set()
    for dirpath, _dirs, _files in os.walk(CGROUP_FS):
        found.add(Path(dirpath))
    return found


def _remove_new_cgroups(before: set[Path]) -> None:
    """rmdir (deepest first) the cgroup folders the booted systemd created in the host's hierarchies."""
    deadline = time.monotonic() + 10
    while True:
        leftover = sorted(_cgroup_dirs() - before, key=lambda p: len(p.parts), reverse=True)
        for path in leftover:
            with contextlib.suppress(OSError):
                path.rmdir()
        if not (_cgroup_dirs() - before) or time.monotonic() > deadline:
            return
        time.sleep(0.2)  # a cgroup whose last process is exiting cannot be removed yet
