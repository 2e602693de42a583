"""Per-connection output buffers, flushed once per batch.

Writers append bytes and mark the connection dirty; the hub flushes every dirty
connection after each batch of engine actions with one non-blocking ``send``.
Only when the kernel buffer is full does a connection get a task that waits
until the socket is writable. No task wakes up per delivery.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import trio

__all__ = ["DrainCount", "Output"]

log = logging.getLogger("bayeux.server")


class DrainCount:
    """How many outputs are waiting for their socket to become writable."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = 0


class Output:
    """Buffered writes to one non-blocking socket."""

    __slots__ = (
        "_buffer",
        "_count",
        "_draining",
        "_flushed",
        "_pending",
        "_sock",
        "broken",
        "dirty",
        "max_buffer",
        "on_broken",
    )

    def __init__(
        self,
        sock: socket.socket,
        *,
        max_buffer: int,
        on_broken: Callable[[], None],
        count: DrainCount,
    ) -> None:
        self._sock = sock
        self._count = count
        self._buffer: list[bytes] = []
        #: bytes in the buffer, kept apart from the list to make the limit cheap
        self._pending = 0
        self._draining = False
        self._flushed: trio.Event | None = None
        #: called once, when the connection breaks (a WebSocket endpoint
        #: takes this over from the HTTP connection that made the output)
        self.on_broken = on_broken
        #: on the hub's list of connections to flush
        self.dirty = False
        self.broken = False
        self.max_buffer = max_buffer

    @property
    def pending(self) -> int:
        """Bytes buffered and not yet taken by the kernel."""
        return self._pending

    def write(self, data: bytes) -> bool:
        """Buffer ``data``; False if the connection is broken or too far behind.

        A reader more than ``max_buffer`` bytes behind is cut off: its messages
        stay queued in the engine (up to its queue cap) instead of in memory.
        """
        if self.broken:
            return False
        self._buffer.append(data)
        self._pending += len(data)
        if self._pending > self.max_buffer:
            log.info("cutting off a connection %d bytes behind", self._pending)
            self.fail()
            return False
        return True

    def flush(self, nursery: trio.Nursery) -> None:
        """Send what the kernel takes now; start a drain task for the rest."""
        self.dirty = False
        if self._draining or not self._buffer:
            return
        if self._send_some():
            self._draining = True
            nursery.start_soon(self._drain)

    async def wait_flushed(self) -> None:
        """Wait until everything buffered has been taken by the kernel."""
        if self._draining:
            if self._flushed is None:
                self._flushed = trio.Event()
            await self._flushed.wait()
        elif self._buffer and self._send_some():
            self._draining = True
            await self._drain()

    def fail(self) -> None:
        """Mark the connection broken (once) and drop what is buffered."""
        if not self.broken:
            self.broken = True
            self._buffer.clear()
            self._pending = 0
            self.on_broken()

    def _send_some(self) -> bool:
        """One non-blocking send; True if bytes remain buffered."""
        if self.broken:
            return False
        data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.fail()
            return False
        if sent == len(data):
            self._buffer.clear()
            self._pending = 0
            return False
        rest = data[sent:]
        self._buffer = [rest]
        self._pending = len(rest)
        return True

    async def _drain(self) -> None:
        self._count.active += 1
        try:
            while self._buffer and not self.broken:
                try:
                    await trio.lowlevel.wait_writable(self._sock)
                except (trio.ClosedResourceError, OSError):
                    self.fail()
                    break
                self._send_some()
        finally:
            self._count.active -= 1
            self._draining = False
            if self._flushed is not None:
                self._flushed.set()
                self._flushed = None
