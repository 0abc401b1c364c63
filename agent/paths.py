"""Every on-disk location berth uses, in one place (SPEC §5, docs/deployment-root.md).

Layout under the state root (default ``/var/lib/berth``)::

    groups/<application>/<deployment_group>/
        group.json                 pointers: last successful and most recent deployment (versioned JSON)
        manifest.json              install manifest of the last install
        inflight.json              present only while a deployment of this group runs
        lock                       flock(2) target serialising deployments of the group
        deployments/<deployment_id>/
            revision/              the unpacked revision root
            logs/scripts.log       hook output
            deployment.json        what was deployed (revision source, appspec name, options)
            report.json            the deployment's report
    spool/{incoming,processing,rejected,reports}/   the local command channel
    status.json                    what the daemon is doing (``berth agent status``)
    commands/                      ids of commands already executed (idempotency)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from agent.errors import UsageError

DEFAULT_ROOT = Path("/var/lib/berth")
DEFAULT_LOG_DIR = Path("/var/log/berth")
DEFAULT_CONFIG = Path("/etc/berth/agent.yml")

# Application, deployment group and deployment ids become folder names: keep them to a safe alphabet.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@=-]{0,99}$")


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is safe as a folder name, else raise :class:`UsageError` saying why."""
    if not _NAME.match(value) or value in {".", ".."}:
        raise UsageError(
            f"{kind} {value!r} is not allowed: use 1-100 letters, digits and ._+@=- (first a letter or digit)"
        )
    return value


@dataclass(frozen=True)
class GroupPaths:
    """Locations of one deployment group's state."""

    dir: Path

    @property
    def group_file(self) -> Path:
        return self.dir / "group.json"

    @property
    def manifest_file(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def inflight_file(self) -> Path:
        return self.dir / "inflight.json"

    @property
    def lock_file(self) -> Path:
        return self.dir / "lock"

    @property
    def deployments_dir(self) -> Path:
        return self.dir / "deployments"

    def deployment(self, deployment_id: str) -> DeploymentPaths:
        return DeploymentPaths(self.deployments_dir / check_name("deployment id", deployment_id))


@dataclass(frozen=True)
class DeploymentPaths:
    """Locations of one deployment's files."""

    dir: Path

    @property
    def revision_dir(self) -> Path:
        return self.dir / "revision"

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def scripts_log(self) -> Path:
        return self.logs_dir / "scripts.log"

    @property
    def deployment_file(self) -> Path:
        return self.dir / "deployment.json"

    @property
    def report_file(self) -> Path:
        return self.dir / "report.json"

    @property
    def download_dir(self) -> Path:
        """Where a fetched archive waits to be unpacked; deleted once unpacked."""
        return self.dir / "download"


@dataclass(frozen=True)
class Paths:
    """The state root and everything beneath it."""

    root: Path = DEFAULT_ROOT

    @property
    def groups_dir(self) -> Path:
        return self.root / "groups"

    def group(self, application: str, deployment_group: str) -> GroupPaths:
        return GroupPaths(
            self.groups_dir
            / check_name("application name", application)
            / check_name("deployment group name", deployment_group)
        )

    @property
    def spool_dir(self) -> Path:
        return self.root / "spool"

    @property
    def status_file(self) -> Path:
        return self.root / "status.json"

    @property
    def commands_dir(self) -> Path:
        return self.root / "commands"

    @property
    def tmp_dir(self) -> Path:
        """Scratch space on the same filesystem as the state (plans, downloads in flight)."""
        return self.root / "tmp"
