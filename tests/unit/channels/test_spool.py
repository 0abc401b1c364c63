"""The spool channel: pickup, claiming, rejection, crash leftovers, reports and the permission check."""

from __future__ import annotations

import grp
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import agent.channels.spool as spool_mod
from agent.channels.spool import (
    SpoolChannel,
    SpoolReportSink,
    check_spool_permissions,
    ensure_spool,
)


def drop(spool: Path, name: str, body: bytes = b'{"schema_version": 1}') -> Path:
    """What a client does: write a dot-named temp file in incoming/, then rename it into place."""
    tmp = spool / "incoming" / f".{name}.tmp"
    tmp.write_bytes(body)
    os.rename(tmp, spool / "incoming" / name)
    return spool / "incoming" / name


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    ensure_spool(tmp_path / "spool", group=None)
    return tmp_path / "spool"


@pytest.fixture
def channel(spool: Path) -> Iterator[SpoolChannel]:
    ch = SpoolChannel(spool, rescan_interval=0.05)
    ch.start()
    yield ch
    ch.close()


def test_oldest_first_and_claimed_into_processing(spool: Path, channel: SpoolChannel) -> None:
    second = drop(spool, "b.json", b"second")
    first = drop(spool, "a.json", b"first")
    os.utime(first, (1, 1))
    os.utime(second, (2, 2))
    one = channel.receive(1)
    two = channel.receive(1)
    assert one is not None and two is not None
    assert (one.command_bytes, one.source, two.command_bytes) == (b"first", "a.json", b"second")
    assert Path(one.receipt) == spool / "processing" / "a.json" and Path(one.receipt).exists()
    assert os.listdir(spool / "incoming") == []
    assert channel.receive(0.1) is None


def test_dotfiles_and_other_names_are_ignored(spool: Path, channel: SpoolChannel) -> None:
    (spool / "incoming" / ".half-written.json").write_text("{")
    (spool / "incoming" / "notes.txt").write_text("hello")
    assert channel.receive(0.2) is None
    assert sorted(os.listdir(spool / "incoming")) == [".half-written.json", "notes.txt"]


def test_a_dropped_file_wakes_receive_before_the_rescan(spool: Path) -> None:
    # Rescans every 30 s and waits at most 20 s: only inotify can deliver this file.
    ch = SpoolChannel(spool, rescan_interval=30)
    ch.start()
    try:
        dropper = threading.Timer(0.3, drop, args=(spool, "late.json"))
        dropper.start()
        delivery = ch.receive(20)
        dropper.join()
    finally:
        ch.close()
    assert delivery is not None and delivery.source == "late.json"


