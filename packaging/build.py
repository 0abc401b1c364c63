#!/usr/bin/env python3
"""Build berth's machine-image packages: dist/berth-agent_<version>_all.deb and dist/berth-agent-<version>.noarch.rpm.

Only Debian's own tools (dpkg-deb, rpmbuild from the ``rpm`` package) and pip talking to PyPI are used. Both
packages are made from one staged tree::

    /opt/berth/lib/              berth + every Python dependency, pure Python, `pip install --target` for Python 3.10
    /opt/berth/bin/python        picks the distribution's interpreter (>= 3.10) and runs it isolated (-I -S)
    /opt/berth/bin/berth         entry script: puts /opt/berth/lib first on sys.path and runs the CLI
    /opt/berth/libexec/berth-maint   shared maintainer-script logic (enable, compile, self-check, safe restart)
    /opt/berth/runtime.txt       what is bundled, with versions
    /usr/bin/berth               launcher
    /usr/lib/systemd/system/berth-agent.service
    /etc/berth/agent.yml         conffile / %config(noreplace)
    /etc/logrotate.d/berth-agent conffile / %config(noreplace)
    /usr/share/doc/berth-agent/  copyright, install.md, configuration.md, appspec.md

Why not a virtualenv: a venv hard-codes lib/pythonX.Y and the interpreter's path, so it breaks the day the
distribution moves python3 to a new minor version. A --target folder of pure-Python code runs on any Python 3.10+,
and no compiled extension is allowed in (the build fails naming it); PyYAML's optional libyaml accelerator is
removed so its pure-Python loader is used. See docs/install.md.

The dependency folder is cached (``--cache``, default build/package-cache/runtime/<key>) keyed by the requirements
and this recipe, and pip's own cache lives next to it, so a rebuild without dependency changes takes seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# Interpreter the dependency set is resolved for: the oldest berth supports, so every chosen release works on it,
# and pure-Python releases that work on 3.10 keep working on newer minors (the tests prove 3.11 and 3.13).
TARGET_PYTHON = "3.10"
# Bump when the way the runtime folder is made changes: it is part of the cache key.
RUNTIME_RECIPE = "3"
# The only compiled files a dependency may bring; they are deleted (each has a pure-Python fallback).
DROPPABLE_EXTENSIONS = (re.compile(r"^yaml/_yaml\..*\.so$"),)
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib", ".dll", ".a", ".o")
EXECUTABLES = {"opt/berth/bin/berth", "opt/berth/bin/python", "opt/berth/libexec/berth-maint", "usr/bin/berth"}
DEB_CONFFILES = ("/etc/berth/agent.yml", "/etc/logrotate.d/berth-agent")


class BuildError(Exception):
    """A packaging step failed; the message says what to fix."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="where the packages go (default dist/)")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "packaging", help="scratch folder")
    parser.add_argument("--cache", type=Path, default=REPO / "build" / "package-cache",
                        help="dependency and pip download cache")
    parser.add_argument("--config", type=Path, default=HERE / "agent.yml",
                        help="example configuration installed as /etc/berth/agent.yml")
    parser.add_argument("--formats", default="deb,rpm", help="comma-separated: deb, rpm (default both)")
    parser.add_argument("--version", help="package version (default: __version__ of agent/__init__.py); for "
                        "rebuilds of one release and for upgrade tests")
    parser.add_argument("--compression", choices=("xz", "gzip"), default="gzip",
                        help="payload compression (default gzip: the bulk, botocore's data, is gzip already, "
                        "so xz saves under 5%% and takes ten times longer)")
    args = parser.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    try:
        built = build(out=args.out, work=args.work, cache=args.cache, config=args.config, formats=formats,
                      compression=args.compression, version=args.version)
    except BuildError as exc:
        print(f"packaging: error: {exc}", file=sys.stderr)
        return 1
    for path in built:
        print(path)
    return 0


def build(*, out: Path, work: Path, cache: Path, config: Path, formats: list[str], compression: str,
          version: str | None = None) -> list[Path]:
    """Stage the tree once and build each requested format from it; return the package paths."""
    unknown = set(formats) - {"deb", "rpm"}
    if unknown or not formats:
        raise BuildError(f"--formats takes deb and/or rpm, not {','.join(formats) or 'nothing'}")
    if not config.is_file():
        raise BuildError(f"{config} does not exist: it is installed as /etc/berth/agent.yml (pass --config FILE)")
    version = version or read_version()
    if not re.fullmatch(r"[0-9][A-Za-z0-9.+~]*", version):
        raise BuildError(f"version {version!r} must start with a digit and hold only letters, digits and .+~")
    work = work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out.mkdir(parents=True, exist_ok=True)
    stage = work / "stage"
    requirements = read_requirements()
    stage_tree(stage, version, requirements, runtime_dir(cache.resolve(), requirements), config)
    built = []
    if "deb" in formats:
        built.append(build_deb(stage, work, out.resolve(), version, compression))
    if "rpm" in formats:
        built.append(build_rpm(stage, work, out.resolve(), version, compression))
    return built


