"""berth's health gate (appspec ``berth: health_check``): an HTTP check on the host after ValidateService."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

from agent.model.appspec import HealthCheck

_BODY_LIMIT = 64 * 1024

# Health URLs are on this host: never send them through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def probe(check: HealthCheck) -> str | None:
    """One attempt: ``None`` when healthy, else what was wrong."""
    try:
        with _OPENER.open(check.url, timeout=check.timeout) as resp:
            status = resp.status
            body = resp.read(_BODY_LIMIT)
    except urllib.error.HTTPError as exc:
        status = exc.code
        body = exc.read(_BODY_LIMIT) if exc.fp else b""
    except (OSError, ValueError) as exc:
        return f"{check.url}: {getattr(exc, 'reason', exc)}"
    if status != check.expected_status:
        return f"{check.url} answered {status}, expected {check.expected_status}"
    if check.body_contains is not None and check.body_contains.encode() not in body:
        return f"{check.url} answered {status} but its body does not contain {check.body_contains!r}"
    return None


def check_health(check: HealthCheck, *, cancel: threading.Event | None = None) -> str | None:
    """Probe up to ``retries`` times, ``interval`` seconds apart. ``None`` when healthy, else the last problem."""
    waiter = cancel or threading.Event()
    problem: str | None = None
    attempts = max(1, check.retries)
    for attempt in range(attempts):
        problem = probe(check)
        if problem is None:
            return None
        if attempt + 1 < attempts and waiter.wait(check.interval):
            break
    return f"health check failed after {attempts} attempt(s): {problem}"