def test_without_inotify_the_rescan_still_finds_commands(spool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_inotify(folder: Path, wake: threading.Event) -> None:
        raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(spool_mod, "_start_observer", no_inotify)
    ch = SpoolChannel(spool, rescan_interval=0.05)
    ch.start()
    try:
        threading.Timer(0.2, drop, args=(spool, "c.json")).start()
        delivery = ch.receive(20)
    finally:
        ch.close()
    assert delivery is not None and delivery.source == "c.json"


def test_two_channels_never_get_the_same_file(spool: Path) -> None:
    names = [f"cmd-{i:02d}.json" for i in range(40)]
    for name in names:
        drop(spool, name)
    channels = [SpoolChannel(spool, rescan_interval=0.05), SpoolChannel(spool, rescan_interval=0.05)]
    got: list[list[str]] = [[], []]

    def drain(i: int) -> None:
        while (d := channels[i].receive(0.2)) is not None:
            got[i].append(d.source)

    for ch in channels:
        ch.start()
    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ch in channels:
        ch.close()
    assert sorted(got[0] + got[1]) == names


def test_reject_keeps_the_file_with_a_reason(spool: Path, channel: SpoolChannel) -> None:
    drop(spool, "bad.json", b"{nope")
    delivery = channel.receive(1)
    assert delivery is not None
    channel.reject(delivery, "MalformedCommand", "command is not valid JSON:\n line 1")
    assert (spool / "rejected" / "bad.json").read_bytes() == b"{nope"
    assert (spool / "rejected" / "bad.reason").read_text() == "MalformedCommand: command is not valid JSON: line 1\n"
    assert os.listdir(spool / "processing") == []


def test_a_second_rejection_of_the_same_name_keeps_both(spool: Path, channel: SpoolChannel) -> None:
    for _ in range(2):
        drop(spool, "same.json", b"x")
        delivery = channel.receive(1)
        assert delivery is not None
        channel.reject(delivery, "InvalidCommand", "no")
    names = os.listdir(spool / "rejected")
    assert len([n for n in names if n.endswith(".json")]) == 2 and len(names) == 4


def test_symlinks_are_rejected_not_followed(spool: Path, channel: SpoolChannel, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("do not read")
    os.symlink(secret, spool / "incoming" / "link.json")
    assert channel.receive(0.3) is None
    assert (spool / "rejected" / "link.reason").read_text().startswith("MalformedCommand: not a regular file")


def test_ack_moves_to_done_and_keeps_the_newest(spool: Path) -> None:
    ch = SpoolChannel(spool, rescan_interval=0.05, done_keep=3)
    ch.start()
    try:
        for i in range(5):
            drop(spool, f"c{i}.json")
            delivery = ch.receive(1)
            assert delivery is not None
            ch.ack(delivery)
            os.utime(spool / "done" / f"c{i}.json", (100 + i, 100 + i))
    finally:
        ch.close()
    assert sorted(os.listdir(spool / "done")) == ["c2.json", "c3.json", "c4.json"]
    assert os.listdir(spool / "processing") == []


def test_crash_leftovers_in_processing_come_first(spool: Path) -> None:
    (spool / "processing" / "interrupted.json").write_bytes(b"left over")
    drop(spool, "new.json", b"new")
    ch = SpoolChannel(spool, rescan_interval=0.05)
    ch.start()
    try:
        first, second = ch.receive(1), ch.receive(1)
    finally:
        ch.close()
    assert first is not None and second is not None
    assert (first.source, first.command_bytes) == ("interrupted.json", b"left over")
    assert second.source == "new.json"


def test_report_sink_replaces_reports_atomically(spool: Path) -> None:
    sink = SpoolReportSink(spool)
    stop = threading.Event()
    seen: list[str] = []

    def reader() -> None:
        path = spool / "reports" / "d-ABC.json"
        while not stop.is_set():
            if path.exists():
                seen.append(json.loads(path.read_bytes())["status"])  # never a half-written file

    t = threading.Thread(target=reader)
    t.start()
    for i in range(50):
        sink.publish({"deployment_id": "d-ABC", "status": f"step-{i}", "events": [{"name": "x" * 2000}]})
    stop.set()
    t.join()
    assert json.loads((spool / "reports" / "d-ABC.json").read_bytes())["status"] == "step-49"
    assert [n for n in os.listdir(spool / "reports") if n.startswith(".")] == []
    assert all(s.startswith("step-") for s in seen)


def test_report_sink_refuses_unsafe_deployment_ids(spool: Path) -> None:
    from agent.errors import UsageError

    with pytest.raises(UsageError):
        SpoolReportSink(spool).publish({"deployment_id": "../../escape"})
    assert not (spool.parent / "escape.json").exists()


# --- permissions ----------------------------------------------------------------------------------------------


def two_groups() -> tuple[grp.struct_group, grp.struct_group]:
    groups = [g for g in grp.getgrall() if g.gr_gid != 0]
    if len(groups) < 2:
        pytest.skip("needs two non-root groups on this host")
    return groups[0], groups[1]


def test_fresh_spool_is_safe_and_private(spool: Path) -> None:
    assert check_spool_permissions(spool, allowed_group=None) == []
    assert (spool / "incoming").stat().st_mode & 0o7777 == 0o750


def test_world_writable_incoming_is_refused(spool: Path) -> None:
    os.chmod(spool / "incoming", 0o757)
    (problem,) = check_spool_permissions(spool, allowed_group=None)
    assert problem.startswith(f"{spool / 'incoming'} is writable by everyone (mode 0757)")


def test_group_writable_needs_the_configured_group(tmp_path: Path) -> None:
    allowed, other = two_groups()
    spool = tmp_path / "spool"
    ensure_spool(spool, group=allowed.gr_name)
    incoming = spool / "incoming"
    assert incoming.stat().st_gid == allowed.gr_gid and incoming.stat().st_mode & 0o7777 == 0o2770
    assert (spool / "reports").stat().st_mode & 0o7777 == 0o2750
    assert check_spool_permissions(spool, allowed_group=allowed.gr_name) == []
    (problem,) = check_spool_permissions(spool, allowed_group=None)
    assert f"writable by group {allowed.gr_name}" in problem and "no spool_group is configured" in problem
    os.chown(incoming, -1, other.gr_gid)
    (problem,) = check_spool_permissions(spool, allowed_group=allowed.gr_name)
    assert f"writable by group {other.gr_name}" in problem


def test_a_folder_owned_by_someone_else_is_refused(spool: Path) -> None:
    os.chown(spool / "reports", 1, -1)
    (problem,) = check_spool_permissions(spool, allowed_group=None)
    assert "reports is owned by" in problem and "not the agent's user" in problem


def test_missing_folders_and_symlinked_folders_are_refused(spool: Path, tmp_path: Path) -> None:
    os.rmdir(spool / "done")
    os.rmdir(spool / "rejected")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", spool / "rejected")
    problems = check_spool_permissions(spool, allowed_group=None)
    assert any(p.endswith("done does not exist") for p in problems)
    assert any("rejected is not a folder" in p for p in problems)


def test_a_world_writable_parent_without_sticky_bit_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "open"
    parent.mkdir()
    ensure_spool(parent / "spool", group=None)
    os.chmod(parent, 0o777)
    problems = check_spool_permissions(parent / "spool", allowed_group=None)
    assert any(p.startswith(f"{parent} is writable by everyone without the sticky bit") for p in problems)
    os.chmod(parent, 0o1777)
    assert check_spool_permissions(parent / "spool", allowed_group=None) == []


def test_an_empty_file_is_left_a_moment_for_its_writer(spool: Path, channel: SpoolChannel) -> None:
    (spool / "incoming" / "being-copied.json").write_bytes(b"")
    assert channel.receive(0.2) is None
    old = time.time() - 60
    os.utime(spool / "incoming" / "being-copied.json", (old, old))
    delivery = channel.receive(1)
    assert delivery is not None and delivery.command_bytes == b""
