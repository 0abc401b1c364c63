"""``berth appspec validate``: check an appspec (and its revision folder) against every rule of SPEC §1.

Exit codes: 0 valid (warnings are printed), 1 invalid (every problem is printed), 2 usage error (a path that does
not exist, a file that cannot be read, a bad option).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_VALID = 0
EXIT_INVALID = 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("appspec", help="work with appspec files")
    inner = p.add_subparsers(dest="appspec_command", metavar="ACTION", required=True)
    v = inner.add_parser(
        "validate",
        help="check an appspec (and its revision folder) against every rule",
        description=(
            "Check an appspec against every rule. With a revision folder, also check that every files source and "
            "hook script exists in it and that no two sources install the same path. "
            "Exit 0 = valid, 1 = invalid, 2 = usage error."
        ),
    )
    v.add_argument("path", nargs="?", default=".", help="revision folder or appspec file (default: .)")
    v.add_argument(
        "--appspec-filename",
        default="appspec.yml",
        metavar="NAME",
        help="appspec file name in the folder (appspec.yaml and appspec.yml are tried next; default: appspec.yml)",
    )
    v.add_argument(
        "--events",
        default=None,
        metavar="E1,E2",
        help="the deployment's event list; names that are not standard events are custom events whose hooks are "
        "then accepted",
    )
    v.add_argument("--json", action="store_true", help='print {"valid", "problems", "warnings"} as JSON')
    v.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    from agent.engine.revision import check_file, find_appspec, load_appspec
    from agent.errors import AppSpecInvalid, UsageError
    from agent.model.lifecycle import custom_events

    path = Path(args.path)
    custom = custom_events(_event_names(args.events)) if args.events is not None else []
    if not path.exists():
        raise UsageError(f"{path} does not exist; give a revision folder or an appspec file")
    problems: list[tuple[str, str]] = []
    warnings: list[tuple[str, str]]
    shown = str(path)
    try:
        if path.is_dir():
            shown = str(find_appspec(path, args.appspec_filename))
            loaded = load_appspec(path, args.appspec_filename, custom_events=custom)
            warnings = [(w.path, w.message) for w in loaded.warnings]
        else:
            parsed = check_file(path, custom_events=custom)
            warnings = [(w.path, w.message) for w in parsed.warnings]
    except AppSpecInvalid as exc:
        problems, warnings = exc.problems, exc.warnings

    if args.json:
        print(
            json.dumps(
                {
                    "valid": not problems,
                    "problems": [{"path": p, "message": m} for p, m in problems],
                    "warnings": [{"path": p, "message": m} for p, m in warnings],
                },
                indent=2,
            )
        )
    else:
        for p, m in problems:
            print(_line("error", p, m))
        for p, m in warnings:
            print(_line("warning", p, m))
        if problems:
            count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
            print(f"invalid: {shown} ({count})")
        else:
            print(f"valid: {shown}")
    sys.stdout.flush()
    return EXIT_INVALID if problems else EXIT_VALID


def _event_names(text: str) -> list[str]:
    from agent.errors import UsageError

    names = [n.strip() for n in text.split(",")]
    if not names or any(not n for n in names):
        raise UsageError("--events needs event names separated by commas, e.g. --events BeforeInstall,MyEvent")
    return names


def _line(kind: str, path: str, message: str) -> str:
    return f"{kind}: {path}: {message}" if path else f"{kind}: {message}"
