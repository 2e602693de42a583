"""A loopback TCP proxy that sends each new connection to the next backend.

A stand-in for a round-robin load balancer without stickiness: with HTTP
keep-alive off, every long-polling request of a client lands on another node.
Threads, because the clients driving it (node subprocesses) block the test.
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
    """Listen on a free loopback port; connection i goes to ``ports[i % len]``."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = list(ports)
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
            port = self.ports[next(self._next) % len(self.ports)]
            try:
                upstream = socket.create_connection((_HOST, port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self.counts[port] += 1
                self._sockets += [client, upstream]
            pair = (client, upstream)
            done = threading.Barrier(2, action=functools.partial(self._drop, pair))
            for source, sink in (pair, pair[::-1]):
                threading.Thread(target=self._pump, args=(source, sink, done), daemon=True).start()

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
