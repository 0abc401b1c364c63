"""Locating the appspec in a revision folder and checking it against that folder; the example revisions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.engine.revision import APPSPEC_FALLBACKS, check_file, find_appspec, load_appspec
from agent.errors import AppSpecInvalid, UsageError
from agent.model.appspec import HookScript

EXAMPLES = Path(__file__).resolve().parents[3] / "appspec_examples"
VALID_EXAMPLES = ["webapp", "static-site", "traffic-hooks", "overwrite-retain"]
INVALID_CASES = sorted(p.name for p in (EXAMPLES / "invalid").iterdir() if p.is_dir())

HEAD = "version: 0.0\nos: linux\n"


def revision(tmp_path: Path, appspec: str, files: dict[str, str] | None = None, *, name: str = "appspec.yml") -> Path:
    root = tmp_path / "rev"
    root.mkdir()
    (root / name).write_text(HEAD + appspec)
    for rel, text in (files or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if rel.endswith(".sh"):
            path.chmod(0o755)
    return root


def problems_of(root: Path, **kwargs: object) -> dict[str, str]:
    with pytest.raises(AppSpecInvalid) as info:
        load_appspec(root, **kwargs)  # type: ignore[arg-type]
    return dict(info.value.problems)


# ------------------------------------------------------------------------------------------------ finding it
def test_lookup_order_is_given_name_then_yaml_then_yml(tmp_path: Path) -> None:
    assert APPSPEC_FALLBACKS == ("appspec.yaml", "appspec.yml")
    root = tmp_path / "r"
    root.mkdir()
    (root / "appspec.yml").write_text(HEAD)
    assert find_appspec(root).name == "appspec.yml"
    (root / "appspec.yaml").write_text(HEAD)
    assert find_appspec(root, "custom.yml").name == "appspec.yaml"
    (root / "custom.yml").write_text(HEAD)
    assert find_appspec(root, "custom.yml").name == "custom.yml"


def test_no_appspec_names_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(AppSpecInvalid) as info:
        find_appspec(tmp_path, "deploy.yml")
    message = info.value.problems[0][1]
    assert "deploy.yml, appspec.yaml, appspec.yml" in message


def test_missing_folder_and_escaping_name_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        find_appspec(tmp_path / "nope")
    with pytest.raises(UsageError, match="inside the revision"):
        find_appspec(tmp_path, "../appspec.yml")


def test_appspec_symlinked_outside_the_revision_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yml"
    outside.write_text(HEAD)
    root = tmp_path / "rev"
    root.mkdir()
    (root / "appspec.yml").symlink_to(outside)
    with pytest.raises(AppSpecInvalid, match="outside the revision"):
        find_appspec(root)


def test_unreadable_appspec_is_a_usage_error(tmp_path: Path) -> None:
    root = tmp_path / "rev"
    root.mkdir()
    (root / "appspec.yml").mkdir()  # not a file: looked past, then nothing found
    with pytest.raises(AppSpecInvalid):
        load_appspec(root)
    with pytest.raises(UsageError, match="cannot read"):
        check_file(root / "appspec.yml")
    with pytest.raises(UsageError, match="cannot read"):
        check_file(root / "missing.yml")


# ------------------------------------------------------------------------------------------- folder checks
def test_valid_revision_loads_with_its_path(tmp_path: Path) -> None:
    root = revision(
        tmp_path,
        "files:\n  - {source: /, destination: /opt/app}\nhooks:\n  AfterInstall:\n    - location: /s/run.sh\n",
        {"s/run.sh": "#!/bin/sh\n"},
    )
    loaded = load_appspec(root)
    assert loaded.path == root / "appspec.yml"
    assert loaded.warnings == ()
    assert loaded.spec.scripts("AfterInstall") == (HookScript("/s/run.sh"),)


def test_missing_sources_and_scripts_are_all_reported_with_text_problems(tmp_path: Path) -> None:
    root = revision(
        tmp_path,
        "version_extra: 1\nfiles:\n  - {source: app, destination: /opt/app}\n  - {source: lib, destination: rel}\n"
        "hooks:\n  AfterInstall:\n    - {location: s/a.sh, timeout: -1}\n    - location: s/b.sh\n",
    )
    found = problems_of(root)
    assert set(found) == {
        "files[0].source",
        "files[1].destination",
        "hooks.AfterInstall[0].timeout",
        "hooks.AfterInstall[0].location",
        "hooks.AfterInstall[1].location",
    }
    assert "does not exist" in found["files[0].source"]


def test_two_file_sources_on_one_destination_name_both(tmp_path: Path) -> None:
    root = revision(
        tmp_path,
        "files:\n  - {source: a/x.conf, destination: /etc/app}\n  - {source: b/x.conf, destination: /etc/app}\n",
        {"a/x.conf": "a", "b/x.conf": "b"},
    )
    message = problems_of(root)["files[1]"]
    assert "files[0] (source 'a/x.conf')" in message and "files[1] (source 'b/x.conf')" in message
    assert "/etc/app/x.conf" in message


def test_folder_sources_may_share_folders_but_not_files(tmp_path: Path) -> None:
    files = {"one/css/a.css": "", "two/css/b.css": "", "two/js/c.js": ""}
    ok = revision(tmp_path, "files:\n  - {source: one, destination: /w}\n  - {source: two, destination: /w}\n", files)
    load_appspec(ok)
    (ok / "two" / "css" / "a.css").write_text("clash")
    (ok / "two" / "index.html").write_text("")
    message = problems_of(ok)["files[1]"]
    assert "/w/css/a.css" in message


def test_whole_revision_source_collides_with_a_file_source(tmp_path: Path) -> None:
    root = revision(
        tmp_path,
        "files:\n  - {source: /, destination: /opt/app}\n  - {source: conf/app.ini, destination: /opt/app/conf}\n",
        {"conf/app.ini": ""},
    )
    assert "both install /opt/app/conf/app.ini" in problems_of(root)["files[1]"]


def test_a_file_where_another_entry_needs_a_folder(tmp_path: Path) -> None:
    root = revision(
        tmp_path,
        "files:\n  - {source: data, destination: /opt}\n  - {source: other.txt, destination: /opt/data}\n",
        {"data": "a file named data", "other.txt": ""},
    )
    assert "both install /opt/data" in problems_of(root)["files[1]"]


def test_script_symlink_leaving_the_revision_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "evil.sh"
    outside.write_text("#!/bin/sh\n")
    outside.chmod(0o755)
    root = revision(tmp_path, "hooks:\n  BeforeInstall:\n    - location: scripts/run.sh\n")
    (root / "scripts").mkdir()
    (root / "scripts" / "run.sh").symlink_to(outside)
    assert "outside the revision" in problems_of(root)["hooks.BeforeInstall[0].location"]


def test_script_folder_symlinked_outside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "run.sh").write_text("#!/bin/sh\n")
    root = revision(tmp_path, "hooks:\n  BeforeInstall:\n    - location: scripts/run.sh\n")
    (root / "scripts").symlink_to(tmp_path / "elsewhere")
    assert "outside the revision" in problems_of(root)["hooks.BeforeInstall[0].location"]


def test_source_symlinked_outside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    root = revision(tmp_path, "files:\n  - {source: data, destination: /opt/app}\n")
    (root / "data").symlink_to(tmp_path / "secrets")
    assert "outside the revision" in problems_of(root)["files[0].source"]


def test_script_that_is_a_folder_or_dangling_link(tmp_path: Path) -> None:
    root = revision(tmp_path, "hooks:\n  AfterInstall:\n    - location: scripts\n    - location: gone.sh\n")
    (root / "scripts").mkdir()
    (root / "gone.sh").symlink_to(root / "nothing-here")
    found = problems_of(root)
    assert "is a folder" in found["hooks.AfterInstall[0].location"]
    assert "does not exist" in found["hooks.AfterInstall[1].location"]


def test_non_executable_script_is_a_warning(tmp_path: Path) -> None:
    root = revision(tmp_path, "hooks:\n  AfterInstall:\n    - location: run\n", {"run": "#!/bin/sh\n"})
    loaded = load_appspec(root)
    assert [w.path for w in loaded.warnings] == ["hooks.AfterInstall[0].location"]
    assert "not executable" in loaded.warnings[0].message


def test_custom_event_hooks_validate_when_named(tmp_path: Path) -> None:
    root = revision(tmp_path, "hooks:\n  Migrate:\n    - location: m.sh\n", {"m.sh": "#!/bin/sh\n"})
    assert "unknown lifecycle event" in problems_of(root)["hooks.Migrate"]
    assert load_appspec(root, custom_events=["Migrate"]).spec.scripts("Migrate")


def test_check_file_skips_folder_checks(tmp_path: Path) -> None:
    root = revision(tmp_path, "files:\n  - {source: not-here, destination: /opt/x}\n")
    assert check_file(root / "appspec.yml").spec.files[0].source == "not-here"


def test_appspec_under_another_name(tmp_path: Path) -> None:
    root = revision(tmp_path, "", name="deploy.yaml")
    assert load_appspec(root, "deploy.yaml").path.name == "deploy.yaml"


# ------------------------------------------------------------------------------------------------ examples
@pytest.mark.parametrize("name", VALID_EXAMPLES)
def test_example_revisions_are_valid_without_warnings(name: str) -> None:
    root = EXAMPLES / name
    loaded = load_appspec(root)
    assert loaded.warnings == ()
    assert (root / "README.md").is_file()
    for mapping in loaded.spec.files:
        assert mapping.destination.startswith(f"/opt/berth-examples/{name}")


def test_overwrite_retain_example_ships_both_behaviours() -> None:
    root = EXAMPLES / "overwrite-retain"
    assert load_appspec(root).spec.file_exists_behavior == "OVERWRITE"
    assert load_appspec(root, "appspec-retain.yml").spec.file_exists_behavior == "RETAIN"


def test_webapp_example_conventions() -> None:
    root = EXAMPLES / "webapp"
    spec = load_appspec(root).spec
    assert set(spec.hooks) >= {"ApplicationStop", "ApplicationStart", "ValidateService"}
    assert (root / "VERSION").read_text().strip()
    for script in ["server.py", *(s.relative_location for scripts in spec.hooks.values() for s in scripts)]:
        assert os.access(root / script, os.X_OK), script
    text = (root / "server.py").read_text()
    assert "/opt/berth-examples/webapp" in text and "WEBAPP_PORT" in text and "127.0.0.1" in text


def test_traffic_example_uses_all_four_traffic_hooks() -> None:
    spec = load_appspec(EXAMPLES / "traffic-hooks").spec
    assert {"BeforeBlockTraffic", "AfterBlockTraffic", "BeforeAllowTraffic", "AfterAllowTraffic"} <= set(spec.hooks)


def test_static_site_example_sets_permissions() -> None:
    spec = load_appspec(EXAMPLES / "static-site").spec
    assert any(p.except_ for p in spec.permissions)
    assert any(p.types == ("directory",) for p in spec.permissions)
    assert {p.owner for p in spec.permissions} == {"root"}


def test_there_are_enough_invalid_cases() -> None:
    assert len(INVALID_CASES) >= 12


@pytest.mark.parametrize("case", INVALID_CASES)
def test_invalid_example_produces_exactly_its_expected_problems(case: str) -> None:
    root = EXAMPLES / "invalid" / case
    expected = json.loads((root / "expected.json").read_text())
    try:
        loaded = load_appspec(root)
        problems: list[tuple[str, str]] = []
        warnings = [(w.path, w.message) for w in loaded.warnings]
    except AppSpecInvalid as exc:
        problems, warnings = exc.problems, exc.warnings
    _assert_matches(problems, expected["problems"], "problems")
    _assert_matches(warnings, expected["warnings"], "warnings")


def _assert_matches(actual: list[tuple[str, str]], expected: list[dict[str, str]], what: str) -> None:
    assert len(actual) == len(expected), f"{what}: got {actual}"
    remaining = list(actual)
    for item in expected:
        match = next(
            (a for a in remaining if a[0] == item["path"] and item["message_contains"] in a[1]),
            None,
        )
        assert match is not None, f"{what}: no {item} in {remaining}"
        remaining.remove(match)
