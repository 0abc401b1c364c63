"""``berth appspec validate`` as a user runs it: output, JSON shape and exit codes (0 valid, 1 invalid, 2 usage)."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

from tests.conftest import BERTH, EXAMPLES

HEAD = "version: 0.0\nos: linux\n"


def berth(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BERTH, "appspec", "validate", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_valid_folder_exits_0(berth_env: dict[str, str]) -> None:
    result = berth(berth_env, str(EXAMPLES / "webapp"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"valid: {EXAMPLES / 'webapp' / 'appspec.yml'}"


def test_default_path_is_the_current_folder(berth_env: dict[str, str]) -> None:
    result = berth(berth_env, cwd=EXAMPLES / "static-site")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("valid: ")


def test_invalid_folder_prints_every_problem_and_exits_1(berth_env: dict[str, str]) -> None:
    result = berth(berth_env, str(EXAMPLES / "invalid" / "many-problems-at-once"))
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 5
    assert "error: hooks.BeforeInstall[0].timeout: must be at least 1 second" in result.stdout
    assert "error: version: must be 0.0" in result.stdout
    assert "(5 problems)" in result.stdout
    assert "Traceback" not in result.stderr


def test_json_output_shape(berth_env: dict[str, str]) -> None:
    result = berth(berth_env, str(EXAMPLES / "invalid" / "bad-mode"), "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert set(data) == {"valid", "problems", "warnings"}
    assert data["valid"] is False
    assert data["problems"][0] == {
        "path": "permissions[0].mode",
        "message": "'0999' is not octal: use only the digits 0-7, like 644 or 0755",
    }
    assert data["warnings"] == []


def test_warnings_are_printed_but_valid(berth_env: dict[str, str]) -> None:
    case = EXAMPLES / "invalid" / "unknown-keys-warn-only"
    result = berth(berth_env, str(case))
    assert result.returncode == 0
    assert "warning: Resources: unknown key 'Resources'" in result.stdout
    data = json.loads(berth(berth_env, str(case), "--json").stdout)
    assert data["valid"] is True and data["problems"] == []
    assert {w["path"] for w in data["warnings"]} == {"Resources", "files[0].mode", "hooks.AfterInstall[0].user"}


def test_a_lone_file_skips_folder_checks(berth_env: dict[str, str], tmp_path: Path) -> None:
    appspec = tmp_path / "appspec.yml"
    appspec.write_text(HEAD + "files:\n  - {source: not-here, destination: /opt/x}\n")
    assert berth(berth_env, str(appspec)).returncode == 0
    assert berth(berth_env, str(tmp_path)).returncode == 1


def test_yaml_syntax_error_has_line_and_column_not_a_traceback(berth_env: dict[str, str]) -> None:
    result = berth(berth_env, str(EXAMPLES / "invalid" / "yaml-syntax-error"), "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert "line 6, column 6" in data["problems"][0]["message"]
    assert result.stderr == ""


def test_binary_garbage_is_a_problem_not_a_crash(berth_env: dict[str, str], tmp_path: Path) -> None:
    appspec = tmp_path / "appspec.yml"
    appspec.write_bytes(b"\xff\xfe\x00garbage\x00\x81")
    result = berth(berth_env, str(appspec))
    assert result.returncode == 1
    assert result.stdout.startswith("error: ")


def test_usage_errors_exit_2(berth_env: dict[str, str], tmp_path: Path) -> None:
    missing = berth(berth_env, str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    # A path that exists but cannot be read as a file (root reads any mode, so use a socket).
    sock_path = tmp_path / "appspec.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(sock_path))
        unreadable = berth(berth_env, str(sock_path))
    assert unreadable.returncode == 2
    assert "cannot read" in unreadable.stderr
    (tmp_path / "appspec.yml").write_text(HEAD)
    assert berth(berth_env, str(tmp_path), "--appspec-filename", "../x.yml").returncode == 2
    assert berth(berth_env, str(tmp_path), "--events", "A,,B").returncode == 2


def test_folder_without_appspec_names_what_was_looked_for(berth_env: dict[str, str], tmp_path: Path) -> None:
    result = berth(berth_env, str(tmp_path), "--appspec-filename", "deploy.yml")
    assert result.returncode == 1
    assert "looked for deploy.yml, appspec.yaml, appspec.yml" in result.stdout


def test_appspec_filename_option(berth_env: dict[str, str]) -> None:
    root = EXAMPLES / "overwrite-retain"
    result = berth(berth_env, str(root), "--appspec-filename", "appspec-retain.yml")
    assert result.returncode == 0
    assert "appspec-retain.yml" in result.stdout


def test_events_option_names_custom_events(berth_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "migrate.sh").write_text("#!/bin/sh\n")
    (tmp_path / "migrate.sh").chmod(0o755)
    (tmp_path / "appspec.yml").write_text(HEAD + "hooks:\n  MigrateDatabase:\n    - location: migrate.sh\n")
    assert berth(berth_env, str(tmp_path)).returncode == 1
    result = berth(berth_env, str(tmp_path), "--events", "BeforeInstall,MigrateDatabase")
    assert result.returncode == 0, result.stdout
