"""Lifecycle events and their order (SPEC §2). Pure rules, no I/O.

An in-place deployment runs ``IN_PLACE_ORDER``; with a load balancer ``TRAFFIC_BEFORE`` comes first and
``TRAFFIC_AFTER`` last. ``AGENT_EVENTS`` are performed by berth itself and never run scripts. The events of
``PREVIOUS_REVISION_EVENTS`` run the scripts of the last successful revision, because the new one is not
installed yet when they run.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from agent.errors import UsageError

IN_PLACE_ORDER: tuple[str, ...] = (
    "ApplicationStop",
    "DownloadBundle",
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
)
TRAFFIC_BEFORE: tuple[str, ...] = ("BeforeBlockTraffic", "BlockTraffic", "AfterBlockTraffic")
TRAFFIC_AFTER: tuple[str, ...] = ("BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic")

# Every standard event, in the order a deployment with a load balancer runs them.
STANDARD_EVENTS: tuple[str, ...] = TRAFFIC_BEFORE + IN_PLACE_ORDER + TRAFFIC_AFTER

AGENT_EVENTS: frozenset[str] = frozenset({"DownloadBundle", "Install", "BlockTraffic", "AllowTraffic"})
PREVIOUS_REVISION_EVENTS: frozenset[str] = frozenset({"ApplicationStop", "BeforeBlockTraffic", "AfterBlockTraffic"})

# Events an appspec may attach scripts to, in running order.
SCRIPTABLE_EVENTS: tuple[str, ...] = tuple(e for e in STANDARD_EVENTS if e not in AGENT_EVENTS)

# Events that may come before DownloadBundle: they act on the revision already installed.
_BEFORE_DOWNLOAD: frozenset[str] = PREVIOUS_REVISION_EVENTS | {"BlockTraffic"}
_TRAFFIC_AGENT_EVENTS = ("BlockTraffic", "AllowTraffic")


def default_events(with_traffic: bool = False) -> list[str]:
    """The events a local deployment runs when the command names none.

    Every scriptable event in order plus DownloadBundle and Install; BlockTraffic and AllowTraffic only when the
    deployment has a load balancer (``with_traffic``).
    """
    return [e for e in STANDARD_EVENTS if with_traffic or e not in _TRAFFIC_AGENT_EVENTS]


def custom_events(events: Sequence[str]) -> list[str]:
    """The names in ``events`` that are not standard lifecycle events, in the given order."""
    standard = set(STANDARD_EVENTS)
    return [e for e in events if e not in standard]


def resolve_events(requested: Sequence[str] | None, *, with_traffic: bool = False) -> list[str]:
    """The events to run, in order, for a command that lists ``requested`` (``None``: the defaults).

    The given order is kept. DownloadBundle and Install are added when missing (DownloadBundle after any leading
    ApplicationStop/BeforeBlockTraffic/AfterBlockTraffic, Install right after BeforeInstall if listed, else right
    after DownloadBundle); with a load balancer BlockTraffic and AllowTraffic are added too. Names outside the
    standard set are custom events. Raises :class:`UsageError` saying what to change when a name is blank or
    repeated, or when the order breaks SPEC §2's rules: only BeforeBlockTraffic, AfterBlockTraffic and
    ApplicationStop (and BlockTraffic) may precede DownloadBundle, Install follows DownloadBundle and
    BeforeInstall, and standard events keep their standard relative order.
    """
    if requested is None:
        return default_events(with_traffic)
    events = list(requested)
    _check_names(events)
    if "DownloadBundle" not in events:
        at = 0
        while at < len(events) and events[at] in _BEFORE_DOWNLOAD:
            at += 1
        events.insert(at, "DownloadBundle")
    if "Install" not in events:
        anchor = "BeforeInstall" if "BeforeInstall" in events else "DownloadBundle"
        events.insert(events.index(anchor) + 1, "Install")
    if with_traffic:
        _insert_traffic(events)
    _check_order(events, listed=set(requested))
    return events


def _check_names(events: list[str]) -> None:
    seen: set[str] = set()
    for name in events:
        if not isinstance(name, str) or not name.strip():
            raise UsageError("an event name is empty; list event names separated by commas, e.g. BeforeInstall,MyEvent")
        if name != name.strip() or any(c.isspace() or c == "," for c in name):
            raise UsageError(f"event name {name!r} contains spaces or commas; event names are single words")
        if name in seen:
            raise UsageError(f"event {name} is listed twice; list each event once")
        seen.add(name)


def _insert_traffic(events: list[str]) -> None:
    # BlockTraffic sits between its Before/After events; when neither is listed it opens the deployment, while
    # AllowTraffic closes it.
    if "BlockTraffic" not in events:
        if "BeforeBlockTraffic" in events:
            events.insert(events.index("BeforeBlockTraffic") + 1, "BlockTraffic")
        elif "AfterBlockTraffic" in events:
            events.insert(events.index("AfterBlockTraffic"), "BlockTraffic")
        else:
            events.insert(0, "BlockTraffic")
    if "AllowTraffic" not in events:
        if "BeforeAllowTraffic" in events:
            events.insert(events.index("BeforeAllowTraffic") + 1, "AllowTraffic")
        elif "AfterAllowTraffic" in events:
            events.insert(events.index("AfterAllowTraffic"), "AllowTraffic")
        else:
            events.append("AllowTraffic")


def _check_order(events: list[str], listed: set[str]) -> None:
    download = events.index("DownloadBundle")
    # Only name what the command listed: an inserted Install before DownloadBundle follows from a listed error.
    early = [e for e in events[:download] if e not in _BEFORE_DOWNLOAD and e in listed]
    if early:
        raise UsageError(
            f"{', '.join(early)} cannot run before DownloadBundle: only BeforeBlockTraffic, AfterBlockTraffic and "
            "ApplicationStop may precede it (they act on the revision already installed); move "
            f"{'it' if len(early) == 1 else 'them'} after DownloadBundle"
        )
    install = events.index("Install")
    if install < download:
        raise UsageError("Install is listed before DownloadBundle; list DownloadBundle first")
    if "BeforeInstall" in events and install < events.index("BeforeInstall"):
        raise UsageError("Install is listed before BeforeInstall; list BeforeInstall before Install")
    # Standard events keep their standard relative order (AfterInstall cannot run before BeforeInstall);
    # custom events may go anywhere after DownloadBundle.
    rank = {name: i for i, name in enumerate(STANDARD_EVENTS)}
    standard = [e for e in events if e in rank]
    for earlier, later in pairwise(standard):
        if rank[earlier] > rank[later]:
            raise UsageError(
                f"{earlier} is listed before {later}, but it runs after it; list standard events in their order: "
                f"{', '.join(e for e in STANDARD_EVENTS if e in events)}"
            )
