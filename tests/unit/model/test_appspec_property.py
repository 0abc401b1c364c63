"""Property: for ANY input the parser returns a model or raises AppSpecInvalid — nothing else, ever."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import AppSpecInvalid
from agent.model.appspec import ParsedAppSpec, parse_appspec
from agent.model.lifecycle import STANDARD_EVENTS

# Raw inputs are cheap; generated documents cost a YAML dump each, so fewer of them keep the unit tests fast.
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DOC_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["0644", "0999", "644", "0.0", "linux", "windows", "/", "../x", "**", "*.sh", "u:a:rw", "s0"]),
)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=12) | st.integers(), inner, max_size=4),
    max_leaves=20,
)

script = st.fixed_dictionaries(
    {},
    optional={"location": json_like, "timeout": json_like, "runas": json_like, "sudo": json_like, "x": json_like},
)
permission = st.fixed_dictionaries(
    {},
    optional={
        key: json_like
        for key in ("object", "pattern", "except", "type", "owner", "group", "mode", "acls", "context")
    },
)
appspec_like = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from([0, 0.0, "0.0", 1]) | json_like,
        "os": st.sampled_from(["linux", "windows"]) | json_like,
        "files": st.lists(
            st.fixed_dictionaries({}, optional={"source": json_like, "destination": json_like}) | json_like,
            max_size=3,
        )
        | json_like,
        "permissions": st.lists(permission | json_like, max_size=3) | json_like,
        "hooks": st.dictionaries(
            st.sampled_from(STANDARD_EVENTS) | st.text(max_size=10), st.lists(script, max_size=3) | json_like,
            max_size=4,
        )
        | json_like,
        "file_exists_behavior": st.sampled_from(["DISALLOW", "retain", "KEEP"]) | json_like,
        "berth": st.fixed_dictionaries(
            {},
            optional={
                "health_check": st.fixed_dictionaries(
                    {},
                    optional={
                        k: json_like
                        for k in ("url", "expected_status", "body_contains", "timeout", "retries", "interval")
                    },
                )
                | json_like,
                "auto_rollback": json_like,
            },
        )
        | json_like,
        "other": json_like,
    },
)


def outcome(data: str | bytes) -> ParsedAppSpec | AppSpecInvalid:
    try:
        return parse_appspec(data)
    except AppSpecInvalid as exc:
        # Every problem carries a path and a message a user can read.
        assert exc.problems
        for path, message in [*exc.problems, *exc.warnings]:
            assert isinstance(path, str) and isinstance(message, str) and message
        return exc


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    outcome(data)


@SETTINGS
@given(st.text(max_size=300))
def test_arbitrary_text(data: str) -> None:
    outcome(data)


@DOC_SETTINGS
@given(json_like)
def test_arbitrary_yaml_documents(value: Any) -> None:
    outcome(yaml.safe_dump(value))


@DOC_SETTINGS
@given(appspec_like)
def test_appspec_shaped_documents(value: dict[str, Any]) -> None:
    result = outcome(yaml.safe_dump(value))
    if isinstance(result, ParsedAppSpec):
        assert result.spec.version == "0.0" and result.spec.os == "linux"


@DOC_SETTINGS
@given(appspec_like, st.sampled_from(["*", "&", "<<: ", "!!binary ", "!!set ", "? ", "%", "\t", "'", '"']),
       st.integers(min_value=0, max_value=400))
def test_appspec_shaped_documents_with_yaml_punctuation_spliced_in(value: dict[str, Any], junk: str, at: int) -> None:
    text = yaml.safe_dump(value)
    at = min(at, len(text))
    outcome(text[:at] + junk + text[at:])


@SETTINGS
@given(st.lists(st.sampled_from(["a: &x [1, 2]\n", "b: *x\n", "c: &y {<<: *y}\n", "d: [*x, *x]\n", "e: &x {k: *x}\n"]),
                max_size=6))
def test_arbitrary_anchor_and_alias_combinations(lines: list[str]) -> None:
    outcome("".join(lines))
