"""Bounded handling of script output: bytes to lines with a per-line cap, and the diagnostics' log tail."""

from __future__ import annotations

from collections import deque

# What one line may hold in memory. A longer line is cut (and marked), never dropped: a script that prints a
# 1 GB line without a newline must not take the agent's memory with it.
MAX_LINE_BYTES = 64 * 1024
CUT_MARK = " [berth: line cut, longer than {} bytes]"

# SPEC §3: log_tail holds at most this many bytes of the failed event's output.
LOG_TAIL_BYTES = 2048
_ELLIPSIS = "..."


def decode(raw: bytes) -> str:
    """Script output as text: UTF-8, undecodable bytes replaced (a log must never fail on a stray byte)."""
    return raw.decode("utf-8", "replace")


class LineSplitter:
    """Turns chunks of one stream into lines: ``\\n`` ends a line, one trailing ``\\r`` is dropped.

    A line longer than ``max_bytes`` is emitted as soon as the cap is reached (cut, with a mark); the rest of it,
    up to its newline, is skipped. Memory stays below ``max_bytes`` whatever the script writes.
    """

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self._max = max_bytes
        self._buf = b""
        self._skipping = False  # inside the remainder of a line already emitted cut

    def feed(self, data: bytes) -> list[str]:
        """Lines completed by ``data`` (possibly none)."""
        buf = self._buf + data if self._buf else data
        lines: list[str] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            if self._skipping:
                self._skipping = False
            else:
                lines.append(self._line(buf[start:nl]))
            start = nl + 1
        rest = buf[start:]
        if self._skipping:
            rest = b""
        elif len(rest) > self._max:  # longer than the cap and still no newline: emit it cut now
            lines.append(self._line(rest))
            self._skipping = True
            rest = b""
        self._buf = rest
        return lines

    def close(self) -> list[str]:
        """At end of stream: the last line if it had no newline."""
        rest, self._buf = self._buf, b""
        self._skipping = False
        return [self._line(rest)] if rest else []

    def _line(self, raw: bytes) -> str:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > self._max:
            return decode(raw[: self._max]) + CUT_MARK.format(self._max)
        return decode(raw)


class LogTail:
    """The last ``limit`` bytes of an event's output as whole ``[stream]line`` lines (SPEC §3 ``log_tail``).

    Older lines are dropped whole. When the newest line alone is longer than ``limit`` it is kept cut: its stream
    tag, ``...`` and its last bytes, so the tail is never empty while the event printed something.
    """

    def __init__(self, limit: int = LOG_TAIL_BYTES) -> None:
        self._limit = limit
        self._lines: deque[tuple[str, int]] = deque()
        self._size = 0  # sum of encoded lengths plus one newline each

    def add(self, stream: str, line: str) -> None:
        entry = f"[{stream}]{line}"
        size = len(entry.encode("utf-8")) + 1
        self._lines.append((entry, size))
        self._size += size
        while self._size - 1 > self._limit and len(self._lines) > 1:
            _, dropped = self._lines.popleft()
            self._size -= dropped

    def text(self) -> str:
        """The tail, lines joined by ``\\n`` (no trailing newline); at most ``limit`` UTF-8 bytes."""
        if not self._lines:
            return ""
        if self._size - 1 <= self._limit:
            return "\n".join(entry for entry, _ in self._lines)
        entry = self._lines[-1][0]  # a single line longer than the limit: keep its tag and its end
        tag_end = entry.index("]") + 1
        tag = entry[:tag_end] + _ELLIPSIS
        budget = self._limit - len(tag.encode("utf-8"))
        body = entry[tag_end:].encode("utf-8")
        return tag + body[len(body) - budget :].decode("utf-8", "ignore") if budget > 0 else tag[: self._limit]
