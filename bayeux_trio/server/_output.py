"""A connection's transport: output buffers flushed once per batch, and input.

Writers append bytes and mark the connection dirty; the hub flushes every dirty
connection after each batch of engine actions. No task wakes up per delivery.

:func:`open_output` picks one of two ways to move the bytes:

* :class:`SocketOutput`, for a plaintext ``trio.SocketStream``: the stdlib
  socket itself (taken over from trio with ``detach``). A flush is one
  non-blocking ``send``; only when the kernel buffer is full does the
  connection get a task, which waits until the socket is writable. The
  connection's readers use :attr:`Output.socket` directly (``wait_readable``
  then ``recv``; HTTP connections wait on the hub's
  :class:`~._reads.ReadPoller`),
  which is what makes fan-out and HTTP publishing fast.
* :class:`StreamOutput`, for any other ``trio.abc.Stream`` (``trio.SSLStream``
  for TLS, ``trio.testing`` memory streams in tests): reads are
  ``receive_some``; a flush only queues the bytes and starts a writer task,
  which lives while bytes are waiting and sends them with ``send_all``.

Both keep the same contract for the hub and the connections: ``write`` refuses
once the connection is ``broken`` or more than ``max_buffer`` bytes behind,
``fail`` breaks it once and calls ``on_broken``, ``wait_flushed`` waits for
the bytes to leave, and every task that moves bytes after a flush counts in
the hub's :class:`DrainCount` while it runs.
"""

from __future__ import annotations

import contextlib
import logging
import socket as stdlib_socket
from collections.abc import Callable

import trio

__all__ = ["DrainCount", "Output", "SocketOutput", "StreamOutput", "open_output"]

log = logging.getLogger("bayeux.server")

#: bytes asked for per read
READ_SIZE = 65536


