"""A failing install leaves the previous revision's files exactly as they were (needs root: mount, setpriv)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import InstallFailed
from agent.install.installer import execute_install
from tests.conftest import REPO
from tests.unit.install.helpers import install, plan, snapshot, spec, temp_files, write_tree

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_filesystem_fails_cleanly(tmp_path: Path, small_fs: Path) -> None:
    dest = small_fs / "app"
    v1 = {f"f{i}.bin": bytes([i]) * 50_000 for i in range(10)}
    first = install(spec(("/", str(dest))), write_tree(tmp_path / "v1", v1))
    before = snapshot(dest)

    # v2 changes every file, adds a folder, and needs far more room than the 2 MB filesystem has
    v2 = {f"f{i}.bin": bytes([100 + i]) * 300_000 for i in range(10)}
    v2["new/deeper/g.bin"] = b"g" * 1000
    p = plan(spec(("/", str(dest))), write_tree(tmp_path / "v2", v2), first.manifest)
    assert any(r == "InstallFailed" and "not enough free space" in m for r, m in p.problems)
    with pytest.raises(InstallFailed, match="not enough free space"):
        p.raise_for_problems()

    # the estimate is advisory for execute_install: the real write fails, and is undone
    with pytest.raises(InstallFailed) as caught:
        execute_install(p, first.manifest)
    message = str(caught.value)
    assert "No space left on device" in message
    assert str(dest) in message
    assert snapshot(dest) == before  # same inodes, modes and bytes
    assert not temp_files(small_fs)
    assert not (dest / "new").exists()


def test_permission_denied_fails_cleanly(tmp_path: Path) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    dest = tmp_path / "app"
    v1 = {"a.txt": b"a1", "locked/b.txt": b"b1", "z.txt": b"z1"}
    first = install(spec(("/", str(dest))), write_tree(tmp_path / "v1", v1))
    (tmp_path / "manifest.json").write_text(json.dumps(first.manifest.to_dict()))
    write_tree(tmp_path / "v2", {"a.txt": b"a2", "locked/b.txt": b"b2", "locked/c.txt": b"c2", "z.txt": b"z2"})
    os.chmod(dest / "locked", 0o500)
    before = snapshot(dest)

    # root without CAP_DAC_OVERRIDE obeys the folder's mode like any user would
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from agent.errors import BerthError\n"
        "from agent.install.installer import execute_install\n"
        "from agent.install.manifest import Manifest\n"
        "from agent.install.planner import plan_install\n"
        "from agent.model.appspec import AppSpec, FileMapping\n"
        "tmp = Path(sys.argv[1])\n"
        "prev = Manifest.from_dict(json.loads((tmp / 'manifest.json').read_text()))\n"
        "spec = AppSpec(files=(FileMapping('/', str(tmp / 'app')),))\n"
        "try:\n"
        "    execute_install(plan_install(spec, tmp / 'v2', prev, 'DISALLOW'), prev)\n"
        "except BerthError as exc:\n"
        "    print(exc.reason, exc)\n"
        "    sys.exit(3)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all",
         sys.executable, "-c", script, str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.startswith("InstallFailed ")
    assert "Permission denied" in done.stdout and str(dest / "locked") in done.stdout
    assert snapshot(dest) == before
    assert not temp_files(dest)
