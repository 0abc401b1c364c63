"""Finding, reading and checking the appspec of an unpacked revision folder (SPEC §1).

The model (:mod:`agent.model.appspec`) validates the text; this module adds what needs the folder: every
``files`` source exists, no two sources install the same destination path, every hook script exists inside the
revision (no escape through ``../`` or a symlink). All problems are reported together in one
:class:`AppSpecInvalid`. Scripts that are not executable only warn: the engine sets the bit in its copy.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.errors import UsageError
from agent.model.appspec import (
    MAX_BYTES,
    AppSpec,
    AppSpecAnalysis,
    FileMapping,
    ParsedAppSpec,
    Problem,
    analyze_appspec,
    invalid_error,
    parse_appspec,
)

APPSPEC_FALLBACKS = ("appspec.yaml", "appspec.yml")
DEFAULT_APPSPEC = "appspec.yml"


@dataclass(frozen=True)
class LoadedAppSpec:
    """A valid appspec of a revision folder: the model, the file it came from, and its warnings."""

    spec: AppSpec
    path: Path
    warnings: tuple[Problem, ...]


def appspec_names(filename: str = DEFAULT_APPSPEC) -> list[str]:
    """The names looked for, in order: the given one, then ``appspec.yaml``, then ``appspec.yml``."""
    names = [filename]
    names.extend(n for n in APPSPEC_FALLBACKS if n != filename)
    return names


def find_appspec(root: Path, filename: str = DEFAULT_APPSPEC) -> Path:
    """The appspec file of the revision folder ``root``.

    Looks for ``filename``, then ``appspec.yaml``, then ``appspec.yml`` (the same file serves install and every
    hook). Raises :class:`UsageError` when ``root`` is not a folder or ``filename`` is not a path inside it, and
    :class:`AppSpecInvalid` naming the files looked for when none exists.
    """
    if not filename or filename.startswith("/") or ".." in Path(filename).parts or "\0" in filename:
        raise UsageError(f"appspec file name {filename!r} must be a file name inside the revision, like appspec.yml")
    if not root.is_dir():
        raise UsageError(f"revision folder {root} does not exist or is not a folder")
    real_root = root.resolve()
    for name in appspec_names(filename):
        candidate = root / name
        if candidate.is_file():
            if not _inside(candidate.resolve(), real_root):
                raise invalid_error(
                    [Problem("", f"{name} is a symlink to a file outside the revision; put the appspec itself there")]
                )
            return candidate
    raise invalid_error(
        [
            Problem(
                "",
                f"no appspec found in {root}: looked for {', '.join(appspec_names(filename))}; add an appspec.yml at "
                "the revision root (or name your file with --appspec-filename)",
            )
        ]
    )


def read_appspec_bytes(path: Path) -> bytes:
    """The appspec file's bytes (at most ``MAX_BYTES`` + 1). Raises :class:`UsageError` when it cannot be read."""
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def check_file(path: Path, custom_events: Iterable[str] = ()) -> ParsedAppSpec:
    """Validate a lone appspec file, without the checks that need its revision folder.

    Raises :class:`UsageError` when the file cannot be read and :class:`AppSpecInvalid` when it breaks a rule.
    """
    return parse_appspec(read_appspec_bytes(path), custom_events=custom_events)


def load_appspec(
    root: Path, filename: str = DEFAULT_APPSPEC, *, custom_events: Iterable[str] = ()
) -> LoadedAppSpec:
    """Find, parse and check the appspec of the revision folder ``root`` against that folder.

    Raises :class:`AppSpecInvalid` with every problem of the text *and* of the folder (missing sources or
    scripts, two sources on one destination path, scripts escaping the revision), or :class:`UsageError` when the
    folder or file cannot be read. Non-executable scripts are warnings.
    """
    path = find_appspec(root, filename)
    analysis = analyze_appspec(read_appspec_bytes(path), custom_events=custom_events)
    problems = list(analysis.problems)
    warnings = list(analysis.warnings)
    if analysis.spec is not None:
        folder_problems, folder_warnings = check_against_folder(root, analysis)
        problems.extend(folder_problems)
        warnings.extend(folder_warnings)
    if problems or analysis.spec is None:
        raise invalid_error(problems, warnings)
    return LoadedAppSpec(analysis.spec, path, tuple(warnings))


