"""``berth verify`` (drift check) and ``berth rollback`` (instant local rollback)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agent.cli.deploy_cmd import DEFAULT_APPLICATION, DEFAULT_GROUP

EXIT_DRIFT = 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    v = sub.add_parser("verify", help="compare the host with what berth last installed (drift check)")
    v.add_argument("--application", default=DEFAULT_APPLICATION, metavar="NAME")
    v.add_argument("--deployment-group", default=DEFAULT_GROUP, metavar="NAME")
    v.add_argument("--root", type=Path, metavar="DIR")
    v.add_argument("--config", type=Path, metavar="FILE")
    v.add_argument("--full", action="store_true", help="re-hash every file, even those whose size and mtime match")
    v.add_argument("--json", action="store_true")
    v.set_defaults(handler=_verify)

    r = sub.add_parser("rollback", help="put a retained earlier revision back now (no download)")
    r.add_argument("--application", default=DEFAULT_APPLICATION, metavar="NAME")
    r.add_argument("--deployment-group", default=DEFAULT_GROUP, metavar="NAME")
    r.add_argument("--to", metavar="DEPLOYMENT_ID", help="deployment to restore (default: the last successful one "
                   "before the current)")
    r.add_argument("--root", type=Path, metavar="DIR")
    r.add_argument("--config", type=Path, metavar="FILE")
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=_rollback)


def _verify(args: argparse.Namespace) -> int:
    # agent.config directly, not agent.cli.wiring: wiring imports the whole engine, which a verify does not need
    # (start-up is most of the time of a verify that finds nothing to re-hash).
    from agent.config import load_config
    from agent.engine.verify import verify_group
    from agent.paths import Paths
    from agent.state.store import StateStore

    config = load_config(args.config, must_exist=args.config is not None)
    root = args.root.resolve() if args.root else config.root
    result = verify_group(StateStore(Paths(root)), args.application, args.deployment_group, full=args.full)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.application}/{args.deployment_group} (deployment {result['deployment_id']}): "
              f"{result['summary']}")
        for path in result["modified"]:
            print(f"  modified:  {path}")
        for path in result["missing"]:
            print(f"  missing:   {path}")
        for key, label in (("type_changed", "type"), ("mode_changed", "mode"), ("owner_changed", "owner"),
                           ("retargeted", "symlink")):
            for item in result[key]:
                print(f"  {label + ':':<10} {item['path']} (expected {item['expected']}, found {item['found']})")
        for path in result["unexpected"]:
            print(f"  unexpected: {path}")
    return 0 if result["clean"] else EXIT_DRIFT


def _rollback(args: argparse.Namespace) -> int:
    from agent.cli.render import LiveEvents, summary_table
    from agent.cli.wiring import build_engine, load_agent_config
    from agent.model.command import new_deployment_id

    config = load_agent_config(args.config)
    deployment_id = new_deployment_id()
    if not args.json:
        print(f"rollback {deployment_id}: {args.application}/{args.deployment_group}")
    with LiveEvents(spinner=None if not args.json else False) as live:
        engine = build_engine(config, args.root,
                              on_update=None if args.json else (lambda r: live.update(r.to_dict())))
        report = engine.rollback(args.application, args.deployment_group, deployment_id=deployment_id,
                                 to=args.to).to_dict()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"restored revision of deployment {report.get('restores')} (replacing {report.get('rolls_back')})")
        print(summary_table(report))
    return 0 if report["status"] == "Succeeded" else 1
