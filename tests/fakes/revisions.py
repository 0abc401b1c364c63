"""Build revision folders and bundles for tests: real files, real scripts, real archives."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]

# Every script appends "<event> <version>" to $BERTH_TEST_MARKERS, so a test can tell which revision's ran.
MARKER_SCRIPT = """#!/bin/sh
echo "$LIFECYCLE_EVENT {version}" >> "$BERTH_TEST_MARKERS"
echo "{event} of {version} ran in $(pwd)"
"""


def make_revision(
    root: Path,
    *,
    version: str,
    destination: Path,
    files: Mapping[str, str] | None = None,
    events: Sequence[str] = ("ApplicationStop", "BeforeInstall", "AfterInstall", "ApplicationStart",
                             "ValidateService"),
    scripts: Mapping[str, str] | None = None,
    appspec_extra: Mapping[str, Any] | None = None,
    appspec_name: str = "appspec.yml",
    timeout: int = 60,
) -> Path:
    """A revision folder: content files under app/, one marker script per event, an appspec installing app/."""
    root.mkdir(parents=True, exist_ok=True)
    app = root / "app"
    app.mkdir(exist_ok=True)
    for rel, text in (files or {"index.html": f"<h1>{version}</h1>\n", "VERSION": version + "\n"}).items():
        p = app / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (root / "scripts").mkdir(exist_ok=True)
    hooks: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        body = (scripts or {}).get(event) or MARKER_SCRIPT.format(version=version, event=event)
        script = root / "scripts" / f"{event}.sh"
        script.write_text(body)
        script.chmod(0o755)
        hooks[event] = [{"location": f"scripts/{event}.sh", "timeout": timeout}]
    spec: dict[str, Any] = {
        "version": 0.0,
        "os": "linux",
        "files": [{"source": "app", "destination": str(destination)}],
        "hooks": hooks,
    }
    spec.update(appspec_extra or {})
    (root / appspec_name).parent.mkdir(parents=True, exist_ok=True)
    (root / appspec_name).write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


def markers(env: Mapping[str, str]) -> list[str]:
    """The "<event> <version>" lines hook scripts wrote (see MARKER_SCRIPT), in the order they ran."""
    return Path(env["BERTH_TEST_MARKERS"]).read_text().splitlines()


def bundle(folder: Path, kind: str, out_dir: Path, *, top_folder: str | None = None) -> Path:
    """Pack ``folder`` as tar / tgz / zip (optionally under one top-level folder); 'directory' returns it."""
    if kind == "directory":
        return folder
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = {"tar": ".tar", "tgz": ".tgz", "zip": ".zip"}[kind]
    out = out_dir / (folder.name + (f"-{top_folder}" if top_folder else "") + suffix)
    prefix = f"{top_folder}/" if top_folder else ""
    if kind == "zip":
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.rglob("*")):
                rel = prefix + path.relative_to(folder).as_posix()
                if path.is_dir():
                    continue
                info = zipfile.ZipInfo(rel)
                info.external_attr = (0o100000 | (path.stat().st_mode & 0o777)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3
                zf.writestr(info, path.read_bytes())
    else:
        with tarfile.open(out, "w:gz" if kind == "tgz" else "w") as tf:
            for path in sorted(folder.rglob("*")):
                tf.add(path, arcname=prefix + path.relative_to(folder).as_posix(), recursive=False)
    return out


def berth(args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 120,
          cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the berth CLI from the source tree as a real process."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO)
    full_env.pop("NOTIFY_SOCKET", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=cwd)


def deploy(bundle_path: Path, root: Path, *extra: str, env: Mapping[str, str] | None = None,
           timeout: float = 120) -> tuple[int, dict[str, Any]]:
    """``berth deploy-local --json``; returns (exit code, report)."""
    proc = berth(["deploy-local", "--bundle", str(bundle_path), "--root", str(root), "--json", *extra],
                 env=env, timeout=timeout)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"no JSON report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from None
    return proc.returncode, report


def tree(path: Path) -> dict[str, tuple[int, bytes | str]]:
    """A listing of every path under ``path`` with mode and content (or link target) to compare host states."""
    out: dict[str, tuple[int, bytes | str]] = {}
    if not path.exists():
        return out
    for p in sorted(path.rglob("*")):
        st = p.lstat()
        rel = p.relative_to(path).as_posix()
        if p.is_symlink():
            out[rel] = (st.st_mode, os.readlink(p))
        elif p.is_file():
            out[rel] = (st.st_mode, p.read_bytes())
        else:
            out[rel] = (st.st_mode, "")
    return out


def copy_example(name: str, dest: Path, install_dir: Path) -> Path:
    """Copy an example revision, replacing its install path literal with ``install_dir`` in every text file."""
    src = REPO / "appspec_examples" / name
    shutil.copytree(src, dest, symlinks=True)
    literal = f"/opt/berth-examples/{name}"
    for p in dest.rglob("*"):
        if p.is_file() and not p.is_symlink():
            try:
                text = p.read_text()
            except UnicodeDecodeError:
                continue
            if literal in text:
                mode = p.stat().st_mode
                p.write_text(text.replace(literal, str(install_dir)))
                p.chmod(mode)
    return dest
