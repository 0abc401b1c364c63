"""The agent on the SQS channel against a local moto server (its own process): latency, idle memory, big revision.

Figures (issue targets):
* from SendMessage to the first event starting (DownloadBundle's ``started_at``): p50 <= 100 ms, p99 <= 300 ms;
* RSS of an idle agent on the SQS channel (CloudWatch shipping on): <= 90 MB;
* deploying a 1 GB S3 revision: the agent's peak RSS at most 80 MB above its idle RSS.

Usage: ``python bench/bench_sqs.py [--runs N] [--big-mb MB] [--no-big]``. The agent and moto run as separate
processes, so the figures are the agent's alone. Nothing is asserted; the lines say whether each target is met.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from common import REPO, bench_dir

MiB = 1024 * 1024
INSTANCE = "i-0bench00000000000"
BUCKET = "bench-releases"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY") and k != "NOTIFY_SOCKET"}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               PYTHONPATH=str(REPO))
    return env


def start_moto(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 60
    while True:
        try:
            with opener.open(url + "/moto-api/", timeout=2) as resp:
                resp.read()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.1)


def small_revision(work: Path) -> Path:
    """A revision with one file and no hooks: the latency figure is about the channel, not about scripts."""
    out = work / "small.tgz"
    rev = work / "small"
    (rev / "app").mkdir(parents=True, exist_ok=True)
    (rev / "app" / "index.html").write_text("hello\n")
    appspec = f"version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: {work / 'dest'}\n"
    (rev / "appspec.yml").write_text(appspec)
    with tarfile.open(out, "w:gz") as tf:
        tf.add(rev, arcname=".")
    return out


def big_revision(cache: Path, size_mb: int, dest: Path) -> Path:
    """An uncompressed tar of ``size_mb`` MiB of random bytes plus an appspec installing it (cached)."""
    out = cache / f"big-{size_mb}.tar"
    if out.exists():
        return out
    appspec = f"version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: {dest}\n".encode()
    tmp = out.with_suffix(".part")
    with tarfile.open(tmp, "w") as tf:
        info = tarfile.TarInfo("appspec.yml")
        info.size = len(appspec)
        import io

        tf.addfile(info, io.BytesIO(appspec))
        blob = cache / "blob.bin"
        with blob.open("wb") as fh:
            for _ in range(size_mb):
                fh.write(os.urandom(MiB))
        tf.add(blob, arcname="app/blob.bin")
        blob.unlink()
    tmp.rename(out)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Bench:
    def __init__(self, work: Path, url: str, env: dict[str, str]) -> None:
        import boto3

        self.work = work
        self.env = env
        kw: dict[str, Any] = {"endpoint_url": url, "region_name": "us-east-1"}
        self.s3 = boto3.client("s3", **kw)
        self.sqs = boto3.client("sqs", **kw)
        self.s3.create_bucket(Bucket=BUCKET)
        self.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        self.queue_url = self.sqs.create_queue(QueueName="bench")["QueueUrl"]
        self.root = work / "state"
        config = {
            "root": str(self.root), "log_dir": str(work / "log"), "instance_id": INSTANCE, "heartbeat_interval": 10,
            "channel": {"kind": "sqs", "queue_url": self.queue_url},
            "aws": {"region": "us-east-1", "endpoints": {"s3": url, "sqs": url, "logs": url},
                    "reports_bucket": BUCKET, "reports_prefix": "berth", "cloudwatch": True, "log_group": "bench"},
        }
        self.config = work / "agent.yml"
        self.config.write_text(json.dumps(config))
        self.agent: subprocess.Popen[bytes] | None = None

    def start_agent(self) -> int:
        log = (self.work / "agent-output.log").open("ab")
        self.agent = subprocess.Popen([sys.executable, "-m", "agent", "agent", "run", "--config", str(self.config)],
                                      env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while not (self.root / "status.json").exists():
            if self.agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the agent did not start; see {self.work / 'agent-output.log'}")
            time.sleep(0.05)
        return self.agent.pid

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(60)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()

    def upload(self, path: Path, key: str) -> dict[str, Any]:
        self.s3.upload_file(str(path), BUCKET, key)
        head: dict[str, Any] = self.s3.head_object(Bucket=BUCKET, Key=key)
        return head

    def command(self, key: str, head: dict[str, Any], deployment_id: str, bundle_type: str) -> bytes:
        from agent.model.command import new_command
        from agent.model.revision import S3Revision

        revision = S3Revision(bucket=BUCKET, key=key, bundle_type=bundle_type, version=head.get("VersionId"),
                              etag=head["ETag"])
        return new_command(application="bench", deployment_group="g", revision=revision,
                           deployment_id=deployment_id).to_json()

    def local_report(self, deployment_id: str) -> dict[str, Any] | None:
        path = self.root / "groups" / "bench" / "g" / "deployments" / deployment_id / "report.json"
        try:
            doc = json.loads(path.read_text())  # a versioned state file: the report sits under "report"
        except (FileNotFoundError, ValueError):
            return None
        report: dict[str, Any] | None = doc.get("report")
        return report

    def deploy(self, body: bytes, deployment_id: str, *, timeout: float = 600,
               sample_pid: int | None = None) -> tuple[float, dict[str, Any], int]:
        """Send one command; returns (send time, final report, peak sampled RSS KiB of ``sample_pid``)."""
        peak = 0
        sent = time.time()
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body.decode())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sample_pid is not None:
                peak = max(peak, rss_kib(sample_pid))
            report = self.local_report(deployment_id)
            if report is not None and report.get("status") not in ("InProgress", "Pending"):
                return sent, report, peak
            time.sleep(0.02 if sample_pid is not None else 0.01)
        raise RuntimeError(f"deployment {deployment_id} did not finish in {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="deployments timed for the latency figure")
    parser.add_argument("--big-mb", type=int, default=1024, help="size of the big revision in MiB")
    parser.add_argument("--no-big", action="store_true", help="skip the big revision")
    args = parser.parse_args()

    base = bench_dir("sqs")
    work = base / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = clean_env()
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                            "AWS_EC2_METADATA_DISABLED")})
    moto, url = start_moto(env)
    bench: Bench | None = None
    try:
        bench = Bench(work, url, env)
        pid = bench.start_agent()
        time.sleep(5)  # settle: first polls, CloudWatch group, heartbeat
        idle = max(rss_kib(pid) for _ in range(10) if time.sleep(0.5) is None)
        print(f"idle agent RSS on the SQS channel: {idle / 1024:.1f} MB (target <= 90 MB: "
              f"{'met' if idle / 1024 <= 90 else 'NOT met'})", flush=True)

        head = bench.upload(small_revision(work), "app/small.tgz")
        latencies, scripted = [], []
        for i in range(args.runs):
            dep = f"d-BENCH{i:07d}"
            time.sleep(0.3)  # let the agent finish acknowledging and get back into its long poll
            sent, report, _ = bench.deploy(bench.command("app/small.tgz", head, dep, "tgz"), dep)
            assert report["status"] == "Succeeded", report
            first = min(parse_time(e["started_at"]) for e in report["events"] if e["started_at"])
            latencies.append((first - sent) * 1000)
            install = next(e for e in report["events"] if e["name"] == "Install")
            scripted.append((parse_time(install["started_at"]) - sent) * 1000)
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        first_name = min((e for e in report["events"] if e["started_at"]), key=lambda e: e["started_at"])["name"]
        print(f"SendMessage -> first event ({first_name}) started, {args.runs} runs: "
              f"p50 {p50:.0f} ms (target <= 100: {'met' if p50 <= 100 else 'NOT met'}), "
              f"p99 {p99:.0f} ms (target <= 300: {'met' if p99 <= 300 else 'NOT met'}), "
              f"min {min(latencies):.0f}, max {max(latencies):.0f}, mean {statistics.mean(latencies):.0f}")
        print(f"SendMessage -> Install started: p50 {percentile(scripted, 50):.0f} ms, "
              f"p99 {percentile(scripted, 99):.0f} ms", flush=True)

        if not args.no_big:
            print(f"building and uploading a {args.big_mb} MiB revision...", flush=True)
            started = time.monotonic()
            big = big_revision(base, args.big_mb, work / "big-dest")
            big_head = bench.upload(big, "app/big.tar")
            print(f"  ready in {time.monotonic() - started:.0f} s", flush=True)
            time.sleep(2)
            before = rss_kib(pid)
            started = time.monotonic()
            _, report, peak = bench.deploy(bench.command("app/big.tar", big_head, "d-BENCHBIG0001", "tar"),
                                           "d-BENCHBIG0001", sample_pid=pid)
            took = time.monotonic() - started
            assert report["status"] == "Succeeded", report
            growth = (peak - before) / 1024
            print(f"{args.big_mb} MiB S3 revision deployed in {took:.1f} s: agent RSS {before / 1024:.1f} MB before, "
                  f"peak {peak / 1024:.1f} MB (+{growth:.1f} MB; target <= +80 MB: "
                  f"{'met' if growth <= 80 else 'NOT met'})", flush=True)
    finally:
        if bench is not None:
            bench.stop_agent()
        moto.terminate()
        try:
            moto.wait(20)
        except subprocess.TimeoutExpired:
            moto.kill()
            moto.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
