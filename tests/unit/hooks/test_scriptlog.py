"""scripts.log: the CodeDeploy agent's format, headers, and the per-line callback."""

from __future__ import annotations

import re
from pathlib import Path

from agent.hooks.scriptlog import ScriptLog

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def test_format_and_callback(tmp_path: Path) -> None:
    seen: list[tuple[str, str, str]] = []
    path = tmp_path / "deep" / "logs" / "scripts.log"
    with ScriptLog(path, on_line=lambda *a: seen.append(a)) as log:
        log.event("AfterInstall")
        log.script("scripts/setup.sh")
        log.output("AfterInstall", "stdout", ["one", "two"])
        log.output("AfterInstall", "stderr", ["oops"])
    lines = path.read_text().splitlines()
    patterns = [
        "LifecycleEvent - AfterInstall",
        "Script - scripts/setup.sh",
        r"\[stdout\]one",
        r"\[stdout\]two",
        r"\[stderr\]oops",
    ]
    assert len(lines) == len(patterns)
    for line, pattern in zip(lines, patterns, strict=True):
        assert re.fullmatch(f"{STAMP} {pattern}", line), line
    assert seen == [
        ("AfterInstall", "stdout", "one"),
        ("AfterInstall", "stdout", "two"),
        ("AfterInstall", "stderr", "oops"),
    ]


def test_appends_to_an_existing_log(tmp_path: Path) -> None:
    path = tmp_path / "scripts.log"
    path.write_text("earlier\n")
    with ScriptLog(path) as log:
        log.event("ApplicationStop")
    lines = path.read_text().splitlines()
    assert lines[0] == "earlier"
    assert lines[1].endswith(" LifecycleEvent - ApplicationStop")


def test_lines_are_visible_before_close(tmp_path: Path) -> None:
    path = tmp_path / "scripts.log"
    log = ScriptLog(path)
    log.output("ValidateService", "stdout", ["now"])
    assert path.read_text().endswith(" [stdout]now\n")
    log.close()
    log.close()