def check_against_folder(root: Path, analysis: AppSpecAnalysis) -> tuple[list[Problem], list[Problem]]:
    """Problems and warnings of the analysed appspec's sources and scripts against the revision folder."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    real_root = root.resolve()
    present: list[tuple[str, FileMapping]] = []
    for path, mapping in analysis.file_entries:
        why = _source_problem(root, real_root, mapping)
        if why:
            problems.append(Problem(f"{path}.source", why))
        else:
            present.append((path, mapping))
    problems.extend(_collisions(root, present))
    for path, script in analysis.hook_entries:
        where = f"{path}.location"
        candidate = root / script.relative_location
        shown = repr(script.location)
        if not os.path.lexists(candidate):
            problems.append(
                Problem(where, f"{shown} does not exist in the revision; fix the path (it is relative to the "
                        "revision root) or add the script")
            )
        elif not _inside(candidate.resolve(), real_root):
            problems.append(
                Problem(where, f"{shown} is a symlink leading outside the revision; scripts must be files inside it")
            )
        elif not candidate.exists():
            problems.append(Problem(where, f"{shown} is a symlink to a file that does not exist; fix the link"))
        elif not candidate.is_file():
            problems.append(Problem(where, f"{shown} is a folder, not a script; name the script file itself"))
        elif not candidate.stat().st_mode & 0o111:
            warnings.append(
                Problem(where, f"{shown} is not executable; berth makes it executable in its copy of the revision "
                        "(run `chmod +x` on it to silence this warning)")
            )
    return problems, warnings


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _source_problem(root: Path, real_root: Path, mapping: FileMapping) -> str | None:
    candidate = root / mapping.relative_source
    shown = repr(mapping.source)
    if not os.path.lexists(candidate):
        return (
            f"{shown} does not exist in the revision; fix the path (it is relative to the revision root, "
            "/ means the whole revision) or add it"
        )
    if not _inside(candidate.resolve(), real_root):
        return f"{shown} is a symlink leading outside the revision; copy the content into the revision instead"
    if not candidate.exists():
        return f"{shown} is a symlink to something that does not exist; fix the link"
    return None


def _installed_paths(root: Path, mapping: FileMapping) -> Iterator[tuple[str, bool]]:
    """Every (destination path, is a folder) this mapping creates, its destination and ancestors included.

    A folder source installs its contents into the destination; a file source installs ``destination/<name>``.
    Symlinks are installed as links, so they count as files and are not followed.
    """
    destination = mapping.destination
    parent = destination
    while True:
        yield parent, True
        if parent == posixpath.dirname(parent):
            break
        parent = posixpath.dirname(parent)
    source = root / mapping.relative_source
    if source.is_symlink() or not source.is_dir():
        yield posixpath.join(destination, source.name), False
        return
    for dirpath, dirnames, filenames in os.walk(source):
        relative = os.path.relpath(dirpath, source)
        base = destination if relative == "." else posixpath.join(destination, relative)
        for name in dirnames:
            yield posixpath.join(base, name), not os.path.islink(os.path.join(dirpath, name))
        for name in filenames:
            yield posixpath.join(base, name), False


def _collisions(root: Path, entries: list[tuple[str, FileMapping]]) -> list[Problem]:
    """Two ``files`` entries installing one destination path (folders may be shared, anything else not)."""
    owner: dict[str, tuple[int, bool]] = {}
    clashes: dict[tuple[int, int], list[str]] = {}
    for index, (_, mapping) in enumerate(entries):
        for dest, is_dir in _installed_paths(root, mapping):
            first = owner.get(dest)
            if first is None:
                owner[dest] = (index, is_dir)
            elif first[0] != index and not (is_dir and first[1]):
                clashes.setdefault((first[0], index), []).append(dest)
    problems: list[Problem] = []
    for (a, b), paths in clashes.items():
        path_a, map_a = entries[a]
        path_b, map_b = entries[b]
        more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
        problems.append(
            Problem(
                path_b,
                f"{path_a} (source {map_a.source!r}) and {path_b} (source {map_b.source!r}) both install "
                f"{paths[0]}{more}; give them different destinations or remove one",
            )
        )
    return problems
