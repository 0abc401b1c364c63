"""``berth command send|rollback|wait``: drive the agent of this host through its spool (docs/protocol.md).

``send`` and ``rollback`` write one command into ``<spool>/incoming/`` (temp name, then rename, as the protocol
requires) and print its deployment id; ``wait`` follows ``<spool>/reports/<deployment_id>.json`` until the
deployment ends. The caller needs write access to incoming/ (root, or a member of the configured spool_group).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.cli.deploy_cmd import DEFAULT_APPLICATION, DEFAULT_GROUP, add_deployment_options
from agent.errors import UsageError

if TYPE_CHECKING:
    from agent.model.command import Command

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 3
POLL_SECONDS = 0.1
_FINAL_OK = "Succeeded"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("command", help="send commands to this host's agent and follow them")
    inner = p.add_subparsers(dest="command_action", metavar="ACTION", required=True)

    send = inner.add_parser("send", help="queue a deployment of a local revision; prints its deployment id")
    add_deployment_options(send)
    _spool_option(send)
    send.add_argument("--plan", action="store_true", help="ask for the plan only: the agent changes nothing")
    send.add_argument("--expires-in", type=_seconds, metavar="SECONDS",
                      help="the agent refuses the command if it picks it up later than this")
    send.add_argument("--json", action="store_true", help="print the command written, as JSON")
    send.set_defaults(handler=_send)

    rollback = inner.add_parser("rollback", help="queue a redeployment of a revision the host retained")
    _spool_option(rollback)
    rollback.add_argument("--application", default=DEFAULT_APPLICATION, metavar="NAME")
    rollback.add_argument("--deployment-group", default=DEFAULT_GROUP, metavar="NAME")
    rollback.add_argument("--to", dest="rollback_to", metavar="DEPLOYMENT_ID",
                          help="deployment to return to (default: the last successful one before the current)")
    rollback.add_argument("--expires-in", type=_seconds, metavar="SECONDS")
    rollback.add_argument("--json", action="store_true", help="print the command written, as JSON")
    rollback.set_defaults(handler=_rollback)

    wait = inner.add_parser("wait", help="follow a deployment until it ends (exit 0 succeeded, 1 failed, 3 timeout)")
    wait.add_argument("deployment_id", metavar="DEPLOYMENT_ID")
    _spool_option(wait)
    wait.add_argument("--timeout", type=_seconds, metavar="SECONDS", help="give up after this long (exit 3)")
    wait.add_argument("--json", action="store_true", help="print only the final report, as JSON")
    wait.set_defaults(handler=_wait)


def _spool_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spool", type=Path, metavar="DIR",
                   help="the agent's spool folder (default: from /etc/berth/agent.yml, else /var/lib/berth/spool)")


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {value}")
    return seconds


def _spool_dir(arg: Path | None) -> Path:
    if arg is not None:
        return arg.absolute()
    from agent.config import load_config

    return load_config(None).spool_dir


def drop_command(spool: Path, command: Command) -> Path:
    """Write ``command`` into ``<spool>/incoming/<deployment_id>.json`` via a dot-named temp file and a rename."""
    from agent.fsutil import atomic_write_bytes

    incoming = spool / "incoming"
    if not incoming.is_dir():
        raise UsageError(f"{spool} is not a berth spool (no incoming/ folder): check --spool, or start the agent once")
    target = incoming / f"{command.deployment_id}.json"
    try:
        atomic_write_bytes(target, command.to_json(), mode=0o644)  # the agent's user must be able to read it
    except PermissionError:
        raise UsageError(
            f"cannot write to {incoming}: permission denied (run as root, or join the agent's spool_group)"
        ) from None
    return target


def _print_sent(command: Command, target: Path, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"file": str(target), "command": command.to_dict()}, indent=2))
    else:
        print(command.deployment_id)


def _send(args: argparse.Namespace) -> int:
    from agent.cli.deploy_cmd import parse_events
    from agent.cli.wiring import local_revision
    from agent.model.command import new_command

    spool = _spool_dir(args.spool)
    command = new_command(
        type="plan" if args.plan else "deploy",
        application=args.application,
        deployment_group=args.deployment_group,
        revision=local_revision(args.bundle, args.bundle_type),
        events=parse_events(args.events),
        file_exists_behavior=args.file_exists_behavior,
        ignore_application_stop_failures=args.ignore_application_stop_failures,
        appspec_filename=args.appspec_filename,
        expires_in=args.expires_in,
    )
    _print_sent(command, drop_command(spool, command), args.json)
    return EXIT_OK


def _rollback(args: argparse.Namespace) -> int:
    from agent.model.command import new_command

    spool = _spool_dir(args.spool)
    command = new_command(
        type="rollback",
        application=args.application,
        deployment_group=args.deployment_group,
        revision=None,
        rollback_to=args.rollback_to,
        expires_in=args.expires_in,
    )
    _print_sent(command, drop_command(spool, command), args.json)
    return EXIT_OK


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # reports are replaced atomically, so this is someone else's file: try again next poll
    return doc if isinstance(doc, dict) else None


def _final(report: dict[str, Any] | None) -> bool:
    return report is not None and report.get("status") not in (None, "InProgress", "Pending")


def _rejected_without_report(spool: Path, deployment_id: str) -> str | None:
    """The agent's reason when it set our file aside without a report (it could not read a deployment id)."""
    try:
        return (spool / "rejected" / f"{deployment_id}.reason").read_text(errors="replace").strip()
    except OSError:
        return None


def _wait(args: argparse.Namespace) -> int:
    from agent.cli.render import LiveEvents, summary_table
    from agent.paths import check_name

    spool = _spool_dir(args.spool)
    deployment_id = check_name("deployment id", args.deployment_id)
    report_file = spool / "reports" / f"{deployment_id}.json"
    if not (spool / "reports").is_dir():
        raise UsageError(f"{spool} is not a berth spool (no reports/ folder): check --spool")
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    interactive = not args.json
    report: dict[str, Any] | None = None
    if interactive and not report_file.exists():
        print(f"deployment {deployment_id}: waiting for the agent to pick it up", flush=True)
    with LiveEvents(spinner=None if interactive else False) as live:
        while True:
            report = _read_json(report_file) or report
            if report is not None and interactive:
                live.update(report)
            if _final(report):
                break
            if report is None and (reason := _rejected_without_report(spool, deployment_id)) is not None:
                print(f"deployment {deployment_id}: Rejected: {reason}", file=sys.stderr)
                return EXIT_FAILED
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
    if not _final(report):
        if args.json and report is not None:
            print(json.dumps(report, indent=2))
        state = f"still {report.get('status')}" if report else "no report yet: is the agent running?"
        print(f"berth: timed out after {args.timeout:g} s waiting for {deployment_id} ({state})", file=sys.stderr)
        return EXIT_TIMEOUT
    assert report is not None
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        if report.get("status") == "Rejected":
            print(f"rejected: {report.get('reason')}: {report.get('message')}")
        print(summary_table(report))
    return EXIT_OK if report.get("status") == _FINAL_OK else EXIT_FAILED
