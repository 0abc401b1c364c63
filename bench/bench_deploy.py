"""Issue 3 figures: whole ``berth deploy-local`` processes against the floor of ``tar -xzf`` + ``cp -a``.

- Redeploying a 20,000-file tgz revision (a ``**`` mode rule over every file, one hook), alternating two revisions in
  which every file's content differs: median of 5 against the floor, peak RSS, and the 2000-file figure (linearity).
- Redeploying a revision in which nothing changed (files left in place).
- Fixed overhead: an empty revision, beside ``python3 -c pass``.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from common import REPO, bench_dir, fmt_times, ratio_line, run_child

RUNS = 5
BERTH = [sys.executable, "-m", "agent"]


def make_tgz(folder: Path, files: int, tag: str, dest: Path) -> Path:
    """A revision of ``files`` small files (every file's content includes ``tag``), a mode rule and one hook."""
    out = folder / f"rev-{files}-{tag}.tgz"
    if out.exists():
        return out
    src = folder / f"src-{files}-{tag}"
    shutil.rmtree(src, ignore_errors=True)
    (src / "scripts").mkdir(parents=True)
    per_dir = 500
    for i in range(files):
        d = src / "app" / f"d{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        (d / f"f{i:05d}.txt").write_text(f"{tag} file {i}\n" + "x" * (i % 200))
    (src / "scripts" / "after.sh").write_text("#!/bin/sh\necho installed\n")
    (src / "scripts" / "after.sh").chmod(0o755)
    (src / "appspec.yml").write_text(
        "version: 0.0\nos: linux\n"
        f"files:\n  - source: app\n    destination: {dest}\n"
        f"permissions:\n  - object: {dest}\n    pattern: '**'\n    mode: 640\n    type: [file]\n"
        "hooks:\n  AfterInstall:\n    - location: scripts/after.sh\n"
    )
    # Packed with GNU tar, as users pack revisions (Python's tarfile would add a pax header to every member).
    subprocess.run(["tar", "-czf", str(out), "-C", str(src), "."], check=True)
    shutil.rmtree(src)
    return out


def floor(tgz: Path, work: Path) -> float:
    """tar -xzf into a fresh folder, then cp -a of the app into a fresh destination."""
    shutil.rmtree(work, ignore_errors=True)
    (work / "x").mkdir(parents=True)
    (work / "dest").mkdir()
    import time

    t0 = time.perf_counter()
    subprocess.run(["tar", "-xzf", str(tgz), "-C", str(work / "x")], check=True)
    subprocess.run(["cp", "-a", f"{work / 'x' / 'app'}/.", str(work / "dest")], check=True)
    return time.perf_counter() - t0


def deploy(tgz: Path, root: Path) -> tuple[float, int]:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    run = run_child([*BERTH, "deploy-local", "--bundle", str(tgz), "--root", str(root), "--json",
                     "--application", "bench", "--deployment-group", "g"],
                    env=env | {"HOME": "/root"}, stdout_null=True)
    if run.returncode != 0:
        raise SystemExit(f"deploy of {tgz} failed ({run.returncode})")
    return run.seconds, run.peak_rss_kib


def measure(files: int, scratch: Path) -> tuple[float, float, float, int]:
    dest = scratch / f"dest-{files}"
    root = scratch / f"state-{files}"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    a, b = make_tgz(scratch, files, "A", dest), make_tgz(scratch, files, "B", dest)
    deploy(a, root)  # first install
    berth_times, floors, rss = [], [], 0
    for i in range(RUNS):
        t, peak = deploy(b if i % 2 == 0 else a, root)
        berth_times.append(t)
        rss = max(rss, peak)
        floors.append(floor(a, scratch / "floor"))
    unchanged = [deploy(a if RUNS % 2 == 0 else b, root)[0] for _ in range(3)]
    print(f"  {files} files: berth {fmt_times(berth_times)} | floor {fmt_times(floors)}")
    return statistics.median(berth_times), statistics.median(floors), statistics.median(unchanged), rss


def main() -> int:
    scratch = bench_dir("deploy")
    results = {n: measure(n, scratch) for n in (2000, 20000)}
    for n, (t, f, unchanged, rss) in results.items():
        print(ratio_line(f"redeploy {n} files, every file changed", t, f, "tar -xzf + cp -a", 1.5))
        print(ratio_line(f"redeploy {n} files, nothing changed", unchanged, f, "tar -xzf + cp -a"))
        print(f"  peak RSS of berth deploy-local ({n} files): {rss / 1024:.1f} MiB (target <= 80 MiB)")
    growth = results[20000][0] / results[2000][0]
    print(f"20,000 files / 2,000 files time: {growth:.2f}x (target <= 10.5x)")
    empty = scratch / "empty"
    shutil.rmtree(empty, ignore_errors=True)
    empty.mkdir()
    (empty / "appspec.yml").write_text("version: 0.0\nos: linux\n")
    root = scratch / "state-empty"
    shutil.rmtree(root, ignore_errors=True)
    times = [deploy(empty, root)[0] for _ in range(RUNS)]
    py = [run_child([sys.executable, "-c", "pass"]).seconds for _ in range(RUNS)]
    print(f"fixed overhead (empty revision): {statistics.median(times):.3f} s "
          f"(python3 -c pass: {statistics.median(py):.3f} s; aim < 0.25 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
