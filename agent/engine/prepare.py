"""Prepare a revision before anything on the host changes (SPEC §2, departure "prepare first").

Fetch, unpack, load and validate the appspec, and plan the install against the host. Everything here writes only
into the deployment's own folder; a failure leaves the application that runs now untouched.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.engine.revision import LoadedAppSpec, load_appspec
from agent.errors import RevisionUnavailable
from agent.fetchers.base import Fetcher
from agent.fetchers.unpack import Limits, unpack
from agent.install.manifest import Manifest
from agent.install.planner import InstallPlan, plan_install
from agent.model.appspec import AppSpec
from agent.model.revision import Revision

FILE_EXISTS_BEHAVIORS = ("DISALLOW", "OVERWRITE", "RETAIN")


@dataclass(frozen=True)
class Prepared:
    """A revision ready to install: its root, appspec, install plan and hook environment additions."""

    revision_root: Path
    appspec: LoadedAppSpec
    plan: InstallPlan
    file_exists_behavior: str
    bundle_env: Mapping[str, str]
    bundle_details: Mapping[str, Any]
    warnings: tuple[str, ...]

    @property
    def spec(self) -> AppSpec:
        return self.appspec.spec


def resolve_file_exists_behavior(spec: AppSpec, from_command: str | None) -> str:
    """SPEC §1 precedence: appspec > command > DISALLOW."""
    return spec.file_exists_behavior or from_command or "DISALLOW"


def fetch_and_unpack(
    revision: Revision,
    fetchers: Mapping[str, Fetcher],
    *,
    download_dir: Path,
    revision_dir: Path,
    appspec_filename: str,
    limits: Limits,
) -> tuple[Path, Mapping[str, str], Mapping[str, Any]]:
    """Fetch the revision and unpack it into ``revision_dir``; the download folder is removed afterwards."""
    fetcher = fetchers.get(revision.kind)
    if fetcher is None:
        raise RevisionUnavailable(f"this agent has no fetcher for {revision.kind} revisions (check its configuration)")
    download_dir.mkdir(parents=True, exist_ok=True)
    try:
        bundle = fetcher.fetch(revision, download_dir)
        names = tuple(dict.fromkeys((appspec_filename, "appspec.yaml", "appspec.yml")))
        result = unpack(bundle.path, bundle.bundle_type, revision_dir, appspec_names=names, limits=limits)
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)
    return result.root, bundle.env, bundle.details


def prepare_installed_revision(
    revision_root: Path,
    *,
    appspec_filename: str,
    custom_events: Iterable[str],
    previous_manifest: Manifest | None,
    file_exists_behavior: str | None,
    bundle_env: Mapping[str, str],
    bundle_details: Mapping[str, Any],
    tool_path: str | None = None,
) -> Prepared:
    """Validate the unpacked revision and plan its install against the host. Touches nothing outside it."""
    loaded = load_appspec(revision_root, appspec_filename, custom_events=custom_events)
    behavior = resolve_file_exists_behavior(loaded.spec, file_exists_behavior)
    plan = plan_install(loaded.spec, revision_root, previous_manifest, behavior, tool_path=tool_path)
    warnings = tuple(f"{p.path}: {p.message}" if p.path else p.message for p in loaded.warnings)
    return Prepared(
        revision_root=revision_root,
        appspec=loaded,
        plan=plan,
        file_exists_behavior=behavior,
        bundle_env=dict(bundle_env),
        bundle_details=dict(bundle_details),
        warnings=warnings,
    )
