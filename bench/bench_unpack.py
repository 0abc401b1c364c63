"""Unpacking a many-file tgz revision with agent.fetchers.unpack (in-process) against ``tar -xzf`` of the same file.

Target (issue): at most 1.5x tar's time at 20,000 files, median of 5; the 2,000-file figure is printed too. File
creation speed differs a lot between machines and filesystems, so only the ratio counts; ``--where`` picks the
filesystem to extract on (default ``build/bench/unpack``; try ``/dev/shm`` to see the Python overhead alone).
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from common import bench_dir, fmt_times, interleaved, ratio_line

TARGET = 1.5
_FORMAT = "v1"  # bump when the generated revision changes, so cached archives are rebuilt


def make_revision(path: Path, files: int) -> None:
    """A deterministic tgz shaped like an application: nested folders, small text files, some executables."""
    rng = random.Random(files)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 10))) for _ in range(800)]
    tmp = path.with_suffix(".part")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tf:
        made: set[str] = set()
        for i in range(files):
            folder = f"app/pkg{i // 200:03d}/mod{(i // 20) % 10}"
            parts = folder.split("/")
            for k in range(1, len(parts) + 1):
                d = "/".join(parts[:k])
                if d not in made:
                    made.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
                    tf.addfile(info)
            data = b" ".join(rng.choice(words) for _ in range(rng.randint(4, 700)))
            info = tarfile.TarInfo(f"{folder}/file{i}.{'sh' if i % 10 == 0 else 'txt'}")
            info.size, info.mode, info.mtime = len(data), 0o755 if i % 10 == 0 else 0o644, 1_700_000_000 + i
            tf.addfile(info, io.BytesIO(data))
    tmp.rename(path)


def listing(root: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            p = os.path.join(folder, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size, int(st.st_mtime))
    return out


def measure(source: Path, scratch: Path, runs: int) -> tuple[bool, dict[str, tuple[float, list[float]]]]:
    """Check that unpack and tar -xzf give the same tree, then time both, taking turns."""
    from agent.fetchers.unpack import unpack

    shutil.rmtree(scratch, ignore_errors=True)
    numbers = itertools.count()
    current = [scratch / "none"]

    def fresh() -> None:
        # Every run gets its own new folder, all deleted at the end: deleting one run's files (slow on some
        # filesystems) is not billed to the next run, nor (sync) is its writeback.
        current[0] = scratch / f"run{next(numbers)}" / "out"
        current[0].parent.mkdir(parents=True)
        os.sync()

    def run_tar() -> None:
        current[0].mkdir()
        subprocess.run(["tar", "-xzf", str(source), "-C", str(current[0])], check=True)

    def run_unpack() -> None:
        unpack(source, "tgz", current[0])

    fresh()
    run_tar()
    expected = listing(current[0])
    fresh()
    run_unpack()
    same = listing(current[0]) == expected
    timings = interleaved(runs, {"tar": run_tar, "unpack": run_unpack}, setup=fresh)
    shutil.rmtree(scratch, ignore_errors=True)
    return same, timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", default="2000,20000", help="comma-separated file counts (default 2000,20000)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each side; the median counts (default 5)")
    parser.add_argument("--where", type=Path, default=None, help="folder to extract into (default build/bench)")
    args = parser.parse_args()
    if shutil.which("tar") is None:
        print("tar is not installed: no baseline", file=sys.stderr)
        return 1
    cache = bench_dir("unpack")
    where = args.where or cache
    where.mkdir(parents=True, exist_ok=True)
    print(f"extracting in {where}; median of {args.runs}; tar baseline: tar -xzf into a fresh folder")
    for files in (int(n) for n in args.files.split(",")):
        source = cache / f"revision-{files}-{_FORMAT}.tgz"
        if not source.exists():
            make_revision(source, files)
        same, timings = measure(source, where / "extract", args.runs)
        (tar_median, tar_times), (ours_median, ours_times) = timings["tar"], timings["unpack"]
        print(f"{files} files ({source.stat().st_size // 1024} KiB tgz): same tree as tar -xzf: {same}")
        print(f"  tar -xzf runs: {fmt_times(tar_times)}")
        print(f"  unpack runs:   {fmt_times(ours_times)}")
        target = TARGET if files >= 20000 else None
        print(ratio_line(f"  unpack {files} files", ours_median, tar_median, "tar -xzf", target), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
