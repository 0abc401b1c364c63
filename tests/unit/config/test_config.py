"""Configuration loading: defaults, every problem reported as `file: key: message`, relative paths."""

from __future__ import annotations

import grp
from pathlib import Path

import pytest

from agent.config import AgentConfig, load_config
from agent.errors import ConfigInvalid
from agent.paths import DEFAULT_CONFIG, DEFAULT_LOG_DIR, DEFAULT_ROOT


def write(tmp_path: Path, text: str, name: str = "agent.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigInvalid) as info:
        load_config(path)
    return info.value.problems


def test_defaults_match_the_documented_ones() -> None:
    cfg = AgentConfig()
    assert cfg.root == DEFAULT_ROOT and cfg.log_dir == DEFAULT_LOG_DIR
    assert (cfg.max_revisions, cfg.hook_kill_grace, cfg.shutdown_grace, cfg.poll_interval) == (5, 30.0, 300.0, 1.0)
    assert cfg.channel.kind == "spool" and cfg.spool_dir == DEFAULT_ROOT / "spool"
    assert cfg.drift_check_interval is None and cfg.source is None
    assert not DEFAULT_CONFIG.exists() or load_config(None).source == DEFAULT_CONFIG


def test_an_empty_file_means_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "# nothing set\n"))
    assert cfg == AgentConfig(source=tmp_path / "agent.yml")


def test_a_full_file_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, """
root: /srv/berth
log_dir: /srv/log
log_level: DEBUG
max_revisions: 2
hook_kill_grace: 5
hook_output_grace: 0.5
shutdown_grace: 120
poll_interval: 2
heartbeat_interval: 30
lock_timeout: 10
drift_check_interval: 600
instance_id: i-0123
channel:
  kind: sqs
  queue_url: https://sqs.us-east-1.amazonaws.com/123/berth
  wait_time_seconds: 10
aws:
  region: eu-west-1
  endpoints: {s3: "http://127.0.0.1:5000"}
  reports_bucket: reports
  cloudwatch: true
  log_group: /berth
""")
    cfg = load_config(path)
    assert cfg.root == Path("/srv/berth") and cfg.log_level == "debug" and cfg.max_revisions == 2
    assert cfg.hook_output_grace == 0.5 and cfg.drift_check_interval == 600.0 and cfg.instance_id == "i-0123"
    assert cfg.channel.kind == "sqs" and cfg.channel.settings["wait_time_seconds"] == 10
    assert cfg.aws.region == "eu-west-1" and cfg.aws.endpoints == {"s3": "http://127.0.0.1:5000"}
    assert cfg.aws.cloudwatch and cfg.aws.log_group == "/berth" and cfg.source == path


def test_relative_paths_are_resolved_against_the_files_folder(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    cfg = load_config(write(tmp_path / "etc", "root: ../state\nlog_dir: logs\nchannel: {dir: ../spool}\n"))
    assert cfg.root == tmp_path / "state"
    assert cfg.log_dir == tmp_path / "etc" / "logs"
    assert cfg.spool_dir == tmp_path / "spool"


def test_every_problem_is_reported_with_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, """
max_revisions: 0
hook_kill_grace: -1
shutdown_grace: 0
poll_interval: soon
log_level: loud
max_revison: 3
channel:
  kind: s3
  bucket: b
aws:
  endpoints: {sqs: "ftp://x"}
  colour: blue
""")
    problems = problems_of(path)
    expected = [
        "max_revisions: must be a whole number >= 1, not 0",
        "hook_kill_grace: must be greater than 0 seconds, not -1",
        "shutdown_grace: must be greater than 0 seconds, not 0",
        "poll_interval: must be a number of seconds, not 'soon'",
        "log_level: must be one of debug, info, warning, error, critical, not 'loud'",
        "max_revison: unknown key; did you mean 'max_revisions'?",
        "channel.prefix: is required for a s3 channel",
        "aws.endpoints.sqs: must be an http:// or https:// URL, not 'ftp://x'",
        "aws.colour: unknown key",
    ]
    for message in expected:
        assert any(line.startswith(f"{path}: ") and message in line for line in problems), message
    assert len(problems) == len(expected)


def test_wrong_types_and_unknown_channel(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "root: 5\nchannel: {kind: carrier-pigeon}\naws: [1]\nmax_revisions: true\n"))
    assert any("root: must be a non-empty string, not 5" in p for p in problems)
    assert any("channel.kind: must be one of spool, sqs, s3, not 'carrier-pigeon'" in p for p in problems)
    assert any("aws: must be a mapping" in p for p in problems)
    assert any("max_revisions: must be a whole number" in p for p in problems)


def test_sqs_needs_a_queue_url(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "channel:\n  kind: sqs\n"))
    assert problems == [f"{tmp_path / 'agent.yml'}: channel.queue_url: is required for a sqs channel"]


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "root: /x\nchannel:\n  kind: spool\n   dir: bad\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:4:")
    assert "YAML syntax error" in problem


def test_duplicate_keys_are_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "max_revisions: 3\nmax_revisions: 4\n")
    assert problems_of(path) == [f"{path}:2:1: duplicate key 'max_revisions' (only one value can win)"]


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "- root\n"))
    assert "must be a mapping of keys" in problem


def test_an_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigInvalid) as info:
        load_config(tmp_path / "nope.yml")
    assert info.value.problems == [f"{tmp_path / 'nope.yml'}: file not found (create it, or pass --config with an"
                                   " existing file)"]


def test_spool_group_must_exist(tmp_path: Path) -> None:
    existing = grp.getgrgid(0).gr_name
    assert load_config(write(tmp_path, f"spool_group: {existing}\n")).spool_group == existing
    (problem,) = problems_of(write(tmp_path, "spool_group: no-such-group-here\n", "b.yml"))
    assert problem.endswith("spool_group: no group named 'no-such-group-here' on this host"
                            " (create it or remove the key)")


def test_cloudwatch_needs_a_log_group(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "aws: {cloudwatch: true}\n"))
    assert problem.endswith("aws.log_group: is required when aws.cloudwatch is true")


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "channel: {kind: s3, bucket: b, prefix: p/}\n"))
    with pytest.raises(AttributeError):
        cfg.root = Path("/")  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.channel.settings["bucket"] = "other"  # type: ignore[index]


EXAMPLE = Path(__file__).resolve().parents[3] / "packaging" / "agent.yml"


def test_the_shipped_example_loads_and_its_defaults_are_the_real_ones(tmp_path: Path) -> None:
    assert load_config(EXAMPLE) == AgentConfig(source=EXAMPLE)
    # Uncomment every top-level "#key: value" line that shows a default: the result must equal the defaults.
    shown_defaults = [
        line[1:] for line in EXAMPLE.read_text().splitlines()
        if line.startswith("#") and not line.startswith("# ") and ":" in line and not line.rstrip().endswith(":")
        and line[1:].split(":")[0] not in ("drift_check_interval", "instance_id", "spool_group")
    ]
    assert len(shown_defaults) == 10
    uncommented = load_config(write(tmp_path, "\n".join(shown_defaults) + "\n"))
    assert uncommented == AgentConfig(source=tmp_path / "agent.yml")
