"""Lifecycle order (SPEC §2): defaults, inserted agent events, custom events and the order rules."""

from __future__ import annotations

import pytest

from agent.errors import UsageError
from agent.model import lifecycle
from agent.model.lifecycle import custom_events, default_events, resolve_events

LOCAL_DEFAULT = [
    "BeforeBlockTraffic",
    "AfterBlockTraffic",
    "ApplicationStop",
    "DownloadBundle",
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
    "BeforeAllowTraffic",
    "AfterAllowTraffic",
]


def test_local_default_is_every_scriptable_event_plus_download_and_install() -> None:
    assert default_events() == LOCAL_DEFAULT
    assert resolve_events(None) == LOCAL_DEFAULT


def test_with_a_load_balancer_block_and_allow_traffic_wrap_the_deployment() -> None:
    events = default_events(with_traffic=True)
    assert events[:3] == ["BeforeBlockTraffic", "BlockTraffic", "AfterBlockTraffic"]
    assert events[-3:] == ["BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic"]
    assert list(lifecycle.STANDARD_EVENTS) == events


def test_scriptable_events_exclude_what_berth_runs_itself() -> None:
    assert set(lifecycle.SCRIPTABLE_EVENTS) == set(LOCAL_DEFAULT) - {"DownloadBundle", "Install"}
    assert set(lifecycle.AGENT_EVENTS) == {"DownloadBundle", "Install", "BlockTraffic", "AllowTraffic"}
    assert set(lifecycle.PREVIOUS_REVISION_EVENTS) == {"ApplicationStop", "BeforeBlockTraffic", "AfterBlockTraffic"}


def test_download_and_install_are_added_where_they_belong() -> None:
    assert resolve_events(["ApplicationStop", "BeforeInstall", "AfterInstall"]) == [
        "ApplicationStop",
        "DownloadBundle",
        "BeforeInstall",
        "Install",
        "AfterInstall",
    ]
    assert resolve_events(["AfterInstall"]) == ["DownloadBundle", "Install", "AfterInstall"]
    assert resolve_events(["BeforeBlockTraffic", "AfterBlockTraffic", "ValidateService"]) == [
        "BeforeBlockTraffic",
        "AfterBlockTraffic",
        "DownloadBundle",
        "Install",
        "ValidateService",
    ]


def test_given_order_is_kept_and_custom_events_run_where_listed() -> None:
    events = ["DownloadBundle", "MigrateDatabase", "BeforeInstall", "Install", "WarmCache", "ApplicationStart"]
    assert resolve_events(events) == events
    assert custom_events(events) == ["MigrateDatabase", "WarmCache"]


def test_custom_event_alone_comes_after_download_and_install() -> None:
    assert resolve_events(["Smoke"]) == ["DownloadBundle", "Install", "Smoke"]


def test_with_traffic_inserts_block_and_allow_traffic() -> None:
    assert resolve_events(["BeforeBlockTraffic", "AfterInstall", "AfterAllowTraffic"], with_traffic=True) == [
        "BeforeBlockTraffic",
        "BlockTraffic",
        "DownloadBundle",
        "Install",
        "AfterInstall",
        "AllowTraffic",
        "AfterAllowTraffic",
    ]


@pytest.mark.parametrize(
    ("events", "says"),
    [
        (["BeforeInstall", "DownloadBundle"], "BeforeInstall cannot run before DownloadBundle"),
        (["MyEvent", "DownloadBundle"], "MyEvent cannot run before DownloadBundle"),
        (["Install", "DownloadBundle"], "Install cannot run before DownloadBundle"),
        (["DownloadBundle", "Install", "BeforeInstall"], "list BeforeInstall before Install"),
        (["AfterInstall", "AfterInstall"], "AfterInstall is listed twice"),
        (["AfterInstall", ""], "empty"),
        (["After Install"], "spaces"),
        (["AfterInstall", "BeforeInstall"], "AfterInstall is listed before BeforeInstall"),
        (["ValidateService", "ApplicationStart"], "ValidateService is listed before ApplicationStart"),
    ],
)
def test_order_rules_are_enforced_with_a_fix(events: list[str], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        resolve_events(events)


def test_application_stop_may_precede_download() -> None:
    assert resolve_events(["ApplicationStop", "DownloadBundle"])[:2] == ["ApplicationStop", "DownloadBundle"]
