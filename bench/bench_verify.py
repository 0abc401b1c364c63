"""``berth verify`` over an installed revision of many files against ``sha256sum`` of the same files.

Targets (issue): over 20,000 files, ``berth verify --full`` takes at most 1.3x the time of
``find DIR -type f -print0 | xargs -0 sha256sum > /dev/null``, and plain ``berth verify`` (fast path: nothing changed,
so size and mtime match and nothing is re-hashed) at most 0.2x. Both sides run as whole processes, median of 5,
taking turns; file contents are in the page cache for both (a warm-up round runs first).

Files are 16-64 KiB (uniformly random sizes, about 800 MB in all at 20,000 files) in folders of 20, ten folders per
package, as an application tree. The revision is deployed once with ``berth deploy-local`` (untimed); everything
lives under ``build/bench/verify`` and is removed at the end unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

from common import REPO, bench_dir, fmt_times, interleaved, ratio_line

TARGET_FULL = 1.3
TARGET_FAST = 0.2
MIN_SIZE = 16 * 1024
MAX_SIZE = 64 * 1024


def make_revision(root: Path, dest: Path, files: int) -> int:
    """A revision folder of ``files`` files under app/ with an appspec installing app/ to ``dest``; total bytes."""
    rng = random.Random(files)
    block = rng.randbytes(MAX_SIZE * 2)
    total = 0
    for i in range(files):
        folder = root / "app" / f"pkg{i // 200:03d}" / f"mod{(i // 20) % 10}"
        if i % 20 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(MIN_SIZE, MAX_SIZE)
        start = rng.randrange(0, MAX_SIZE)
        (folder / f"file{i}.dat").write_bytes(block[start:start + size - 8] + i.to_bytes(8, "little"))
        total += size
    (root / "appspec.yml").write_text(
        f"version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: {json.dumps(str(dest))}\n"
    )
    return total


def berth_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent", *args]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000, help="number of files (default 20000)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each contender; the median counts (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep build/bench/verify afterwards")
    args = parser.parse_args()
    if shutil.which("sha256sum") is None or shutil.which("xargs") is None:
        print("sha256sum/xargs are not installed: no baseline", file=sys.stderr)
        return 1

    work = bench_dir("verify")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    try:
        rev, dest, state = work / "revision", work / "installed", work / "state"
        total = make_revision(rev, dest, args.files)
        print(f"{args.files} files of {MIN_SIZE // 1024}-{MAX_SIZE // 1024} KiB ({total / 2**20:.0f} MiB); "
              f"median of {args.runs}, whole processes", flush=True)
        deployed = subprocess.run(berth_argv("deploy-local", "--bundle", str(rev), "--root", str(state), "--json"),
                                  env=env, stdout=subprocess.DEVNULL, check=False)
        if deployed.returncode != 0:
            print("the deployment of the bench revision failed", file=sys.stderr)
            return 1
        shutil.rmtree(rev)  # only the installed copy and berth's retained copy are needed now
        baseline = f"find {str(dest)!r} -type f -print0 | xargs -0 sha256sum > /dev/null"

        def run_sha256sum() -> None:
            subprocess.run(["sh", "-c", baseline], check=True)

        def verify(*extra: str) -> None:
            proc = subprocess.run(berth_argv("verify", "--root", str(state), "--json", *extra), env=env,
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"berth verify {' '.join(extra)} exited {proc.returncode}: {proc.stdout[-2000:]}"
                                 f"{proc.stderr[-2000:]}")
            doc = json.loads(proc.stdout)
            if doc["checked"] < args.files:
                raise SystemExit(f"berth verify checked only {doc['checked']} paths")

        run_sha256sum()  # warm-up: every file in the page cache, for both sides
        verify("--full")
        timings = interleaved(args.runs, {
            "sha256sum": run_sha256sum,
            "verify --full": lambda: verify("--full"),
            "verify": verify,
        })
        base, base_times = timings["sha256sum"]
        full, full_times = timings["verify --full"]
        fast, fast_times = timings["verify"]
        print(f"  {baseline.replace(str(dest), 'DIR')} runs: {fmt_times(base_times)}")
        print(f"  berth verify --full runs: {fmt_times(full_times)}")
        print(f"  berth verify (fast path) runs: {fmt_times(fast_times)}")
        print(ratio_line(f"  verify --full, {args.files} files", full, base, "sha256sum", TARGET_FULL))
        print(ratio_line(f"  verify (nothing changed), {args.files} files", fast, base, "sha256sum", TARGET_FAST))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
