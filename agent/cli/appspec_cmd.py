"""``berth appspec validate``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("appspec", help="work with appspec files")
    inner = p.add_subparsers(dest="appspec_command", metavar="ACTION", required=True)
    v = inner.add_parser("validate", help="check an appspec (and its revision folder) against every rule")
    v.add_argument("path", nargs="?", default=".", help="revision folder or appspec file (default: .)")
    v.add_argument("--appspec-filename", default="appspec.yml", metavar="NAME")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    raise NotImplementedError("appspec validate is being built")