# --- versions and requirements --------------------------------------------------------------------------------


def read_version() -> str:
    text = (REPO / "agent" / "__init__.py").read_text()
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.MULTILINE)
    if not match:
        raise BuildError("agent/__init__.py has no __version__ = '...' line")
    return match.group(1)


def package_version(version: str) -> str:
    """PEP 440 -> deb/rpm: pre-releases sort before the release with '~' (0.2.0rc1 -> 0.2.0~rc1)."""
    return re.sub(r"(?<=\d)[.-]?(a|b|rc|dev)(?=\d)", r"~\1", version).replace("-", "_")


def read_requirements() -> list[str]:
    """``[project].dependencies`` of pyproject.toml (tomllib on 3.11+, else the copy vendored in pip)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        from pip._vendor import tomli as tomllib
    with open(REPO / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    return [str(req) for req in project.get("dependencies", [])]


# --- the private runtime --------------------------------------------------------------------------------------


def runtime_dir(cache: Path, requirements: list[str]) -> Path:
    """A folder with every dependency installed for Python 3.10, pure Python only; built on a cache miss."""
    key = hashlib.sha256(
        "\n".join([RUNTIME_RECIPE, TARGET_PYTHON, *sorted(requirements)]).encode()
    ).hexdigest()[:16]
    target = cache / "runtime" / key
    if (target / ".complete").is_file():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=target.parent))
    req_file = partial.with_suffix(".txt")
    req_file.write_text("\n".join(requirements) + "\n")
    env = dict(os.environ)
    env.setdefault("PIP_CACHE_DIR", str(cache / "pip"))
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
        "--target", str(partial), "--only-binary=:all:", "--python-version", TARGET_PYTHON, "--no-compile",
        "-r", str(req_file),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    req_file.unlink()
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise BuildError(f"pip could not install the dependencies:\n{proc.stdout}{proc.stderr}")
    sanitize_runtime(partial)
    (partial / ".complete").write_text("\n".join(requirements) + "\n")
    partial.rename(target)
    return target


def sanitize_runtime(lib: Path) -> None:
    """Make ``lib`` safe for every Python >= 3.10: no compiled code, no .pth, no scripts, no bytecode."""
    shutil.rmtree(lib / "bin", ignore_errors=True)  # console scripts with the build machine's interpreter path
    problems = []
    for path in sorted(lib.rglob("*")):
        rel = path.relative_to(lib).as_posix()
        if path.is_dir() and path.name == "__pycache__":
            shutil.rmtree(path)
        elif path.is_file() and any(p.match(rel) for p in DROPPABLE_EXTENSIONS):
            path.unlink()
        elif path.is_file() and (path.suffix in COMPILED_SUFFIXES or ".so." in path.name):
            problems.append(f"{rel} is compiled code (tied to one Python version and CPU)")
        elif path.suffix == ".pth":
            problems.append(f"{rel} is a .pth file (never read: berth runs with -S)")
    if problems:
        raise BuildError(
            "a dependency is not pure Python; pin a pure release, give it a fallback or allow it in "
            "DROPPABLE_EXTENSIONS:\n  " + "\n  ".join(problems)
        )


def bundled_versions(lib: Path) -> list[str]:
    out = []
    for info in sorted(lib.glob("*.dist-info")):
        meta = (info / "METADATA").read_text(errors="replace")
        name = re.search(r"^Name: (.+)$", meta, re.MULTILINE)
        ver = re.search(r"^Version: (.+)$", meta, re.MULTILINE)
        if name and ver:
            out.append(f"{name.group(1).strip()} {ver.group(1).strip()}")
    return out


# --- the staged tree ------------------------------------------------------------------------------------------


def stage_tree(stage: Path, version: str, requirements: list[str], runtime: Path, config: Path) -> None:
    lib = stage / "opt/berth/lib"
    lib.parent.mkdir(parents=True)
    hardlink_tree(runtime, lib)
    (lib / ".complete").unlink()
    shutil.copytree(REPO / "agent", lib / "agent", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    write_dist_info(lib, version, requirements)
    files = HERE / "files"
    copies = {
        files / "berth": "usr/bin/berth",
        files / "python": "opt/berth/bin/python",
        files / "berth-entry.py": "opt/berth/bin/berth",
        files / "berth-maint": "opt/berth/libexec/berth-maint",
        files / "logrotate": "etc/logrotate.d/berth-agent",
        files / "copyright": "usr/share/doc/berth-agent/copyright",
        REPO / "docs" / "install.md": "usr/share/doc/berth-agent/install.md",
        REPO / "systemd" / "berth-agent.service": "usr/lib/systemd/system/berth-agent.service",
        config: "etc/berth/agent.yml",
    }
    for optional in ("configuration.md", "appspec.md"):  # referenced from agent.yml when present
        if (REPO / "docs" / optional).is_file():
            copies[REPO / "docs" / optional] = f"usr/share/doc/berth-agent/{optional}"
    for src, rel in copies.items():
        if not src.is_file():
            raise BuildError(f"{src} is missing")
        dest = stage / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    (stage / "opt/berth/runtime.txt").write_text(
        f"# Python packages bundled in /opt/berth/lib (resolved for Python {TARGET_PYTHON}+, pure Python)\n"
        + "\n".join(bundled_versions(lib)) + "\n"
    )
    normalize_modes(stage)


def hardlink_tree(src: Path, dest: Path) -> None:
    """``cp -al``: thousands of small files are linked, not copied (the trees only differ in what is added)."""
    _run(["cp", "-al", str(src), str(dest)], "cp -al")


def write_dist_info(lib: Path, version: str, requirements: list[str]) -> None:
    """berth's own metadata, so importlib.metadata knows the bundled berth like any installed distribution."""
    info = lib / f"berth_agent-{version}.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.1", "Name: berth-agent", f"Version: {version}", "Requires-Python: >=3.10"]
    lines += [f"Requires-Dist: {req}" for req in requirements]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    (info / "INSTALLER").write_text("berth packaging/build.py\n")
    (info / "top_level.txt").write_text("agent\n")


