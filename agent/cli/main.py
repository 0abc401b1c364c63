"""``berth`` command line: the composition root.

Each command group lives in its own module under ``agent.cli`` exposing ``register(subparsers)``; handlers return
the process exit code. Heavy imports happen inside handlers so that ``berth --help`` and a local deployment start
fast (a local deployment never imports boto3).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from agent import __version__
from agent.errors import BerthError, ConfigInvalid, UsageError

# Command-group modules, in the order ``berth --help`` lists them.
COMMAND_MODULES = (
    "agent.cli.appspec_cmd",
    "agent.cli.deploy_cmd",
    "agent.cli.agent_cmd",
    "agent.cli.command_cmd",
    "agent.cli.ops_cmd",
    "agent.cli.clean_cmd",
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors, which is berth's usage exit code too."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="berth",
        description="berth: on-instance deployment agent for CodeDeploy-compatible appspec.yml revisions.",
    )
    parser.add_argument("--version", action="version", version=f"berth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = handler(args)
    except ConfigInvalid as exc:
        for line in exc.problems:
            print(f"berth: {line}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"berth: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BerthError as exc:
        print(f"berth: {exc.reason}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
