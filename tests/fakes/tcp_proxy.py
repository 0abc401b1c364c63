"""A TCP proxy on 127.0.0.1 that a test can pause, to make an endpoint stop answering and come back.

``pause("drop")``: every open connection is cut and new ones are closed as soon as they are accepted (what a
client sees when a server goes away). ``pause("hang")``: connections stay open but no byte moves in either direction
until :meth:`TcpProxy.resume` (a black hole: clients run into their timeouts). The listening port never changes, so
clients keep their endpoint URL.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._mode: str | None = None  # None (forwarding), "drop" or "hang"
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._stopped = False
        self.connections = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def paused(self) -> bool:
        return self._mode is not None

    def pause(self, mode: str = "drop") -> None:
        """Stop answering: ``drop`` cuts connections at once, ``hang`` holds every byte until :meth:`resume`."""
        if mode not in ("drop", "hang"):
            raise ValueError(mode)
        with self._lock:
            self._mode = mode
            if mode == "hang":
                self._flowing.clear()
            else:
                self._close_all()

    def resume(self) -> None:
        with self._lock:
            self._mode = None
            self._flowing.set()

    def stop(self) -> None:
        self._stopped = True
        self._flowing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            self._close_all()

    def _close_all(self) -> None:
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        self._sockets.clear()

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self._mode
            if mode == "drop":
                client.close()
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self._flowing.wait()  # a connection made while hanging is served only after resume()
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            if self._mode == "drop" or self._stopped:
                client.close()
                upstream.close()
                return
            self._sockets.update((client, upstream))
            self.connections += 1
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        self._pump(upstream, client)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                for sock in (src, dst):
                    if sock in self._sockets:
                        self._sockets.discard(sock)
                        with contextlib.suppress(OSError):
                            sock.close()


@contextlib.contextmanager
def tcp_proxy(url: str) -> Iterator[TcpProxy]:
    """A proxy in front of ``http://host:port``; stopped on exit."""
    hostport = url.split("://", 1)[1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    proxy = TcpProxy(host, int(port))
    try:
        yield proxy
    finally:
        proxy.stop()
