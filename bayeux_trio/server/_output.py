"""A connection's transport: output buffers flushed once per batch, and input.

Writers append bytes and mark the connection dirty; the hub flushes every dirty
connection after each batch of engine actions. No task wakes up per delivery.

:func:`open_output` picks one of two ways to move the bytes:

* :class:`SocketOutput`, for a plaintext ``trio.SocketStream``: the stdlib
  socket itself (taken over from trio with ``detach``). A flush is one
  non-blocking ``send``; only when the kernel buffer is full does the
  connection get a task, which waits until the socket is writable. The
  connection's readers use :attr:`Output.socket` directly (``wait_readable``
  then ``recv``; HTTP connections wait on the hub's :class:`ReadPoller`),
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
import select
import socket as stdlib_socket
from collections.abc import Callable

import trio

__all__ = ["DrainCount", "Output", "ReadPoller", "SocketOutput", "StreamOutput", "open_output"]

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


class ReadPoller:
    """Waits for plaintext HTTP sockets to become readable, without trio's
    per-wait registration.

    trio registers a socket with its epoll for one event at a time
    (``EPOLLONESHOT``): every ``wait_readable`` costs an ``epoll_ctl`` system
    call and the bookkeeping around it. Under load nearly every kept-alive
    connection waits once per request, so this poller keeps its sockets in an
    epoll of its own, registered once each and edge-triggered. One task waits
    on that epoll through trio (one registration per batch of ready sockets)
    and wakes the connections whose sockets have data; a socket that turns
    readable while its connection is busy is remembered as ready.

    Edge-triggered means each arrival is reported once: a reader must take
    everything the kernel holds before it waits again, or say it did not
    (:meth:`wait` with ``drained`` False), as a read that filled its buffer
    must.

    A waiter may leave a ``serve`` callback: the poller then calls it when the
    socket is ready, instead of waking the task, and the task sleeps on if it
    returns True (it read a whole request and answered it, or left it to be
    answered without the task: a publish waiting for Redis, a held connect).
    Under load most connections are ready at once, so a batch of requests
    costs one task switch instead of one each.
    """

    __slots__ = ("_ended", "_epoll", "_ready", "_registered", "_running", "_waiters")

    def __init__(self) -> None:
        self._epoll: select.epoll | None = None
        #: the task waiting on each socket, and what may serve it in place
        self._waiters: dict[int, tuple[trio.lowlevel.Task, Callable[[], bool] | None]] = {}
        #: sockets with input reported while no one waited on them
        self._ready: set[int] = set()
        #: the socket registered under each descriptor: a descriptor closed
        #: without :meth:`forget` and reused by a new socket must be
        #: registered again (the kernel dropped the old registration)
        self._registered: dict[int, stdlib_socket.socket] = {}
        #: sockets whose waiter :meth:`forget` woke (it raises)
        self._ended: set[int] = set()
        self._running = False

    async def run(self) -> None:
        """Wake the waiters of ready sockets; run in the hub's nursery.

        Without epoll (not Linux) it returns at once, and waits go through trio.
        """
        if not hasattr(select, "epoll"):  # pragma: no cover - Linux has it
            return
        epoll = self._epoll = select.epoll()
        self._running = True
        try:
            while True:
                await trio.lowlevel.wait_readable(epoll.fileno())
                waiters = self._waiters
                for fd, _ in epoll.poll(0):
                    waiter = waiters.get(fd)
                    if waiter is None:
                        self._ready.add(fd)
                        continue
                    task, serve = waiter
                    # in the task's context: what it set (the peer's address
                    # for the admin API) holds for what it serves
                    if serve is not None and task.context.run(serve):
                        continue  # answered; the task waits on
                    # (serve may have ended the wait meanwhile: a cancel)
                    if waiters.get(fd) is waiter:
                        del waiters[fd]
                        trio.lowlevel.reschedule(task)
        finally:
            self._running = False
            self._registered.clear()
            self._ready.clear()
            epoll.close()
            # Waiters find the socket ready, read it, and wait through trio.
            waiters, self._waiters = self._waiters, {}
            for task, _ in waiters.values():
                trio.lowlevel.reschedule(task)

    async def wait(
        self,
        sock: stdlib_socket.socket,
        drained: bool = True,
        serve: Callable[[], bool] | None = None,
    ) -> None:
        """Until ``sock`` may have input (a read may still find none).

        ``drained``: the last read took everything there was. ``serve``: see
        the class; it must not raise, and when it returns False after
        reading, the bytes are the task's to take. Like trio's
        ``wait_readable``, this is a checkpoint, and raises
        ``trio.ClosedResourceError`` if :meth:`forget` ends the wait.
        """
        epoll = self._epoll
        if not self._running or epoll is None:
            await trio.lowlevel.wait_readable(sock)
            return
        fd = sock.fileno()
        if self._registered.get(fd) is not sock:
            try:
                epoll.register(fd, select.EPOLLIN | select.EPOLLET)
            except FileExistsError:  # a stale registration of a duplicate
                epoll.modify(fd, select.EPOLLIN | select.EPOLLET)
            self._registered[fd] = sock
            # (epoll reports a socket readable at registration, but only in
            # the poller's next pass: count it ready now; a report left for
            # the descriptor's last socket merely costs one read)
            self._ready.add(fd)
        if not drained or fd in self._ready:
            # The checkpoint may raise Cancelled (a held connect answered):
            # the report must outlive it, or no edge would come again.
            await trio.lowlevel.checkpoint()
            self._ready.discard(fd)
            return
        if fd in self._waiters:
            raise trio.BusyResourceError("another task is already reading this socket")
        self._waiters[fd] = (trio.lowlevel.current_task(), serve)

        def abort(_: object) -> trio.lowlevel.Abort:
            self._waiters.pop(fd, None)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        if self._ended and fd in self._ended:
            self._ended.discard(fd)
            raise trio.ClosedResourceError("the socket left the poller")

    def wake(self, sock: stdlib_socket.socket) -> bool:
        """End the wait on ``sock`` as if it were ready (False: no task
        waits on it here); the waiter learns why from its own state."""
        waiter = self._waiters.pop(sock.fileno(), None)
        if waiter is None:
            return False
        trio.lowlevel.reschedule(waiter[0])
        return True

    def forget(self, sock: stdlib_socket.socket) -> None:
        """``sock`` is not read through the poller any more (before it is
        closed, or handed to a WebSocket, which waits through trio)."""
        fd = sock.fileno()
        if fd == -1:  # closed already: the kernel dropped its registration
            fds = [fd for fd, known in self._registered.items() if known is sock]
            for fd in fds:
                del self._registered[fd]
                self._ready.discard(fd)
            return
        if self._registered.get(fd) is not sock:
            return
        del self._registered[fd]
        self._ready.discard(fd)
        if self._epoll is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)
        waiter = self._waiters.pop(fd, None)
        if waiter is not None:
            self._ended.add(fd)
            trio.lowlevel.reschedule(waiter[0])
