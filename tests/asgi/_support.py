"""Plumbing for the ASGI tests: ASGI servers in subprocesses, raw HTTP clients.

Each server runs ``tests/asgi/served.py`` on a free loopback port, as its
command line would, from the repository root. Every wait here is bounded:
sockets have timeouts and loops have deadlines.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests._support.ports import free_port
from tests._support.processes import HANDSHAKE, START_TIMEOUT, post_json, wait_serving
from tests.interop._support import REPO_ROOT, ServerProcess


@dataclass(frozen=True)
class Flavour:
    """One ASGI server and the application it serves."""

    name: str
    target: str  # module:attribute
    command: tuple[str, ...]  # the server's module and options, before the port
    static_pages: bool  # the chat pages are served at /

    def argv(self, port: int) -> list[str]:
        if self.command[0] == "uvicorn":
            bind = ["--host", "127.0.0.1", "--port", str(port)]
        else:
            bind = ["--bind", f"127.0.0.1:{port}"]
        return [sys.executable, "-m", *self.command, *bind, self.target]


FLAVOURS = [
    # Starlette mount, Bayeux's lifespan on the parent, under uvicorn (asyncio).
    Flavour(
        "uvicorn",
        "tests.asgi.served:app",
        ("uvicorn", "--timeout-graceful-shutdown", "2", "--log-level", "warning"),
        static_pages=True,
    ),
    # BayeuxASGI as the whole application, ASGI lifespan, hypercorn on asyncio.
    Flavour(
        "hypercorn",
        "tests.asgi.served:bare",
        ("hypercorn", "--graceful-timeout", "2"),
        static_pages=False,
    ),
    # Starlette mount without lifespan (started by the first request), hypercorn on trio.
    Flavour(
        "hypercorn-trio",
        "tests.asgi.served:lazy",
        ("hypercorn", "--worker-class", "trio", "--graceful-timeout", "2"),
        static_pages=True,
    ),
]


def start(flavour: Flavour, log: Path) -> ServerProcess:
    """Run ``flavour`` until it answers a handshake (fails the test otherwise)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    last: object = None
    for _attempt in range(3):
        port = free_port()
        with log.open("ab") as out:
            process = subprocess.Popen(
                flavour.argv(port), cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        server = ServerProcess(flavour.name, process, log, port)
        last = wait_serving(process, port, deadline=time.monotonic() + START_TIMEOUT)
        if last is None:
            return server
        server.stop()
        # The port may have been taken between free_port() and the bind: retry.
    pytest.fail(
        f"{flavour.name} did not answer a handshake (last: {last!r}); log:\n{server.log_tail()}",
        pytrace=False,
    )


def handshake(port: int, connection_type: str = "long-polling") -> str:
    status, replies = post_json(
        port,
        [{**HANDSHAKE, "supportedConnectionTypes": [connection_type]}],
    )
    assert status == 200, replies
    assert replies[0]["successful"] is True, replies
    client_id: str = replies[0]["clientId"]
    return client_id


def bayeux(port: int, messages: list[dict[str, Any]], *, timeout: float = 5.0) -> list[Any]:
    """POST messages as JSON; the replies (asserting a 200)."""
    status, replies = post_json(port, messages, timeout=timeout)
    assert status == 200, (status, replies)
    assert isinstance(replies, list), replies
    return replies


class EventSourceReader:
    """A plain HTTP/1.1 EventSource client on a socket: the head, then events."""

    def __init__(self, port: int, path: str, *, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: text/event-stream\r\nOrigin: http://page.example\r\n\r\n".encode()
        )
        self._buffer = b""
        self.ended = False
        head = self._until(b"\r\n\r\n", time.monotonic() + timeout)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        self._body = b""

    def _recv(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            return False
        self._buffer += data
        return True

    def _until(self, marker: bytes, deadline: float) -> bytes:
        while marker not in self._buffer:
            if not self._recv(deadline):
                raise EOFError(self._buffer)
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _decode(self) -> None:
        """Move whole chunks (or everything, unchunked) into the body."""
        if not self.chunked:
            self._body += self._buffer
            self._buffer = b""
            return
        while b"\r\n" in self._buffer:
            size_line, _, rest = self._buffer.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                self.ended = True
                self._buffer = b""
                return
            if len(rest) < size + 2:
                return
            self._body += rest[:size]
            self._buffer = rest[size + 2 :]

    def next_event(self, timeout: float = 5.0) -> bytes | None:
        """The next event's text (a ``data:`` line, a ``retry:`` or a comment); None at the end."""
        deadline = time.monotonic() + timeout
        while True:
            self._decode()
            if b"\r\n\r\n" in self._body:
                event, _, self._body = self._body.partition(b"\r\n\r\n")
                return event
            if self.ended or not self._recv(deadline):
                self.ended = True
                return None

    def data(self, timeout: float = 5.0) -> list[Any]:
        """The next ``data:`` event's JSON, skipping comments and ``retry:``."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(0.01, deadline - time.monotonic()))
            if event is None:
                raise EOFError("the stream ended")
            if event.startswith(b"data: "):
                decoded: list[Any] = json.loads(event[6:])
                return decoded

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def eventsource(port: int, path: str) -> Iterator[EventSourceReader]:
    reader = EventSourceReader(port, path)
    try:
        yield reader
    finally:
        reader.close()
