"""The hub's read poller: plaintext HTTP connections wait for input on an
epoll of the hub's own, registered once per socket and edge-triggered,
instead of trio's one-shot registration per wait (see :class:`ReadPoller`).
"""

from __future__ import annotations

import contextlib
import select
import socket as stdlib_socket
from collections.abc import Callable

import trio

__all__ = ["ReadPoller"]


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

    def wake(self, sock: stdlib_socket.socket) -> None:
        """End the wait on ``sock`` as if it were ready, if a task waits on it
        here; the waiter learns why from its own state."""
        waiter = self._waiters.pop(sock.fileno(), None)
        if waiter is not None:
            trio.lowlevel.reschedule(waiter[0])

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
