"""Validation of berth's own extension, the top-level ``berth:`` key (CodeDeploy ignores it).

Unlike unknown keys elsewhere (ignored with a warning, as CodeDeploy does), an unknown key *inside* ``berth:`` is
an error: it is berth's own namespace, so a misspelt ``helth_check`` must not silently switch the check off.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

from agent.model.appspec_rules import did_you_mean
from agent.model.appspec_types import BerthExtension, Findings, HealthCheck, describe, is_int, is_number, join

BERTH_KEYS = ("health_check", "auto_rollback")
HEALTH_KEYS = ("url", "expected_status", "body_contains", "timeout", "retries", "interval")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_SECONDS = 3600.0
MAX_RETRIES = 1000


def check_berth(found: Findings, doc: dict[Any, Any]) -> BerthExtension:
    value = doc.get("berth")
    if value is None:
        return BerthExtension()
    if not isinstance(value, dict):
        found.error("berth", f"must be a mapping (health_check, auto_rollback), not {describe(value)}")
        return BerthExtension()
    _unknown_keys(found, "berth", value, BERTH_KEYS)
    auto_rollback = value.get("auto_rollback", False)
    if auto_rollback is None:
        auto_rollback = False
    elif not isinstance(auto_rollback, bool):
        found.error("berth.auto_rollback", f"must be true or false, not {describe(auto_rollback)}")
        auto_rollback = False
    return BerthExtension(health_check=_health_check(found, value.get("health_check")), auto_rollback=auto_rollback)


def _unknown_keys(found: Findings, path: str, mapping: dict[Any, Any], known: tuple[str, ...]) -> None:
    for key in mapping:
        if key not in known:
            found.error(
                join(path, key),
                f"unknown berth setting{did_you_mean(key, known)}; {path} accepts {', '.join(known)}",
            )


def _health_check(found: Findings, value: Any) -> HealthCheck | None:
    path = "berth.health_check"
    if value is None:
        return None
    if not isinstance(value, dict):
        found.error(path, f"must be a mapping with at least a url, not {describe(value)}")
        return None
    before = len(found.problems)
    _unknown_keys(found, path, value, HEALTH_KEYS)
    url = _url(found, f"{path}.url", value.get("url"))
    status = value.get("expected_status", 200)
    if not (is_int(status) and 100 <= status <= 599):
        found.error(f"{path}.expected_status", f"must be an HTTP status code like 200, not {describe(status)}")
        status = 200
    body = value.get("body_contains")
    if body is not None and not (isinstance(body, str) and body):
        found.error(f"{path}.body_contains", f"must be text to look for in the response, not {describe(body)}")
        body = None
    retries = value.get("retries", 3)
    if not (is_int(retries) and 1 <= retries <= MAX_RETRIES):
        found.error(
            f"{path}.retries", f"must be the number of tries, from 1 to {MAX_RETRIES}, not {describe(retries)}"
        )
        retries = 3
    check = HealthCheck(
        url=url or "",
        expected_status=status,
        body_contains=body,
        timeout=_seconds(found, f"{path}.timeout", value.get("timeout", 5), minimum_exclusive=True, default=5.0),
        retries=retries,
        interval=_seconds(found, f"{path}.interval", value.get("interval", 2), minimum_exclusive=False, default=2.0),
    )
    return check if len(found.problems) == before else None


def _seconds(found: Findings, path: str, value: Any, *, minimum_exclusive: bool, default: float) -> float:
    if is_number(value) and math.isfinite(value):
        seconds = float(value)
        if (seconds > 0 if minimum_exclusive else seconds >= 0) and seconds <= MAX_SECONDS:
            return seconds
    lowest = "more than 0" if minimum_exclusive else "0 or more"
    found.error(path, f"must be a number of seconds, {lowest} and at most {MAX_SECONDS:g}, not {describe(value)}")
    return default


def _url(found: Findings, path: str, value: Any) -> str | None:
    hint = "write http://127.0.0.1:PORT/health (localhost or [::1] work too): berth checks health on this host only"
    if value is None:
        found.error(path, f"is missing; {hint}")
        return None
    if not isinstance(value, str) or not value.strip():
        found.error(path, f"must be a URL, not {describe(value)}; {hint}")
        return None
    url = value.strip()
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        found.error(path, f"{describe(url)} contains spaces or control characters; {hint}")
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a bad port
    except ValueError:
        found.error(path, f"{describe(url)} is not a valid URL; {hint}")
        return None
    if parts.scheme != "http":
        found.error(path, f"{describe(url)} must start with http:// (berth checks plain HTTP on this host); {hint}")
        return None
    if parts.username is not None or parts.password is not None:
        found.error(path, f"{describe(url)} must not contain a user name or password; {hint}")
        return None
    if parts.hostname not in LOCAL_HOSTS:
        found.error(path, f"{describe(url)} points at another host; {hint}")
        return None
    if port == 0:
        found.error(path, f"{describe(url)} has port 0; {hint}")
        return None
    return url