class DrainCount:
    """How many outputs have a task moving their bytes (waiting to write)."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = 0


def _nothing() -> None:
    pass


class Output:
    """Buffered writes to one connection, and its reads; see the module docs.

    The base class holds what both kinds share: the buffer, its limit, and
    the broken state.
    """

    __slots__ = (
        "_buffer",
        "_busy",
        "_count",
        "_flushed",
        "_pending",
        "broken",
        "dirty",
        "max_buffer",
        "on_broken",
        "socket",
    )

    #: the plaintext socket, for readers that wait on it themselves; None when
    #: the bytes go through a trio stream (TLS, memory)
    socket: stdlib_socket.socket | None

    def __init__(self, *, max_buffer: int, count: DrainCount) -> None:
        self._count = count
        self._buffer: list[bytes] = []
        #: bytes buffered or being sent, kept apart from the list to make the
        #: limit cheap
        self._pending = 0
        #: a task is moving this output's bytes (a drain, or a writer)
        self._busy = False
        self._flushed: trio.Event | None = None
        #: called once, when the connection breaks (a WebSocket endpoint
        #: takes this over from the HTTP connection that made the output)
        self.on_broken: Callable[[], None] = _nothing
        #: on the hub's list of connections to flush
        self.dirty = False
        self.broken = False
        self.max_buffer = max_buffer

    @property
    def pending(self) -> int:
        """Bytes buffered and not yet taken by the kernel (or the stream)."""
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

    def fail(self) -> None:
        """Mark the connection broken (once) and drop what is buffered."""
        if not self.broken:
            self.broken = True
            self._buffer.clear()
            self._pending = 0
            self.on_broken()

    def flush(self, nursery: trio.Nursery) -> None:
        """Start sending what is buffered (the hub's flush; never blocks)."""
        raise NotImplementedError

    async def wait_flushed(self) -> None:
        """Wait until everything buffered has left (or the connection broke)."""
        raise NotImplementedError

    async def receive(self) -> bytes:
        """The next bytes the peer sent; ``b""`` at the end of its input.

        Raises ``trio.BrokenResourceError`` if the connection broke or
        :meth:`wake` ended the read.
        """
        raise NotImplementedError

    def wake(self) -> None:
        """End a read in progress (the output broke); the caller then closes."""
        raise NotImplementedError

    async def send_eof(self) -> None:
        """Close our sending side, if the transport can (not TLS); else nothing."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the connection (whatever is still buffered is dropped)."""
        raise NotImplementedError

    def _done(self) -> None:
        """A task that moved bytes ends."""
        self._count.active -= 1
        self._busy = False
        if self._flushed is not None:
            self._flushed.set()
            self._flushed = None

    async def _wait_done(self) -> None:
        if self._flushed is None:
            self._flushed = trio.Event()
        await self._flushed.wait()


class SocketOutput(Output):
    """A plaintext connection's non-blocking stdlib socket."""

    __slots__ = ()

    socket: stdlib_socket.socket

    def __init__(self, sock: stdlib_socket.socket, *, max_buffer: int, count: DrainCount) -> None:
        super().__init__(max_buffer=max_buffer, count=count)
        self.socket = sock

    def flush(self, nursery: trio.Nursery) -> None:
        """Send what the kernel takes now; start a drain task for the rest."""
        self.dirty = False
        if self._busy or not self._buffer:
            return
        if self._send_some():
            self._busy = True
            self._count.active += 1
            nursery.start_soon(self._drain)

    async def wait_flushed(self) -> None:
        if self._busy:
            await self._wait_done()
        elif self._buffer and self._send_some():
            self._busy = True
            self._count.active += 1
            await self._drain()

    def _send_some(self) -> bool:
        """One non-blocking send; True if bytes remain buffered."""
        if self.broken:
            return False
        data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
        try:
            sent = self.socket.send(data)
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
        try:
            while self._buffer and not self.broken:
                try:
                    await trio.lowlevel.wait_writable(self.socket)
                except (trio.ClosedResourceError, OSError):
                    self.fail()
                    break
                self._send_some()
        finally:
            self._done()

    async def receive(self) -> bytes:
        # The readers of the fast paths inline this loop (one coroutine frame
        # fewer per read, and per idle WebSocket).
        sock = self.socket
        try:
            while True:
                await trio.lowlevel.wait_readable(sock)
                try:
                    return sock.recv(READ_SIZE)
                except BlockingIOError:
                    continue
        except (trio.ClosedResourceError, OSError) as exc:
            raise trio.BrokenResourceError from exc

    def wake(self) -> None:
        # Waiters on the socket get ClosedResourceError; the connection task
        # closes the socket right after. No cancel scope is held for this
        # (one for a WebSocket's whole life costs about 0.6 KB).
        trio.lowlevel.notify_closing(self.socket)

    async def send_eof(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.shutdown(stdlib_socket.SHUT_WR)
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        sock = self.socket
        if sock.fileno() != -1:
            trio.lowlevel.notify_closing(sock)
            sock.close()
        await trio.lowlevel.cancel_shielded_checkpoint()


class StreamOutput(Output):
    """A connection through a trio stream: TLS, or memory streams in tests."""

    __slots__ = ("_reading", "stream")

    def __init__(self, stream: trio.abc.Stream, *, max_buffer: int, count: DrainCount) -> None:
        super().__init__(max_buffer=max_buffer, count=count)
        self.socket = None
        self.stream = stream
        #: the scope of the read in progress, for :meth:`wake`
        self._reading: trio.CancelScope | None = None

    def flush(self, nursery: trio.Nursery) -> None:
        """Hand what is buffered to a writer task (started if none runs)."""
        self.dirty = False
        if self._busy or not self._buffer or self.broken:
            return
        self._busy = True
        self._count.active += 1
        nursery.start_soon(self._write)

    async def wait_flushed(self) -> None:
        if self._busy:
            await self._wait_done()
        elif self._buffer and not self.broken:
            self._busy = True
            self._count.active += 1
            await self._write()

    async def _write(self) -> None:
        """Send until the buffer is empty; bytes written meanwhile go next."""
        try:
            while self._buffer and not self.broken:
                buffer = self._buffer
                data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
                self._buffer = []
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self.fail()
                    break
                if not self.broken:
                    self._pending -= len(data)
        finally:
            self._done()

    async def receive(self) -> bytes:
        with trio.CancelScope() as scope:
            self._reading = scope
            try:
                data = await self.stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise trio.BrokenResourceError from exc
            finally:
                self._reading = None
            return bytes(data)
        raise trio.BrokenResourceError("the read was ended: the output broke")

    def wake(self) -> None:
        if self._reading is not None:
            self._reading.cancel()

    async def send_eof(self) -> None:
        stream = self.stream
        if isinstance(stream, trio.abc.HalfCloseableStream):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_eof()
        else:
            # TLS has no half-close (a close_notify ends both directions).
            await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


def open_output(stream: trio.abc.Stream, *, max_buffer: int, count: DrainCount) -> Output:
    """The transport for an accepted connection; it owns ``stream`` from now on.

    A plaintext ``trio.SocketStream`` gives up its socket (``detach``), so that
    nothing else holds it: closing ``stream`` afterwards closes nothing.
    """
    if type(stream) is trio.SocketStream:
        wrapper = stream.socket
        family, kind, proto = wrapper.family, wrapper.type, wrapper.proto
        sock = stdlib_socket.socket(family, kind, proto, fileno=wrapper.detach())
        sock.setblocking(False)
        return SocketOutput(sock, max_buffer=max_buffer, count=count)
    return StreamOutput(stream, max_buffer=max_buffer, count=count)
