"""Small filesystem helpers shared by every layer: atomic versioned JSON, fsync'd writes."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from agent.errors import StateError


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a mix.

    temp file in the same folder + fsync + rename + fsync of the folder. ``durable=False`` skips both fsyncs for
    files rewritten often whose loss in a power cut costs nothing (an in-progress report: the final one is durable).
    """
    _atomic_write(path, (data,), mode, durable)


def _atomic_write(path: Path, parts: Iterable[bytes], mode: int, durable: bool) -> None:
    """:func:`atomic_write_bytes` of the concatenation of ``parts``, consumed one at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # pid and thread in the temp name: two threads of the agent may rewrite the same file (its status) at once
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            for part in parts:
                fh.write(part)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# Chunks of encoded JSON joined per write: large enough that writes stay few, small enough that a manifest of
# 20,000 entries is never held as one string (its indented text plus the encoder's chunk list cost ~30 MiB).
_CHUNKS_PER_WRITE = 4096


def _json_parts(doc: dict[str, Any]) -> Iterator[bytes]:
    chunks = json.JSONEncoder(indent=1, sort_keys=True).iterencode(doc)
    while batch := list(itertools.islice(chunks, _CHUNKS_PER_WRITE)):
        yield "".join(batch).encode()
    yield b"\n"


def write_state(path: Path, kind: str, version: int, body: dict[str, Any], *, durable: bool = True) -> None:
    """Atomically write a versioned state document ``{"kind", "version", ...body}``.

    The JSON is encoded as it is written (never held whole in memory); the bytes are those of
    ``json.dumps(doc, indent=1, sort_keys=True)`` plus a newline.
    """
    doc = {"kind": kind, "version": version, **body}
    _atomic_write(path, _json_parts(doc), 0o644, durable)


def read_state(
    path: Path, kind: str, max_version: int, *, version_key: str = "version"
) -> dict[str, Any] | None:
    """Read a document written by :func:`write_state`; ``None`` when the file does not exist.

    Raises :class:`StateError` for a corrupt file, another kind, or a version newer than this agent knows.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise StateError(f"{path} is not valid JSON ({exc}); move it aside to start this state afresh") from exc
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise StateError(f"{path} is not a berth {kind} file")
    version = doc.get(version_key)
    if not isinstance(version, int) or version > max_version:
        raise StateError(
            f"{path} has {kind} version {version!r}; this agent understands up to {max_version} (upgrade berth)"
        )
    return doc
