"""Run every ``bench/bench_*.py`` in turn (``make bench``); prints each one's wall time and peak RSS.

Usage: ``python bench/run_all.py [-k SUBSTRING] [-- ARGS passed to every bench]``. Exits non-zero when a bench
script fails; timings themselves never fail the run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import run_child


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="only", default="", help="run only benches whose file name contains this")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for every bench (after --)")
    args = parser.parse_args(argv)
    extra = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    here = Path(__file__).resolve().parent
    scripts = sorted(p for p in here.glob("bench_*.py") if args.only in p.name)
    if not scripts:
        print(f"no bench scripts match {args.only!r}", file=sys.stderr)
        return 2
    failed = []
    summary = []
    for script in scripts:
        print(f"=== {script.name}", flush=True)
        run = run_child([sys.executable, str(script), *extra])
        rss = run.peak_rss_kib // 1024
        summary.append(f"{script.name}: exit {run.returncode}, {run.seconds:.1f} s, peak RSS {rss} MiB")
        if run.returncode != 0:
            failed.append(script.name)
    print("=== summary")
    for line in summary:
        print(line)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
