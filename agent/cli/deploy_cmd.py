"""``berth deploy-local``: one deployment of a local revision, with the daemon's engine and no service."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from agent.errors import UsageError

DEFAULT_APPLICATION = "berth-local"
DEFAULT_GROUP = "default"
EXIT_USAGE = 2


def add_deployment_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``deploy-local`` and ``command send``."""
    p.add_argument("--bundle", required=True, metavar="PATH", help="revision folder or archive")
    p.add_argument("--type", dest="bundle_type", choices=("directory", "tar", "tgz", "zip"),
                   help="bundle type (default: from the path)")
    p.add_argument("--application", default=DEFAULT_APPLICATION, metavar="NAME")
    p.add_argument("--deployment-group", default=DEFAULT_GROUP, metavar="NAME")
    p.add_argument("--events", metavar="E1,E2,...", help="lifecycle events to run (plus custom events)")
    p.add_argument("--file-exists-behavior", choices=("DISALLOW", "OVERWRITE", "RETAIN"))
    p.add_argument("--appspec-filename", default="appspec.yml", metavar="NAME")
    p.add_argument("--ignore-application-stop-failures", action="store_true")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("deploy-local", help="deploy a local revision on this host now")
    add_deployment_options(p)
    p.add_argument("--root", type=Path, metavar="DIR", help="state root (default: config, else /var/lib/berth)")
    p.add_argument("--config", type=Path, metavar="FILE", help="agent configuration (YAML)")
    p.add_argument("--plan", action="store_true", help="show what the deployment would do; change nothing")
    p.add_argument("--json", action="store_true", help="print only the report as JSON")
    p.set_defaults(handler=_deploy_local)


def parse_events(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    events = tuple(e.strip() for e in value.split(",") if e.strip())
    if not events:
        raise UsageError("--events needs at least one event name")
    return events


def _deploy_local(args: argparse.Namespace) -> int:
    from agent.cli.wiring import build_engine, load_agent_config, local_revision
    from agent.engine.deployment import DeploymentRequest
    from agent.model.command import new_deployment_id

    config = load_agent_config(args.config)
    revision = local_revision(args.bundle, args.bundle_type)
    request = DeploymentRequest(
        deployment_id=new_deployment_id(),
        application=args.application,
        deployment_group=args.deployment_group,
        revision=revision,
        events=parse_events(args.events),
        file_exists_behavior=args.file_exists_behavior,
        ignore_application_stop_failures=args.ignore_application_stop_failures,
        appspec_filename=args.appspec_filename,
    )
    if args.plan:
        from agent.cli.plan_render import print_plan
        from agent.engine.plan import plan_deployment

        plan = plan_deployment(build_engine(config, args.root), request)
        if args.json:
            print(json.dumps(plan, indent=2))
        else:
            print_plan(plan)
        return 0 if plan["would_succeed"] else 1
    return run_with_progress(config, args.root, request, json_out=args.json)


def run_with_progress(config: Any, root: Path | None, request: Any, *, json_out: bool) -> int:
    """Run a deployment request, showing live progress (or only the JSON report) and the final table."""
    from agent.cli.render import LiveEvents, summary_table
    from agent.cli.wiring import build_engine

    interactive = not json_out
    if interactive:
        print(f"deployment {request.deployment_id}: {request.application}/{request.deployment_group}")
    with LiveEvents(spinner=None if interactive else False) as live:
        engine = build_engine(config, root, on_update=(lambda r: live.update(r.to_dict())) if interactive else None)
        report = engine.deploy(request).to_dict()
    if json_out:
        print(json.dumps(report, indent=2))
    else:
        print(summary_table(report))
    sys.stdout.flush()
    return 0 if report["status"] == "Succeeded" else 1


def bundle_path(value: str) -> Path:
    """The bundle path as an absolute path; a missing or unreadable one is a usage error (exit 2)."""
    path = Path(value).expanduser()
    if not path.exists():
        raise UsageError(f"bundle {value} does not exist")
    if not os.access(path, os.R_OK):
        raise UsageError(f"bundle {value} is not readable by this user")
    return path.resolve()
