"""The install manifest survives JSON and rejects documents it cannot trust."""

from __future__ import annotations

import json

import pytest

from agent.errors import StateError
from agent.install.manifest import Manifest, ManifestEntry


def _manifest() -> Manifest:
    return Manifest(
        {
            "/opt/app/a": ManifestEntry("/opt/app/a", "file", 0o640, 0, 0, "ab" * 32, None, 3, 123),
            "/opt/app/l": ManifestEntry("/opt/app/l", "symlink", 0o777, 0, 0, None, "a", 1, 5),
            "/opt/app": ManifestEntry("/opt/app", "directory", 0o755, 0, 0, None, None, 0, 9),
        },
        ("/opt/app",),
        ("/opt/app/kept.conf",),
    )


def test_round_trip_through_json() -> None:
    original = _manifest()
    doc = json.loads(json.dumps(original.to_dict()))
    assert Manifest.from_dict(doc) == original
    assert doc["entries"][0]["mode"] == "0755"  # octal text, as chmod writes it


def test_extra_keys_of_the_state_layer_are_ignored() -> None:
    doc = {"kind": "manifest", "version": 1, "deployment_id": "d-1", **_manifest().to_dict()}
    assert Manifest.from_dict(doc) == _manifest()


def test_numeric_mode_is_accepted() -> None:
    entry = ManifestEntry.from_dict({"path": "/x", "type": "file", "mode": 0o644, "uid": 0, "gid": 0})
    assert entry.mode == 0o644 and entry.sha256 is None


@pytest.mark.parametrize(
    "raw",
    [
        {"path": "/x", "type": "file", "mode": "0644", "uid": 0},  # gid missing
        {"path": "/x", "type": "socket", "mode": "0644", "uid": 0, "gid": 0},
        {"path": "x", "type": "file", "mode": "0644", "uid": 0, "gid": 0},
        {"path": "/x", "type": "file", "mode": "rw-r--r--", "uid": 0, "gid": 0},
    ],
)
def test_malformed_entry_is_a_state_error(raw: dict[str, object]) -> None:
    with pytest.raises(StateError):
        Manifest.from_dict({"entries": [raw]})


def test_entries_must_be_a_list() -> None:
    with pytest.raises(StateError):
        Manifest.from_dict({"entries": {"/x": {}}})


def test_empty_and_merged() -> None:
    empty = Manifest.empty()
    assert empty.to_dict() == {"entries": [], "created_dirs": [], "retained": []}
    merged = empty.merged(_manifest())
    assert merged.owns("/opt/app/a") and merged.owns("/opt/app")
    assert not merged.owns("/opt/app/kept.conf")
    assert merged.retained == ("/opt/app/kept.conf",)
