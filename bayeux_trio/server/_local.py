"""An in-process client, like Faye's ``server.getClient()``.

It is a real Bayeux client of the server's engine: its messages go through the
server's extensions (with ``request=None``) and it has a session and
subscriptions like any other client, but nothing crosses a socket.

The protocol is :class:`bayeux_core.ClientSession`'s, as for the network
client (``bayeux_trio.client._client``): it decides what to send, when to connect
again and when to handshake again. This module only moves its messages:

* one task (in the hub's nursery) hands what the session has to send to
  :meth:`BayeuxServer.receive`, and calls the session's timer;
* ``/meta/connect`` goes on the client's stream connection, so deliveries
  arrive as soon as they are routed;
* every other batch goes on a request connection of its own, which the engine
  always answers with one body: a message of the batch missing from that body
  was dropped by a server extension, and the session is told it was refused
  (``Dropped by a server extension``), as it is when a client extension drops
  a message.

Replies and deliveries come from the hub, inside its pass: they are fed to the
session there and then, and callbacks run there (so they must not block).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import orjson
import trio

from bayeux_core import (
    ClientEvent,
    ClientSession,
    ClientState,
    HandshakeFailed,
    LocalProtocolError,
    Message,
    MessageReceived,
    PublishError,
    PublishFailed,
    PublishSucceeded,
    SessionEnded,
    SubscribeFailed,
    SubscribeSucceeded,
    failure_reply,
    is_connect,
    matches,
    unanswered,
)

from ._context import ServerContext
from ._hub import Kind
from ._output import Output

__all__ = ["DROPPED", "LocalClient"]

log = logging.getLogger("bayeux.server")

Callback = Callable[[str, Any], None]

#: the error of a message a server extension dropped (no reply came)
DROPPED = "Dropped by a server extension"
#: seconds before a message lost in the server (its receive raised) is sent again
_RETRY = 1.0


class _Waiter:
    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: str | None = None

    def settle(self, error: str | None) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


class LocalClient:
    """A client of the server it lives in. Get one with ``server.get_client()``.

    The first call handshakes. ``publish`` returns once the server accepted
    the message and raises :class:`PublishError` with the server's error
    string if it refused it, or with :data:`DROPPED` if a server extension
    dropped it (returned None from ``incoming``: no reply comes, so the
    publish fails, as when a client extension drops one). ``subscribe`` does
    the same for its subscription. A refused handshake fails the call that
    needed it; the next call tries again. If the server ends the session
    (``server.disconnect``), the next call starts a new one and subscribes
    again to every channel that has callbacks. After :meth:`disconnect` the
    client is done: calls raise :class:`PublishError`.
    """

    kind = Kind.LOCAL
    output: Output | None = None

    def __init__(self, server: ServerContext) -> None:
        self._server = server
        self._hub = server.hub
        self._conn = self._hub.new_conn(self)
        self._hub.open_stream(self._conn)
        self._session = self._new_session()
        self._callbacks: dict[str, list[Callback]] = {}
        #: publishes waiting for their result, by message id
        self._results: dict[str, _Waiter] = {}
        #: first subscriptions to a channel waiting for the server's answer
        self._subscribing: dict[str, _Waiter] = {}
        #: request connections with a batch in the server -> that batch
        self._requests: dict[int, list[Message]] = {}
        #: what the session gave to send, not yet handed to the server
        self._outbox: list[Message] = []
        #: messages handed to the outbox, and those the server has taken
        self._queued = 0
        self._taken = 0
        self._wake = trio.Event()
        self._progress = trio.Event()
        self._driver: trio.CancelScope | None = None
        #: the driver task is running (it ends when the hub stops)
        self._driving = False
        self._closed = False

    @property
    def client_id(self) -> str | None:
        """The current session's id; None before the handshake and once it ended."""
        session = self._session
        return session.client_id if session.state is ClientState.CONNECTED else None

    async def publish(self, channel: str, data: Any, *, ext: Any = None) -> None:
        """Publish through the server's extensions; raises PublishError if refused."""
        self._start()
        try:
            message_id = self._session.publish(channel, data, now=trio.current_time(), ext=ext)
        except LocalProtocolError as exc:
            raise PublishError(str(exc)) from None
        waiter = self._results[message_id] = _Waiter()
        try:
            self._pump()
            await waiter.done.wait()
        finally:
            del self._results[message_id]
        if waiter.error is not None:
            raise PublishError(waiter.error)

    async def subscribe(self, channel: str, callback: Callback) -> None:
        """Call ``callback(channel, data)`` for each message matching ``channel``."""
        self._start()
        callbacks = self._callbacks.get(channel)
        if callbacks is not None:
            callbacks.append(callback)
            return
        try:
            self._session.subscribe(channel, now=trio.current_time())
        except LocalProtocolError as exc:
            raise PublishError(str(exc)) from None
        self._callbacks[channel] = [callback]
        waiter = self._subscribing[channel] = _Waiter()
        try:
            self._pump()
            await waiter.done.wait()
        except BaseException:
            self._drop(channel)
            raise
        finally:
            if self._subscribing.get(channel) is waiter:
                del self._subscribing[channel]
        if waiter.error is not None:
            self._callbacks.pop(channel, None)
            raise PublishError(waiter.error)

    async def unsubscribe(self, channel: str, callback: Callback | None = None) -> None:
        """Remove ``callback`` (or every callback) from ``channel``.

        Returns once the server has handled the unsubscribe, when one was due.
        """
        callbacks = self._callbacks.get(channel)
        if callbacks is None:
            return
        if callback is not None and callback in callbacks:
            callbacks.remove(callback)
        if callback is None or not callbacks:
            self._drop(channel)
            await self._until_taken()

    async def disconnect(self) -> None:
        """End the session; the client cannot be used afterwards."""
        if self._closed:
            return
        self._closed = True
        if self._session.state is ClientState.CONNECTED:
            self._session.disconnect(now=trio.current_time())
            self._pump()
            await self._until_taken()
        else:
            self._session.disconnect(now=trio.current_time())
            self._pump()
        if self._driver is not None:
            self._driver.cancel()
        self._hub.forget(self._conn)

    # ------------------------------------------------------------- internals

    def _new_session(self) -> ClientSession:
        return ClientSession(
            connection_types=("in-process",),
            retry=_RETRY,
            timeout=self._server.config.engine.timeout,
            extensions=self._server.local_extensions,
        )

    def _start(self) -> None:
        """Refuse calls once disconnected; start (again) a session and the driver."""
        if self._closed:
            raise PublishError("the client is disconnected")
        if self._session.state is ClientState.DISCONNECTED:
            # The server ended the session: a new one takes the callbacks' channels.
            self._session = self._new_session()
            for channel in self._callbacks:
                self._session.subscribe(channel, now=trio.current_time())
        if self._session.state is ClientState.UNCONNECTED:
            self._session.handshake(now=trio.current_time())
        if self._driver is None:
            self._driver = trio.CancelScope()
            self._driving = True  # from now: it starts before anything awaits it
            self._hub.start_soon(self._drive)
        self._pump()

    def _drop(self, channel: str) -> None:
        self._callbacks.pop(channel, None)
        if self._session.state is not ClientState.DISCONNECTED:
            self._session.unsubscribe(channel, now=trio.current_time())
            self._pump()

    def _pump(self) -> None:
        """Act on the session's events, then queue its messages for the driver."""
        session = self._session
        while True:
            events = session.events()
            for event in events:
                self._handle(event)
            messages = session.messages_to_send()
            if messages:
                self._outbox.extend(messages)
                self._queued += len(messages)
            if not events and not messages:
                break
        self._wake.set()  # the driver looks at its outbox and the timer again

    def _handle(self, event: ClientEvent) -> None:
        if isinstance(event, MessageReceived):
            self._dispatch(event.channel, event.data)
        elif isinstance(event, PublishSucceeded):
            waiter = self._results.get(event.id)
            if waiter is not None:
                waiter.settle(None)
        elif isinstance(event, PublishFailed):
            waiter = self._results.get(event.id)
            if waiter is not None:
                waiter.settle(event.error)
        elif isinstance(event, SubscribeSucceeded):
            waiter = self._subscribing.get(event.channel)
            if waiter is not None:
                waiter.settle(None)
        elif isinstance(event, SubscribeFailed):
            waiter = self._subscribing.get(event.channel)
            if waiter is not None:
                waiter.settle(event.error)
            elif self._callbacks.pop(event.channel, None) is not None:
                log.warning(
                    "local client: subscription to %s refused: %s", event.channel, event.error
                )
        elif isinstance(event, HandshakeFailed):
            # In-process, a refusal is not a network fault that a retry may
            # get past: fail what waits for the session, end it, and let the
            # next call try again.
            log.warning("local client: handshake refused: %s", event.error)
            for waiter in [*self._results.values(), *self._subscribing.values()]:
                waiter.settle(event.error)
            self._session.disconnect(now=trio.current_time())
        elif isinstance(event, SessionEnded) and event.error is not None:
            log.info("local client: the server ended the session: %s", event.error)

    def _dispatch(self, channel: str, data: Any) -> None:
        for pattern, callbacks in list(self._callbacks.items()):
            if matches(pattern, channel):
                for callback in list(callbacks):
                    try:
                        callback(channel, data)
                    except Exception:
                        log.exception("local client callback %r failed", callback)

    async def _until_taken(self) -> None:
        """Wait until the server has taken every message queued so far."""
        target = self._queued
        while self._taken < target and self._driving:
            progress = self._progress
            await progress.wait()

    # ------------------------------------------------------------ the driver

    async def _drive(self) -> None:
        assert self._driver is not None
        self._driving = True
        try:
            await self._drive_loop(self._driver)
        finally:
            self._driving = False
            self._progress.set()

    async def _drive_loop(self, scope: trio.CancelScope) -> None:
        with scope:
            while True:
                if self._outbox:
                    messages, self._outbox = self._outbox, []
                    await self._send(messages)
                    self._taken += len(messages)
                    self._progress.set()
                    self._progress = trio.Event()
                    continue
                session = self._session
                deadline = session.get_timer()
                now = trio.current_time()
                if deadline is not None and deadline <= now:
                    session.handle_timer(now)
                    self._pump()
                    continue
                wake = self._wake = trio.Event()
                with trio.move_on_at(math.inf if deadline is None else deadline):
                    await wake.wait()

    async def _send(self, messages: list[Message]) -> None:
        others = [message for message in messages if not is_connect(message)]
        if others:
            conn = self._hub.new_conn(self)
            self._requests[conn] = others
            try:
                await self._server.receive(conn, others, None)
            except Exception:
                log.exception("local client: the server failed on a batch")
                self._lost(conn)
            except BaseException:
                self._lost(conn)
                raise
        for message in messages:
            if is_connect(message):
                try:
                    await self._server.receive(self._conn, [message], None)
                except Exception:
                    log.exception("local client: the server failed on a connect")
                    self._session.transport_failed(now=trio.current_time())
                    self._pump()

    def _lost(self, conn: int) -> None:
        """``conn``'s batch got no reply (the server raised): it is sent again."""
        if self._requests.pop(conn, None) is not None:
            self._hub.forget(conn)
            self._session.transport_failed(now=trio.current_time())
            self._pump()

    # ------------------------------------------------------ the hub's calls

    def reply(self, conn: int, body: bytes) -> bool:
        messages = orjson.loads(body)
        if conn != self._conn:
            self._hub.release(conn)
            sent = self._requests.pop(conn, None)
            if sent is not None:
                # What a server extension dropped got no reply: refuse it here.
                dropped = unanswered(sent, messages)
                messages.extend(failure_reply(message, DROPPED) for message in dropped)
        self._session.receive(messages, now=trio.current_time())
        self._pump()
        return True

    def push(self, frame: bytes) -> None:
        self._session.receive(orjson.loads(frame), now=trio.current_time())
        self._pump()

    def close_stream(self) -> None:
        """The session bound to the stream ended; the stream stays for the next one."""