def normalize_modes(stage: Path) -> None:
    """0755 folders and executables, 0644 everything else, whatever the build machine's umask was."""
    for dirpath, _dirnames, filenames in os.walk(stage):
        os.chmod(dirpath, 0o755)  # noqa: S103 - package folders are world-readable
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink():
                continue
            rel = path.relative_to(stage).as_posix()
            os.chmod(path, 0o755 if rel in EXECUTABLES else 0o644)


def tree_size_kib(root: Path) -> int:
    total = 0
    for dirpath, _dirs, filenames in os.walk(root):
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            total += (st.st_size + 1023) // 1024 if stat.S_ISREG(st.st_mode) else 1
    return total


# --- .deb -----------------------------------------------------------------------------------------------------


def build_deb(stage: Path, work: Path, out: Path, version: str, compression: str) -> Path:
    root = work / "deb"
    hardlink_tree(stage, root)
    control_dir = root / "DEBIAN"
    control_dir.mkdir()
    deb_version = package_version(version)
    control = (HERE / "deb" / "control.in").read_text()
    control = control.replace("@VERSION@", deb_version).replace("@INSTALLED_SIZE@", str(tree_size_kib(stage)))
    (control_dir / "control").write_text(control)
    (control_dir / "conffiles").write_text("\n".join(DEB_CONFFILES) + "\n")
    sums = []
    for path in sorted(p for p in stage.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(stage).as_posix()
        if "/" + rel not in DEB_CONFFILES:
            sums.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {rel}")  # noqa: S324 - dpkg's format
    (control_dir / "md5sums").write_text("\n".join(sums) + "\n")
    for script in ("postinst", "prerm", "postrm"):
        shutil.copyfile(HERE / "deb" / script, control_dir / script)
        os.chmod(control_dir / script, 0o755)  # noqa: S103 - dpkg requires executable scripts
    for name in ("control", "conffiles", "md5sums"):
        os.chmod(control_dir / name, 0o644)
    os.chmod(control_dir, 0o755)  # noqa: S103
    target = out / f"berth-agent_{deb_version}_all.deb"
    _run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", "-z6", "--build", str(root), str(target)],
         "dpkg-deb")
    return target


# --- .rpm -----------------------------------------------------------------------------------------------------


def build_rpm(stage: Path, work: Path, out: Path, version: str, compression: str) -> Path:
    if shutil.which("rpmbuild") is None:
        raise BuildError("rpmbuild not found: install Debian's 'rpm' package (apt-get install rpm)")
    top = work / "rpm"
    for sub in ("BUILD", "BUILDROOT", "RPMS", "SOURCES", "SPECS", "SRPMS", "tmp"):
        (top / sub).mkdir(parents=True)
    rpm_version = package_version(version)
    spec = (HERE / "rpm" / "berth-agent.spec.in").read_text()
    spec = spec.replace("@VERSION@", rpm_version).replace("@STAGE@", str(stage))
    spec_file = top / "SPECS" / "berth-agent.spec"
    spec_file.write_text(spec)
    payload = "w6T.xzdio" if compression == "xz" else "w6.gzdio"  # T: as many xz threads as CPUs
    _run([
        "rpmbuild", "-bb", "--nodeps", "--quiet",
        "--define", f"_topdir {top}",
        "--define", f"_tmppath {top / 'tmp'}",
        "--define", f"_rpmdir {out}",
        "--define", "_build_name_fmt %%{NAME}-%%{VERSION}.%%{ARCH}.rpm",
        "--define", f"_binary_payload {payload}",
        str(spec_file),
    ], "rpmbuild")
    return out / f"berth-agent-{rpm_version}.noarch.rpm"


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")


if __name__ == "__main__":
    sys.exit(main())
