"""Atomic versioned JSON state files."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from agent.errors import StateError
from agent.fsutil import read_state, write_state


def test_streamed_state_is_byte_for_byte_the_indented_json(tmp_path: Path) -> None:
    # a manifest-sized document is written in pieces; the file must equal json.dumps of the whole
    body = {"manifest": {f"/opt/app/f{i:05d}.txt": {"sha256": "ab" * 32, "mode": "0644", "note": "é"}
                         for i in range(20_000)}}
    path = tmp_path / "manifest.json"
    write_state(path, "manifest", 1, body)
    expected = json.dumps({"kind": "manifest", "version": 1, **body}, indent=1, sort_keys=True).encode() + b"\n"
    assert path.read_bytes() == expected
    assert read_state(path, "manifest", 1) == {"kind": "manifest", "version": 1, **body}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_unencodable_document_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "group.json"
    write_state(path, "group", 1, {"ok": True})
    with pytest.raises(TypeError):
        write_state(path, "group", 1, {"bad": object()})
    assert read_state(path, "group", 1) == {"kind": "group", "version": 1, "ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["group.json"]


def test_threads_rewriting_one_file_never_clash(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(200):
                write_state(path, "status", 1, {"writer": n, "i": i}, durable=False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert read_state(path, "status", 1)["i"] == 199


def test_newer_version_and_other_key(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"kind": "status", "schema_version": 2}))
    with pytest.raises(StateError, match="upgrade berth"):
        read_state(path, "status", 1, version_key="schema_version")
