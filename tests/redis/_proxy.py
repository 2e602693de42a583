"""A loopback TCP proxy that sends each new connection to the next backend.

A stand-in for a round-robin load balancer without stickiness: with HTTP
keep-alive off, every long-polling request of a client lands on another node.
A backend that refuses the connection (a node that was killed) is skipped for
the next one, as nginx's ``proxy_next_upstream error`` does, so that clients
behind the proxy find the survivors. With ``rotate=False`` it is a failover
proxy instead: every connection goes to the first backend that accepts it
(nginx's ``backup`` servers), which pins clients to one node until it dies.
Threads, because the clients driving it (node subprocesses) block the test.
HTTP and WebSocket alike: bytes are copied as they come, both ways.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import socket
import threading
from collections.abc import Sequence

__all__ = ["RoundRobinProxy"]

_HOST = "127.0.0.1"


class RoundRobinProxy:
    """Listen on a free loopback port; connection i goes to ``ports[i % len]``.

    Or to the next port after it that accepts; with ``rotate=False``, to the
    first port that accepts.
    """

    def __init__(self, ports: Sequence[int], *, rotate: bool = True) -> None:
        self.ports = list(ports)
        self.rotate = rotate
        self._listener = socket.create_server((_HOST, 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._next = itertools.count()
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        #: connections handed to each backend port
        self.counts: dict[int, int] = dict.fromkeys(self.ports, 0)
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> RoundRobinProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            self._sockets.clear()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connected = self._upstream()
            if connected is None:
                client.close()
                continue
            port, upstream = connected
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self.counts[port] += 1
                self._sockets += [client, upstream]
            pair = (client, upstream)
            done = threading.Barrier(2, action=functools.partial(self._drop, pair))
            for source, sink in (pair, pair[::-1]):
                threading.Thread(target=self._pump, args=(source, sink, done), daemon=True).start()

    def _upstream(self) -> tuple[int, socket.socket] | None:
        """A connection to the backend whose turn it is, or to the next that accepts."""
        first = next(self._next) if self.rotate else 0
        for i in range(len(self.ports)):
            port = self.ports[(first + i) % len(self.ports)]
            try:
                return port, socket.create_connection((_HOST, port), timeout=5)
            except OSError:
                continue
        return None

    def _pump(self, source: socket.socket, sink: socket.socket, done: threading.Barrier) -> None:
        """Copy one direction until EOF, then pass the EOF on."""
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with contextlib.suppress(threading.BrokenBarrierError):
            done.wait(timeout=60)

    def _drop(self, pair: tuple[socket.socket, socket.socket]) -> None:
        """Both directions ended: close the two sockets."""
        with self._lock:
            for sock in pair:
                sock.close()
                with contextlib.suppress(ValueError):
                    self._sockets.remove(sock)
