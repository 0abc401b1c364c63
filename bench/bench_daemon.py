"""Issue 4 figures: spool pickup latency, idle RSS and CPU, RSS after 100 deployments (a real agent process).

Pickup latency is from the command file's rename into ``incoming/`` to the first event's ``started_at``.
Set BERTH_BENCH_IDLE_SECONDS to shorten the 60 s idle measurement.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

from common import REPO, bench_dir

COMMANDS = 50
DEPLOYMENTS = 100
IDLE_SECONDS = float(os.environ.get("BERTH_BENCH_IDLE_SECONDS", "60"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def command(revision: Path, n: int) -> dict[str, object]:
    return {
        "schema_version": 1, "command_id": f"c-{uuid.uuid4().hex}", "type": "deploy",
        "deployment_id": f"d-BENCH{n:07d}", "application": "bench", "deployment_group": "g",
        "revision": {"type": "local", "path": str(revision), "bundle_type": "directory"},
        "created_at": datetime.now().astimezone().isoformat(),
    }


def drop(spool: Path, doc: dict[str, object]) -> float:
    tmp = spool / "incoming" / f".{doc['deployment_id']}.json"
    tmp.write_text(json.dumps(doc))
    t = time.time()
    tmp.rename(spool / "incoming" / f"{doc['deployment_id']}.json")
    return t


def wait_report(spool: Path, dep: str) -> dict[str, object]:
    path = spool / "reports" / f"{dep}.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            report = json.loads(path.read_text())
            if report["status"] != "InProgress":
                return report  # type: ignore[no-any-return]
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.005)
    raise SystemExit(f"no final report for {dep}")


def started_at(report: dict[str, object]) -> float:
    events = report["events"]
    assert isinstance(events, list)
    first = min(ev["started_at"] for ev in events if ev.get("started_at"))
    return datetime.fromisoformat(first.replace("Z", "+00:00")).timestamp()


def main() -> int:
    work = bench_dir("daemon")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rev = work / "rev"
    (rev / "app").mkdir(parents=True)
    (rev / "app" / "index.html").write_text("hello\n")
    spec = f"version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: {work / 'dest'}\n"
    (rev / "appspec.yml").write_text(spec)
    config = work / "agent.yml"
    config.write_text(f"root: {work / 'state'}\nlog_dir: {work / 'log'}\nmax_revisions: 2\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([sys.executable, "-m", "agent", "agent", "run", "--config", str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spool = work / "state" / "spool"
    try:
        while not (work / "state" / "status.json").exists():
            time.sleep(0.05)
        time.sleep(1)
        idle_rss = rss_kib(proc.pid)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(IDLE_SECONDS)
        cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0) * 100
        print(f"idle agent (spool): RSS {idle_rss / 1024:.1f} MiB (target <= 40 MiB), "
              f"CPU {cpu:.2f}% of one core over {IDLE_SECONDS:.0f} s (target <= 1%)")
        latencies = []
        rss_first = 0
        for n in range(max(COMMANDS, DEPLOYMENTS)):
            doc = command(rev, n)
            t = drop(spool, doc)
            report = wait_report(spool, str(doc["deployment_id"]))
            if n < COMMANDS:
                latencies.append((started_at(report) - t) * 1000)
            if n == 0:
                rss_first = rss_kib(proc.pid)
        rss_last = rss_kib(proc.pid)
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"spool pickup to first event, {COMMANDS} commands: p50 {p50:.1f} ms (target <= 50), "
              f"p99 {p99:.1f} ms (target <= 200)")
        print(f"RSS after the first deployment {rss_first / 1024:.1f} MiB, after {DEPLOYMENTS}: "
              f"{rss_last / 1024:.1f} MiB (growth {(rss_last - rss_first) / 1024:.1f} MiB, target <= 5 MiB)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
