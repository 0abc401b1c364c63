"""S3 report keys and the durable outbox (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.reporting.s3 import Outbox, S3Location


def test_locations_and_keys() -> None:
    loc = S3Location.parse("s3://bucket/some/prefix/")
    assert (loc.bucket, loc.prefix) == ("bucket", "some/prefix/")
    assert loc.report_key("d-1", "i-9") == "some/prefix/deployments/d-1/instances/i-9.json"
    assert loc.heartbeat_key("i-9") == "some/prefix/agents/i-9.json"
    assert S3Location("b", "").report_key("d-1", "i") == "deployments/d-1/instances/i.json"
    assert S3Location("b", "/x").prefix == "x/"


@pytest.mark.parametrize("bad", ["bucket/key", "s3://", "https://bucket/x"])
def test_bad_locations_say_what_to_write(bad: str) -> None:
    with pytest.raises(ValueError, match="s3://BUCKET/PREFIX"):
        S3Location.parse(bad)


def test_outbox_newest_wins_and_a_replaced_file_is_not_removed(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    box.put("d-1", b"first")
    box.put("d-2", b"other")
    box.put("d-1", b"second")
    assert sorted(box.names()) == ["d-1", "d-2"]
    entry = box.read("d-1")
    assert entry is not None and entry[0] == b"second"
    box.put("d-1", b"third")  # a newer report arrives while the older one is being uploaded
    assert box.remove_if_unchanged("d-1", entry[1]) is False
    newer = box.read("d-1")
    assert newer is not None and newer[0] == b"third"
    assert box.remove_if_unchanged("d-1", newer[1]) is True
    assert box.names() == ["d-2"]
    assert box.read("d-1") is None
