"""Composition helpers shared by CLI commands: configuration, engine and fetchers (the composition root)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import AgentConfig, load_config
from agent.engine.deployment import Engine, EngineSettings, LineCallback, UpdateCallback
from agent.fetchers.base import Fetcher
from agent.fetchers.local import LocalFetcher
from agent.fetchers.unpack import guess_bundle_type
from agent.model.revision import LocalRevision
from agent.paths import Paths

if TYPE_CHECKING:
    from agent.daemon.loop import Agent


def load_agent_config(path: Path | None) -> AgentConfig:
    return load_config(path, must_exist=path is not None)


def local_revision(bundle: str, bundle_type: str | None) -> LocalRevision:
    from agent.cli.deploy_cmd import bundle_path

    path = bundle_path(bundle)
    return LocalRevision(path=str(path), bundle_type=bundle_type or guess_bundle_type(path))


def engine_settings(config: AgentConfig, root: Path | None) -> EngineSettings:
    return EngineSettings(
        paths=Paths(root.resolve() if root is not None else config.root),
        max_revisions=config.max_revisions,
        hook_kill_grace=config.hook_kill_grace,
        hook_output_grace=config.hook_output_grace,
        lock_timeout=config.lock_timeout,
    )


def build_engine(
    config: AgentConfig,
    root: Path | None,
    *,
    fetchers: dict[str, Fetcher] | None = None,
    on_update: UpdateCallback | None = None,
    on_line: LineCallback | None = None,
) -> Engine:
    all_fetchers: dict[str, Any] = {"local": LocalFetcher()}
    all_fetchers.update(fetchers or {})
    return Engine(engine_settings(config, root), all_fetchers, on_update=on_update, on_line=on_line)


_DEPLOYMENT_MODULES = (
    "agent.engine.plan", "agent.engine.rollback", "agent.engine.health", "agent.engine.verify",
    "agent.install.drift", "agent.fetchers.s3", "agent.fetchers.github", "agent.cli.render",
)


def build_daemon(config: AgentConfig) -> Agent:
    """The agent daemon with the channel, report sinks and fetchers the configuration names."""
    from agent.channels.spool import SpoolChannel, SpoolReportSink, check_spool_permissions, ensure_spool
    from agent.cli.agent_cmd import default_instance_id
    from agent.daemon.loop import Agent
    from agent.daemon.sdnotify import SdNotifier
    from agent.errors import UsageError

    # A package upgrade replaces the files under /opt/berth while this agent keeps running: import now every
    # module a deployment may load lazily, so a running agent never mixes old and new code.
    for name in _DEPLOYMENT_MODULES:
        importlib.import_module(name)
    kind = config.channel.kind
    if kind != "spool":
        from agent.cli.aws_wiring import build_aws_daemon

        return build_aws_daemon(config)
    spool = config.spool_dir
    ensure_spool(spool, group=config.spool_group)
    problems = check_spool_permissions(spool, allowed_group=config.spool_group)
    if problems:
        raise UsageError("refusing to start: whoever can write the spool runs code as this agent: "
                         + "; ".join(problems))
    channel = SpoolChannel(spool, rescan_interval=config.poll_interval)
    sinks = [SpoolReportSink(spool)]

    from agent.cli.aws_wiring import aws_context, build_fetchers

    # S3 and GitHub revisions work on the spool channel too; AWS clients are made only when first used.
    fetchers = build_fetchers(aws_context(config))

    def factory(on_update: UpdateCallback, on_line: LineCallback) -> Engine:
        return build_engine(config, None, fetchers=fetchers, on_update=on_update, on_line=on_line)

    return Agent(
        config=config,
        engine_factory=factory,
        channel=channel,
        sinks=sinks,
        instance_id=config.instance_id or default_instance_id(),
        notifier=SdNotifier(),
    )
