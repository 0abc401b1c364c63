"""Human output of a deployment plan (``deploy-local --plan``)."""

from __future__ import annotations

from typing import Any


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def print_plan(plan: dict[str, Any]) -> None:
    revision = plan["revision"].get("path") or plan["revision"]
    print(f"plan for {plan['application']}/{plan['deployment_group']} (revision {revision})")
    install = plan.get("install") or {}
    items = install.get("items", [])
    if install:
        counts: dict[str, int] = install.get("counts") or {}  # files and symlinks per action, removals, mkdirs
        print("files: " + (", ".join(f"{n} {a}" for a, n in counts.items() if n) or "none")
              + f" (file_exists_behavior {plan.get('file_exists_behavior', install.get('file_exists_behavior'))})")
        for item in items:
            if item["action"] == "unchanged":
                continue
            if item["type"] == "directory":  # a folder has no size worth showing: say it is created
                print(f"  {'mkdir':<9} {item['destination']}/")
            else:
                print(f"  {item['action']:<9} {item['destination']} ({_size(item.get('size'))})")
        for rem in install.get("removals", []):
            print(f"  {'remove':<9} {rem['path']} ({_size(rem.get('size'))})")
        for conflict in install.get("conflicts", []):
            print(f"  conflict  {conflict['path']}: {conflict.get('reason', '')} -> {conflict['resolution']}")
        for change in install.get("permission_changes", []):
            print(f"  perms     {change['path']}: {change['what']}")
        for space in install.get("space", []):
            print(f"space on {space['mount']}: needs {_size(space['bytes_needed'])}, "
                  f"{_size(space['bytes_free'])} free")
    print("events:")
    for ev in plan.get("events", []):
        if ev["run_by"] == "berth":
            print(f"  {ev['name']:<20} run by berth")
        elif ev["run_by"] == "skipped":
            print(f"  {ev['name']:<20} skipped (no scripts)")
        else:
            origin = f"{ev['scripts_from']} revision {ev.get('revision') or ''}".strip()
            scripts = ", ".join(s["location"] for s in ev["scripts"])
            print(f"  {ev['name']:<20} {scripts}  [{origin}]")
    check = plan.get("health_check")
    if check:
        body = f" containing {check['body_contains']!r}" if check.get("body_contains") else ""
        print(f"health check after ValidateService: GET {check['url']} expecting {check['expected_status']}{body} "
              f"({check['retries']} tries, {check['interval']:g} s apart)")
    if plan.get("auto_rollback"):
        print("auto_rollback: on (a failed ValidateService or health check puts the last successful revision back)")
    for w in plan.get("warnings", []):
        print(f"warning: {w}")
    if plan["problems"]:
        print("the deployment would FAIL:")
        for p in plan["problems"]:
            print(f"  {p['reason']}: {p['message']}")
    else:
        print("the deployment would proceed")
