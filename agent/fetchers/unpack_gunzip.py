"""gzip decompression on a helper thread, for reading a tgz revision in one forward pass (internal to unpack)."""

from __future__ import annotations

import contextlib
import queue
import threading
import zlib
from typing import BinaryIO

from agent.fetchers.unpack_tree import _CHUNK, _Corrupt


class _GunzipReader:
    """A gzip file decompressed by a helper thread (zlib releases the GIL, so it runs beside the writing).

    Offers what tarfile needs from a file object for one forward pass: ``read``, ``tell`` and ``seek`` (back to
    the start of the last read at most).
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._queue: queue.Queue[bytes | Exception | None] = queue.Queue(maxsize=8)
        self._stop = threading.Event()
        self._buf = b""
        self._pos = 0  # read position in _buf
        self._base = 0  # stream offset of _buf[0]
        self._done = False
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="berth-gunzip", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            d = zlib.decompressobj(31)
            data, ended = b"", False
            while not self._stop.is_set():
                if not data and not ended:
                    data = self._raw.read(_CHUNK)
                    ended = not data
                if d.eof:  # another gzip member may follow (as gzip(1) allows); NUL padding is skipped
                    data = data.lstrip(b"\0")
                    if not data:
                        if ended:
                            self._put(None)
                            return
                        continue
                    d = zlib.decompressobj(31)
                out = d.decompress(data, _CHUNK)
                data = d.unused_data if d.eof else d.unconsumed_tail
                if out:
                    self._put(out)
                elif ended and not data and not d.eof:
                    raise EOFError("the gzip data ends early (truncated file)")
        except Exception as exc:  # noqa: BLE001 - handed over to the reading thread, which raises it
            self._put(exc)

    def _put(self, item: bytes | Exception | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, n: int = -1) -> bytes:
        pos = self._pos
        if 0 <= n <= len(self._buf) - pos:
            self._pos = pos + n
            return self._buf[pos : pos + n]
        # Refill: the new buffer starts where this read starts, so seek() can come back to it.
        parts = [self._buf[pos:]]
        got = len(parts[0])
        while (n < 0 or got < n) and not self._done:
            if self._error is not None:
                raise self._error
            item = self._queue.get()
            if item is None:
                self._done = True
            elif isinstance(item, Exception):
                self._error = item
                raise item
            else:
                parts.append(item)
                got += len(item)
        self._base += pos
        self._buf = b"".join(parts)
        self._pos = got if n < 0 else min(n, got)
        return self._buf[: self._pos]

    def tell(self) -> int:
        return self._base + self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence not in (0, 1):
            raise _Corrupt("the archive would have to be read from its end")
        skip = offset - self.tell() if whence == 0 else offset
        if 0 <= self._pos + skip <= len(self._buf):
            self._pos += skip
        elif skip < 0:
            raise _Corrupt("the archive would have to be read backwards")
        else:
            while skip > 0 and (data := self.read(min(skip, _CHUNK))):
                skip -= len(data)
        return self.tell()

    def drain(self) -> None:
        """Read on past the tar's end (bounded), so that a cut or damaged gzip trailer is reported."""
        left = _CHUNK
        while left > 0 and (data := self.read(min(left, 1 << 16))):
            left -= len(data)

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()
