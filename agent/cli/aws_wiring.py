"""Composition of the AWS side of the agent: AwsContext from the configuration, fetchers, and the daemon for the
``sqs`` and ``s3`` channel kinds (S3 reports and heartbeats, CloudWatch Logs). Called by agent.cli.wiring."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.aws import AwsContext, AwsSettings
from agent.config import AgentConfig
from agent.errors import ConfigInvalid

if TYPE_CHECKING:
    from agent.channels.base import Channel, Delivery
    from agent.daemon.loop import Agent
    from agent.fetchers.base import Fetcher
    from agent.reporting.cloudwatch import CloudWatchShipper
    from agent.reporting.s3 import S3Location

log = logging.getLogger(__name__)

GITHUB_API_ENV = "BERTH_GITHUB_API_URL"
GITHUB_TOKEN_ENV = "BERTH_GITHUB_TOKEN"  # noqa: S105 - the name of a variable, not a secret
DEFAULT_GITHUB_API = "https://api.github.com"
OUTBOX_DIR = "outbox"
S3_CHANNEL_DIR = "s3-channel"
CLOSE_TIMEOUT = 5.0  # at stop: how long reports and log lines may take to leave
_SQS_URL_REGION = re.compile(r"^https?://(?:sqs[.-]([a-z0-9-]+)\.amazonaws\.com|([a-z0-9-]+)\.queue\.amazonaws\.com)/")


def region_from_queue_url(url: str) -> str | None:
    """The region an SQS queue URL names (``https://sqs.eu-west-1.amazonaws.com/...``), else None."""
    m = _SQS_URL_REGION.match(url)
    return (m.group(1) or m.group(2)) if m else None


def aws_settings(config: AgentConfig, env: Mapping[str, str] | None = None) -> AwsSettings:
    """AwsSettings from ``config.aws`` (region, endpoint overrides) and ``instance_id``.

    Without ``aws.region`` the environment (AWS_REGION, AWS_DEFAULT_REGION) and then the instance metadata decide;
    on an SQS channel with neither set, the queue URL's region is used.
    """
    environ = os.environ if env is None else env
    region = config.aws.region
    if region is None and not (environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")):
        region = region_from_queue_url(str(config.channel.settings.get("queue_url", "")))
    return AwsSettings(region=region, endpoints=dict(config.aws.endpoints), instance_id=config.instance_id)


def aws_context(config: AgentConfig, env: Mapping[str, str] | None = None) -> AwsContext:
    """The one AwsContext of an agent process (clients are created on first use)."""
    return AwsContext(aws_settings(config, env), env)


def build_fetchers(aws: AwsContext, env: MutableMapping[str, str] | None = None) -> dict[str, Fetcher]:
    """Fetchers for every revision kind: ``local``, ``s3`` (through ``aws``) and ``github``.

    GitHub: the API base comes from ``BERTH_GITHUB_API_URL`` (GitHub Enterprise: ``https://HOST/api/v3``) and a
    token from ``BERTH_GITHUB_TOKEN``. The token is removed from ``env`` (default: this process's environment) so
    that hook scripts, which inherit the agent's environment, never see it.
    """
    from agent.fetchers.github import GitHubFetcher
    from agent.fetchers.local import LocalFetcher
    from agent.fetchers.s3 import S3Fetcher

    environ = os.environ if env is None else env
    token = environ.pop(GITHUB_TOKEN_ENV, None) or None
    api = environ.get(GITHUB_API_ENV) or DEFAULT_GITHUB_API
    try:
        github = GitHubFetcher(api_base=api, token=token)
    except ValueError as exc:
        raise ConfigInvalid(f"{GITHUB_API_ENV}: {exc}") from None
    return {"local": LocalFetcher(), "s3": S3Fetcher(aws.client_factory("s3")), "github": github}


def reports_location(config: AgentConfig) -> S3Location:
    """Where reports and heartbeats go: ``aws.reports_bucket``/``aws.reports_prefix`` when the bucket is set,
    else (S3 channel) the channel's own bucket and prefix. An SQS channel needs ``aws.reports_bucket``."""
    from agent.reporting.s3 import S3Location

    if config.aws.reports_bucket:
        return S3Location(config.aws.reports_bucket, config.aws.reports_prefix)
    if config.channel.kind == "s3":
        return S3Location(str(config.channel.settings["bucket"]), str(config.channel.settings["prefix"]))
    where = config.source or "the configuration"
    line = f"{where}: aws.reports_bucket: is required for a {config.channel.kind} channel (reports are put in S3)"
    raise ConfigInvalid(line, problems=[line])


def build_channel(config: AgentConfig, aws: AwsContext, instance_id: str) -> Channel:
    """The SQS or S3 prefix channel the configuration names."""
    from agent.channels.s3prefix import S3PrefixChannel
    from agent.channels.sqs import DEFAULT_VISIBILITY_TIMEOUT, DEFAULT_WAIT_TIME, SqsChannel

    settings = config.channel.settings
    if config.channel.kind == "sqs":
        return SqsChannel(
            aws.client_factory("sqs"), str(settings["queue_url"]),
            wait_time_seconds=int(settings.get("wait_time_seconds", DEFAULT_WAIT_TIME)),
            visibility_timeout=int(settings.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT)),
        )
    if config.channel.kind == "s3":
        return S3PrefixChannel(
            aws.client_factory("s3"), str(settings["bucket"]), str(settings["prefix"]), instance_id,
            config.root / S3_CHANNEL_DIR, poll_interval=config.poll_interval,
        )
    raise ConfigInvalid(f"channel kind {config.channel.kind!r} is not an AWS channel")


class _ClosingChannel:
    """A channel that also stops the report uploader and log shipping when the daemon closes it."""

    def __init__(self, inner: Channel, closers: list[Callable[[], None]]) -> None:
        self.inner = inner
        self.closers = closers

    def start(self) -> None:
        self.inner.start()

    def receive(self, timeout: float) -> Delivery | None:
        return self.inner.receive(timeout)

    def ack(self, delivery: Delivery) -> None:
        self.inner.ack(delivery)

    def reject(self, delivery: Delivery, reason: str, message: str) -> None:
        self.inner.reject(delivery, reason, message)

    def extend(self, delivery: Delivery) -> None:
        self.inner.extend(delivery)

    def close(self) -> None:
        """Close the channel, then flush reports and logs side by side (each closer bounds its own time)."""
        self.inner.close()
        closers, self.closers = self.closers, []

        def run(close: Callable[[], None]) -> None:
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - shutting down: log and go on with the others
                log.warning("error while stopping: %s", exc)

        threads = [threading.Thread(target=run, args=(c,), name="berth-close", daemon=True) for c in closers]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + CLOSE_TIMEOUT + 1.0
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def _agent_log_formatter() -> logging.Formatter | None:
    """The formatter agent.log is written with (JSON lines), to send the same lines to CloudWatch."""
    for handler in logging.getLogger().handlers:
        if str(getattr(handler, "baseFilename", "")).endswith("agent.log") and handler.formatter is not None:
            return handler.formatter
    return None


def _guarded(what: str, fn: Callable[..., None]) -> Callable[..., None]:
    def call(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - log shipping must never fail a deployment
            log.debug("%s failed: %s", what, exc)

    return call


def build_aws_daemon(config: AgentConfig) -> Agent:
    """The daemon for an ``sqs`` or ``s3`` channel: S3 fetcher, S3 reports through the outbox, heartbeats in S3,
    and CloudWatch Logs when ``aws.cloudwatch`` is true. Starts the report uploader (leftovers from a previous run
    are sent first); raises ConfigInvalid when the region, the instance id or the reports bucket is unknown."""
    from agent.cli.wiring import build_engine
    from agent.daemon.loop import Agent
    from agent.daemon.sdnotify import SdNotifier
    from agent.engine.deployment import Engine, LineCallback, UpdateCallback
    from agent.model.report import IN_PROGRESS, PENDING, Report
    from agent.reporting.s3 import S3Reporter

    aws = aws_context(config)
    aws.region()  # fail at start, with the message that says how to set it
    instance_id = aws.instance_id()
    location = reports_location(config)
    fetchers = build_fetchers(aws)
    channel = build_channel(config, aws, instance_id)

    shipper: CloudWatchShipper | None = None
    if config.aws.cloudwatch and config.aws.log_group:
        from agent.reporting.cloudwatch import CloudWatchShipper

        shipper = CloudWatchShipper(aws.client_factory("logs"), config.aws.log_group, instance_id)
        shipper.start(_agent_log_formatter())

    root = config.root
    reporter = S3Reporter(
        aws.client_factory("s3"), location, instance_id, root / OUTBOX_DIR,
        free_space=lambda: _free_bytes(root), extra=shipper.stats if shipper is not None else None,
    )
    reporter.start()

    def factory(on_update: UpdateCallback, on_line: LineCallback) -> Engine:
        if shipper is None:
            return build_engine(config, None, fetchers=fetchers, on_update=on_update, on_line=on_line)
        follow = _guarded("cloudwatch update", shipper.deployment_update)
        ship_line = _guarded("cloudwatch line", shipper.script_line)

        def update(report: Report) -> None:
            follow(report.deployment_id, report.deployment_group, final=report.status not in (IN_PROGRESS, PENDING))
            on_update(report)

        def line(event: str, stream: str, text: str) -> None:
            ship_line(event, stream, text)
            on_line(event, stream, text)

        return build_engine(config, None, fetchers=fetchers, on_update=update, on_line=line)

    def heartbeat(status: dict[str, Any]) -> None:
        if shipper is not None:
            shipper.report_drops()
        reporter.heartbeat(status)

    closers: list[Callable[[], None]] = [lambda: reporter.close(CLOSE_TIMEOUT)]
    if shipper is not None:
        closers.append(lambda: shipper.close(CLOSE_TIMEOUT))
    log.info("aws channel %s, reports to %s", config.channel.kind, location.url(location.prefix),
             extra={"instance_id": instance_id})
    return Agent(
        config=config,
        engine_factory=factory,
        channel=_ClosingChannel(channel, closers),
        sinks=[reporter],
        instance_id=instance_id,
        notifier=SdNotifier(),
        heartbeat=heartbeat,
    )


def _free_bytes(path: Path) -> int:
    import shutil

    return shutil.disk_usage(path if path.exists() else path.parent).free
