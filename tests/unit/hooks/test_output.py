"""Script output handling: lines with a memory cap, and the 2048-byte log tail of a failed event."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.hooks.output import LineSplitter, LogTail


def test_lines_split_across_chunks() -> None:
    s = LineSplitter()
    assert s.feed(b"hel") == []
    assert s.feed(b"lo\nwor") == ["hello"]
    assert s.feed(b"ld\r\n\nlast") == ["world", ""]
    assert s.close() == ["last"]
    assert s.close() == []


def test_undecodable_bytes_are_replaced() -> None:
    s = LineSplitter()
    assert s.feed(b"caf\xe9 ok\n") == ["caf\ufffd ok"]


def test_line_of_exactly_the_cap_is_whole() -> None:
    s = LineSplitter(max_bytes=8)
    assert s.feed(b"12345678") == []
    assert s.feed(b"\nnext\n") == ["12345678", "next"]


def test_overlong_line_is_cut_not_dropped() -> None:
    s = LineSplitter(max_bytes=8)
    out = s.feed(b"0123456789abcdef")  # no newline yet: emitted cut as soon as the cap is passed
    assert len(out) == 1
    assert out[0].startswith("01234567")
    assert "line cut" in out[0]
    assert s.feed(b"ghij\nafter\n") == ["after"]  # the rest of the long line is skipped, the next line is whole


def test_overlong_complete_line_in_one_chunk() -> None:
    s = LineSplitter(max_bytes=4)
    out = s.feed(b"abcdefgh\nok\n")
    assert out[0].startswith("abcd") and "line cut" in out[0]
    assert out[1] == "ok"


@given(st.lists(st.binary(max_size=50), max_size=30))
def test_memory_stays_bounded_and_newlines_are_respected(chunks: list[bytes]) -> None:
    s = LineSplitter(max_bytes=16)
    lines: list[str] = []
    for chunk in chunks:
        lines += s.feed(chunk)
        assert len(s._buf) <= 16
    lines += s.close()
    data = b"".join(chunks)
    expected_count = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    assert len(lines) == expected_count


def test_tail_keeps_whole_lines_within_2048_bytes() -> None:
    tail = LogTail()
    for i in range(200):
        tail.add("stdout", f"line {i:03d} " + "x" * 40)
    text = tail.text()
    assert len(text.encode()) <= 2048
    lines = text.split("\n")
    assert all(line.startswith("[stdout]line ") and line.endswith("x" * 40) for line in lines)
    assert lines[-1].startswith("[stdout]line 199")
    numbers = [int(line.split()[1]) for line in lines]
    assert numbers == list(range(200 - len(lines), 200))


def test_tail_keeps_stream_tags() -> None:
    tail = LogTail()
    tail.add("stdout", "out")
    tail.add("stderr", "err")
    assert tail.text() == "[stdout]out\n[stderr]err"


def test_single_overlong_line_is_cut_to_fit() -> None:
    tail = LogTail()
    tail.add("stdout", "short")
    tail.add("stderr", "A" * 3000 + "END")
    text = tail.text()
    assert len(text.encode()) <= 2048
    assert text.startswith("[stderr]")
    assert text.endswith("END")


def test_multibyte_text_is_cut_on_a_character_boundary() -> None:
    tail = LogTail(limit=20)
    tail.add("stdout", "é" * 50)
    text = tail.text()
    assert len(text.encode()) <= 20
    assert text.startswith("[stdout]") and text.endswith("é")


def test_empty_tail() -> None:
    assert LogTail().text() == ""
