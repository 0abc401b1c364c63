"""What the engine is asked to do (a deployment request) and the host-wide settings it runs with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.fetchers.unpack import Limits
from agent.model.report import Report
from agent.model.revision import Revision
from agent.paths import Paths


@dataclass(frozen=True)
class DeploymentRequest:
    """What to deploy, as a command or the command line names it."""

    deployment_id: str
    application: str
    deployment_group: str
    revision: Revision
    events: tuple[str, ...] | None = None
    file_exists_behavior: str | None = None
    ignore_application_stop_failures: bool = False
    appspec_filename: str = "appspec.yml"
    command_id: str | None = None
    with_traffic: bool = False
    # Set when this deployment puts back a retained revision: the deployment whose revision it restores, and
    # that revision's retained folder (copied instead of downloading anything).
    restores: str | None = None
    retained_root: Path | None = None
    # The deployment whose scripts run ApplicationStop and the block-traffic events (default: the last successful
    # one; a rollback stops the revision it replaces).
    stop_scripts_from: str | None = None
    # Keys added to the report as they are (instance_id, agent_version, command_id, rollback details ...).
    report_extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineSettings:
    """Host-wide settings the engine needs (from the agent configuration)."""

    paths: Paths
    max_revisions: int = 5
    hook_kill_grace: float = 30.0
    hook_output_grace: float = 2.0
    lock_timeout: float = 3600.0
    limits: Limits = field(default_factory=Limits)
    tool_path: str | None = None
    base_env: Mapping[str, str] | None = None  # None: the agent's own environment


UpdateCallback = Callable[[Report], None]
LineCallback = Callable[[str, str, str], None]
