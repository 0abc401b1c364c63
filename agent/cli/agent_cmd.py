"""``berth agent run|status|check``: the daemon and its inspection commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agent.errors import UsageError

EXIT_USAGE = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("agent", help="run the agent daemon or look at it")
    inner = p.add_subparsers(dest="agent_command", metavar="ACTION", required=True)

    run = inner.add_parser("run", help="run the agent (in the foreground, for systemd)")
    run.add_argument("--config", type=Path, metavar="FILE", help="configuration (default /etc/berth/agent.yml)")
    run.add_argument("--once", action="store_true", help="handle the commands waiting now, then exit")
    run.add_argument("--daemonize", action="store_true", help="detach (hosts without systemd); needs --pidfile")
    run.add_argument("--pidfile", type=Path, metavar="FILE")
    run.set_defaults(handler=_run)

    status = inner.add_parser("status", help="what the agent is doing now")
    status.add_argument("--config", type=Path, metavar="FILE")
    status.add_argument("--root", type=Path, metavar="DIR", help="state root (default: from the configuration)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    check = inner.add_parser("check", help="self-check: configuration, folders and channel")
    check.add_argument("--config", type=Path, metavar="FILE")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=_check)


def _run(args: argparse.Namespace) -> int:
    from agent.cli.wiring import load_agent_config

    config = load_agent_config(args.config)
    if args.daemonize and args.pidfile is None:
        raise UsageError("--daemonize needs --pidfile FILE")
    if args.daemonize:
        import daemon
        import daemon.pidfile

        pidfile = daemon.pidfile.TimeoutPIDLockFile(str(args.pidfile.resolve()), acquire_timeout=1)
        with daemon.DaemonContext(pidfile=pidfile, working_directory="/", umask=0o022):
            return _serve(config, once=args.once, console=False)
    return _serve(config, once=args.once, console=None)


def _serve(config: Any, *, once: bool, console: bool | None) -> int:
    from agent.cli.wiring import build_daemon
    from agent.logs import setup_logging

    setup_logging(log_dir=config.log_dir, level=config.log_level, console=console)
    agent = build_daemon(config)
    agent.install_signal_handlers()
    return agent.run(once=once)


def _status(args: argparse.Namespace) -> int:
    from agent.cli.wiring import load_agent_config
    from agent.daemon.status import read_status
    from agent.paths import Paths

    config = load_agent_config(args.config)
    paths = Paths(args.root.resolve() if args.root else config.root)
    status = read_status(paths.status_file)
    if status is None:
        if args.json:
            print(json.dumps({"state": "not running", "root": str(paths.root)}))
        else:
            print(f"no agent status in {paths.root} (the agent has not run with this state root)")
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    state = status.get("state", "?")
    print(f"state:        {state}")
    if status.get("deployment_id"):
        print(f"deployment:   {status['deployment_id']} ({status.get('application')}/{status.get('deployment_group')})")
        print(f"event:        {status.get('event') or '-'}")
    for key, label in (("last_poll_at", "last poll"), ("version", "version"), ("pid", "pid"),
                       ("instance_id", "instance"), ("last_error", "last error")):
        if status.get(key) is not None:
            print(f"{label + ':':<13} {status[key]}")
    drift = status.get("drift")
    if isinstance(drift, dict):
        print(f"drift:        {drift.get('summary', drift)}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from agent.cli.check_cmd import run_check

    return run_check(args.config, json_out=args.json)


def default_instance_id() -> str:
    """On a host without AWS the instance is named by its host name."""
    import socket

    return socket.gethostname() or "localhost"

