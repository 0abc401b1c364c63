"""``berth rollback`` to a retained 2000-file revision against deploying that revision fresh from its tgz.

Target (issue): the rollback takes at most 0.8x the time of the fresh deployment, measured in the same run. Both
start from the same host state (revision A deployed, then revision B, which changes every file), restored from a
template copy before each timed run (untimed, followed by ``sync``), and both run as whole processes:
``berth rollback --to <A's deployment>`` (copies A's retained folder, no download) against
``berth deploy-local --bundle A.tgz`` (unpacks the archive). Median of 5, taking turns.

Files are 1-16 KiB (uniformly random sizes, about 17 MB at 2000 files) in folders of 20, with the five usual hook
scripts (each a trivial shell script) in both revisions. Scratch files live under ``build/bench/rollback`` (or
``--where``) and are removed at the end unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from common import REPO, bench_dir, fmt_times, interleaved, ratio_line

TARGET = 0.8
MIN_SIZE = 1024
MAX_SIZE = 16 * 1024
EVENTS = ("ApplicationStop", "BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService")


def make_revision(root: Path, dest: Path, files: int, version: str) -> None:
    """``files`` files under app/ (content differs per version), hook scripts, an appspec installing app/."""
    rng = random.Random(files)
    block = rng.randbytes(MAX_SIZE * 2)
    stamp = version.encode()
    for i in range(files):
        folder = root / "app" / f"pkg{i // 200:03d}" / f"mod{(i // 20) % 10}"
        if i % 20 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(MIN_SIZE, MAX_SIZE)
        start = rng.randrange(0, MAX_SIZE)
        (folder / f"file{i}.txt").write_bytes(stamp + block[start:start + size - len(stamp)])
    (root / "scripts").mkdir()
    hooks = []
    for event in EVENTS:
        script = root / "scripts" / f"{event}.sh"
        script.write_text(f"#!/bin/sh\necho {event} {version}\n")
        script.chmod(0o755)
        hooks.append(f"  {event}:\n    - location: scripts/{event}.sh\n      timeout: 60\n")
    (root / "appspec.yml").write_text(
        f"version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: {json.dumps(str(dest))}\n"
        "hooks:\n" + "".join(hooks)
    )


def pack(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz", compresslevel=6) as tf:
        tf.add(folder, arcname=".")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="number of files (default 2000)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each contender; the median counts (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder afterwards")
    parser.add_argument("--where", type=Path, default=None,
                        help="scratch folder (default build/bench/rollback; /dev/shm/... leaves the disk out)")
    args = parser.parse_args()

    work = args.where.resolve() if args.where else bench_dir("rollback")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    dest, state = work / "installed", work / "state"
    template = work / "template"

    def berth(*argv: str) -> dict[str, Any]:
        proc = subprocess.run([sys.executable, "-m", "agent", *argv, "--root", str(state), "--json"], env=env,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"berth {' '.join(argv)} exited {proc.returncode}:\n{proc.stdout[-3000:]}"
                             f"{proc.stderr[-3000:]}")
        report: dict[str, Any] = json.loads(proc.stdout)
        return report

    try:
        for version in ("A", "B"):
            make_revision(work / f"rev-{version}", dest, args.files, version)
            pack(work / f"rev-{version}", work / f"{version}.tgz")
            shutil.rmtree(work / f"rev-{version}")
        size = (work / "A.tgz").stat().st_size
        first = berth("deploy-local", "--bundle", str(work / "A.tgz"))["deployment_id"]
        berth("deploy-local", "--bundle", str(work / "B.tgz"))
        template.mkdir()
        for folder in (dest, state):
            subprocess.run(["cp", "-a", str(folder), str(template / folder.name)], check=True)

        def restore() -> None:
            for folder in (dest, state):
                shutil.rmtree(folder)
                subprocess.run(["cp", "-a", str(template / folder.name), str(folder)], check=True)
            os.sync()  # do not bill a run for the restore's writeback

        def run_rollback() -> None:
            report = berth("rollback", "--to", first)
            assert report["status"] == "Succeeded" and report["restores"] == first, report

        def run_fresh() -> None:
            report = berth("deploy-local", "--bundle", str(work / "A.tgz"))
            assert report["status"] == "Succeeded", report

        print(f"{args.files} files of {MIN_SIZE // 1024}-{MAX_SIZE // 1024} KiB ({size // 1024} KiB tgz), 5 hook "
              f"scripts; median of {args.runs}, whole processes", flush=True)
        timings = interleaved(args.runs, {"fresh": run_fresh, "rollback": run_rollback}, setup=restore)
        (fresh, fresh_times), (rollback, rollback_times) = timings["fresh"], timings["rollback"]
        print(f"  deploy-local --bundle A.tgz runs: {fmt_times(fresh_times)}")
        print(f"  rollback --to A runs:             {fmt_times(rollback_times)}")
        print(ratio_line(f"  rollback of {args.files} files", rollback, fresh, "fresh deployment from tgz", TARGET))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
