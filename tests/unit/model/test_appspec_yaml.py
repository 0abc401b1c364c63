"""Hostile and broken appspec text: a problem with its line and column, never a traceback."""

from __future__ import annotations

import codecs

import pytest

from agent.errors import AppSpecInvalid
from agent.model.appspec import parse_appspec


def only_problem(text: str | bytes) -> str:
    with pytest.raises(AppSpecInvalid) as info:
        parse_appspec(text)
    assert len(info.value.problems) == 1, info.value.problems
    path, message = info.value.problems[0]
    assert path == ""
    return message


def test_syntax_error_names_line_and_column() -> None:
    text = "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: a.sh\n     timeout: 5\n"
    message = only_problem(text)
    assert "YAML syntax error at line 6, column 6" in message


def test_tab_indentation_names_its_line() -> None:
    assert "line 3, column 1" in only_problem("version: 0.0\nos: linux\n\tfiles: []\n")


def test_unclosed_flow_sequence() -> None:
    assert "line 1" in only_problem("files: [")


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{','.join([prev] * 9)}]")
    assert "expands to more than" in only_problem("\n".join(lines) + "\n")


def test_merge_key_bomb_is_refused() -> None:
    lines = ["m0: &m0 {k0: 0, k1: 1, k2: 2, k3: 3}"]
    for i in range(1, 25):
        lines.append(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}, *m{i - 1}, *m{i - 1}], x{i}: 1}}")
    assert "expands to more than" in only_problem("\n".join(lines) + "\n")


def test_recursive_alias_is_refused() -> None:
    assert "recursive" in only_problem("version: 0.0\nos: linux\nfiles: &f [*f]\n")


def test_deep_nesting_is_refused() -> None:
    message = only_problem("files: " + "[" * 2000 + "]" * 2000)
    assert "nested too deeply" in message


def test_python_tags_are_not_constructed() -> None:
    message = only_problem("!!python/object/apply:os.system ['echo hacked']\n")
    assert "could not determine a constructor" in message
    assert "line 1" in message


def test_invalid_utf8_names_the_byte_and_line() -> None:
    message = only_problem(b"version: 0.0\nos: linux\n# caf\xe9\n")
    assert "line 3" in message and "0xe9" in message and "UTF-8" in message


def test_control_character_names_its_position() -> None:
    assert "line 2, column 5" in only_problem("version: 0.0\nos: \x00linux\n")


def test_utf8_bom_and_utf16_are_read() -> None:
    text = "version: 0.0\nos: linux\n"
    assert parse_appspec(codecs.BOM_UTF8 + text.encode()).spec.os == "linux"
    assert parse_appspec(text.encode("utf-16")).spec.os == "linux"


def test_several_documents_are_refused() -> None:
    assert "single document" in only_problem("version: 0.0\n---\nos: linux\n")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "null\n"])
def test_empty_appspec(text: str) -> None:
    assert "empty" in only_problem(text)


@pytest.mark.parametrize("text", ["just text", "[1, 2]", "42"])
def test_not_a_mapping(text: str) -> None:
    assert "must be a YAML mapping" in only_problem(text)


def test_invalid_dates_and_huge_numbers_are_values_not_crashes() -> None:
    with pytest.raises(AppSpecInvalid) as info:
        parse_appspec(
            "version: 2001-02-30\nos: linux\nhooks:\n  AfterInstall:\n    - location: a.sh\n      timeout: "
            + "9" * 5000
            + "\n"
        )
    found = dict(info.value.problems)
    assert "2001-02-30" in found["version"]
    assert "whole number" in found["hooks.AfterInstall[0].timeout"]


def test_oversized_appspec_is_refused() -> None:
    assert "larger than" in only_problem(b"#" * (11 * 1024 * 1024))


def test_unhashable_key_is_a_yaml_error() -> None:
    assert "unhashable" in only_problem("? [a, b]\n: c\n")
