"""``berth command send|rollback|wait``: drive an agent through its spool, an SQS queue or an S3 prefix.

``send`` and ``rollback`` write one command into ``<spool>/incoming/`` (temp name, then rename, as the protocol
requires) and print its deployment id; ``wait`` follows ``<spool>/reports/<deployment_id>.json`` until the
deployment ends. The caller needs write access to incoming/ (root, or a member of the configured spool_group).
With ``--sqs QUEUE_URL`` or ``--s3 s3://BUCKET/PREFIX`` the command goes through AWS instead and ``wait`` reads the
report from S3 (agent.cli.command_remote; docs/protocol.md, "AWS channels").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.cli.command_remote import add_channel_options, add_revision_options
from agent.cli.deploy_cmd import DEFAULT_APPLICATION, DEFAULT_GROUP, add_deployment_options
from agent.errors import ConfigInvalid, UsageError

if TYPE_CHECKING:
    from agent.aws import AwsContext
    from agent.cli.command_remote import RemoteTarget
    from agent.model.command import Command
    from agent.model.revision import Revision

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 3
POLL_SECONDS = 0.1
REMOTE_POLL_SECONDS = 0.5  # a GET per poll: S3 requests cost money
_FINAL_OK = "Succeeded"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("command", help="send commands to this host's agent and follow them")
    inner = p.add_subparsers(dest="command_action", metavar="ACTION", required=True)

    send = inner.add_parser("send", help="queue a deployment; prints its deployment id")
    add_deployment_options(send)
    for action in send._actions:  # --bundle is one of three ways to name the revision here
        if action.dest == "bundle":
            action.required = False
    add_revision_options(send)
    _spool_option(send)
    add_channel_options(send)
    send.add_argument("--plan", action="store_true", help="ask for the plan only: the agent changes nothing")
    send.add_argument("--expires-in", type=_seconds, metavar="SECONDS",
                      help="the agent refuses the command if it picks it up later than this")
    send.add_argument("--json", action="store_true", help="print the command written, as JSON")
    send.set_defaults(handler=_send)

    rollback = inner.add_parser("rollback", help="queue a redeployment of a revision the host retained")
    _spool_option(rollback)
    add_channel_options(rollback)
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
    add_channel_options(wait)
    wait.add_argument("--reports", metavar="s3://BUCKET/PREFIX",
                      help="with --sqs: the agent's reports location (aws.reports_bucket and aws.reports_prefix)")
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


def _print_sent(command: Command, target: Path | str, as_json: bool) -> None:
    if as_json:
        where = {"file": str(target)} if isinstance(target, Path) else {"sent_to": target}
        print(json.dumps({**where, "command": command.to_dict()}, indent=2))
    else:
        print(command.deployment_id)


def _aws(args: argparse.Namespace) -> AwsContext:
    from agent.cli.command_remote import client_context

    aws = client_context(args)
    try:
        aws.region()
    except ConfigInvalid:
        raise UsageError("the AWS region is unknown: pass --region or set AWS_REGION") from None
    return aws


def _deliver(args: argparse.Namespace, command: Command, remote: RemoteTarget | None, aws: AwsContext | None) -> int:
    """Put ``command`` on the spool or the remote channel and print its deployment id (or JSON)."""
    if remote is None:
        _print_sent(command, drop_command(_spool_dir(args.spool), command), args.json)
        return EXIT_OK
    from agent.cli.command_remote import send

    assert aws is not None
    _print_sent(command, send(remote, command, aws), args.json)
    return EXIT_OK


def _revision(args: argparse.Namespace, aws: AwsContext | None) -> Revision:
    """The revision named by exactly one of --bundle, --revision and --github."""
    given = [name for name in ("bundle", "revision", "github") if getattr(args, name)]
    if len(given) != 1:
        raise UsageError("name the revision with exactly one of --bundle PATH, --revision s3://BUCKET/KEY or "
                         "--github OWNER/REPO@COMMIT")
    if (args.sha256 or args.unpinned) and not args.revision:
        raise UsageError("--sha256 and --unpinned go with --revision")
    if args.github:
        from agent.cli.command_remote import github_revision

        return github_revision(args.github, args.bundle_type)
    if args.revision:
        from agent.cli.command_remote import s3_revision

        return s3_revision(args, aws if aws is not None else _aws(args))
    from agent.cli.wiring import local_revision

    return local_revision(args.bundle, args.bundle_type)


def _send(args: argparse.Namespace) -> int:
    from agent.cli.command_remote import remote_target
    from agent.cli.deploy_cmd import parse_events
    from agent.model.command import new_command

    remote = remote_target(args)
    aws = _aws(args) if remote is not None else None
    command = new_command(
        type="plan" if args.plan else "deploy",
        application=args.application,
        deployment_group=args.deployment_group,
        revision=_revision(args, aws),
        events=parse_events(args.events),
        file_exists_behavior=args.file_exists_behavior,
        ignore_application_stop_failures=args.ignore_application_stop_failures,
        appspec_filename=args.appspec_filename,
        expires_in=args.expires_in,
    )
    return _deliver(args, command, remote, aws)


def _rollback(args: argparse.Namespace) -> int:
    from agent.cli.command_remote import remote_target
    from agent.model.command import new_command

    remote = remote_target(args)
    aws = _aws(args) if remote is not None else None
    command = new_command(
        type="rollback",
        application=args.application,
        deployment_group=args.deployment_group,
        revision=None,
        rollback_to=args.rollback_to,
        expires_in=args.expires_in,
    )
    return _deliver(args, command, remote, aws)


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
    from agent.cli.command_remote import remote_target
    from agent.paths import check_name

    deployment_id = check_name("deployment id", args.deployment_id)
    remote = remote_target(args)
    if remote is not None:
        from agent.cli.command_remote import S3ReportReader, reports_location_for

        if remote.instance is None:
            raise UsageError("waiting on an AWS channel needs --instance ID: the report is named after the instance")
        location = reports_location_for(args, remote)
        reader = S3ReportReader(_aws(args), location, deployment_id, remote.instance)
        where = location.url(reader.key)
        return _follow(args, deployment_id, reader, rejected=lambda: None, where=where, poll=REMOTE_POLL_SECONDS)
    spool = _spool_dir(args.spool)
    report_file = spool / "reports" / f"{deployment_id}.json"
    if not (spool / "reports").is_dir():
        raise UsageError(f"{spool} is not a berth spool (no reports/ folder): check --spool")
    return _follow(args, deployment_id, lambda: _read_json(report_file),
                   rejected=lambda: _rejected_without_report(spool, deployment_id), where=str(report_file),
                   poll=POLL_SECONDS)


def _follow(
    args: argparse.Namespace,
    deployment_id: str,
    read: Callable[[], dict[str, Any] | None],
    *,
    rejected: Callable[[], str | None],
    where: str,
    poll: float,
) -> int:
    """Poll ``read`` until the report is final (or ``--timeout``); print it; the exit code says how it ended."""
    from agent.cli.render import LiveEvents, summary_table

    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    interactive = not args.json
    report: dict[str, Any] | None = read()
    if interactive and report is None:
        print(f"deployment {deployment_id}: waiting for the agent to pick it up ({where})", flush=True)
    with LiveEvents(spinner=None if interactive else False) as live:
        while True:
            report = read() or report
            if report is not None and interactive:
                live.update(report)
            if _final(report):
                break
            if report is None and (reason := rejected()) is not None:
                print(f"deployment {deployment_id}: Rejected: {reason}", file=sys.stderr)
                return EXIT_FAILED
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(poll)
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
