"""The Bayeux client on trio: :func:`open_client`, subscriptions, :func:`publish_sync`.

The protocol is :class:`bayeux_core.ClientSession`'s: it decides what to send,
when to retry, when to handshake again, and what each reply means. This module
only moves its messages (through a transport from ``_client_transports``),
keeps its timer, and turns its events into awaited results:

* one task per transport reads and writes the network;
* one task sleeps until the session's next deadline and calls ``handle_timer``;
* everything else happens in :meth:`BayeuxClient._pump`, called right after
  each input to the session, with no await in between (the session is only
  ever touched by one task at a time, as trio runs one at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import ssl
import types
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar

import orjson
import trio

from bayeux_core import (
    BayeuxError,
    CallFailed,
    CallSucceeded,
    ClientEvent,
    ClientSession,
    ClientState,
    Extension,
    HandshakeFailed,
    HandshakeSucceeded,
    LocalProtocolError,
    Message,
    MessageContext,
    MessageKind,
    MessageReceived,
    PublishError,
    PublishFailed,
    PublishSucceeded,
    SessionEnded,
    SubscribeFailed,
    SubscribeSucceeded,
    SubscriptionRecovered,
    TransportDown,
    TransportUp,
    can_have_presence,
    is_meta,
    is_service,
    is_valid_name,
    matches,
    message_kind,
    presence_channel,
    presence_target,
)

from ._roster import PresenceEvent, Roster
from ._transports import (
    Endpoint,
    HttpSettings,
    LongPollingTransport,
    Transport,
    WebSocketTransport,
)

__all__ = [
    "TRANSPORTS",
    "BayeuxClient",
    "BufferFull",
    "CallError",
    "ClientError",
    "Presence",
    "PresenceEvent",
    "SessionEndedError",
    "SubscribeError",
    "Subscription",
    "open_client",
    "publish_sync",
]

log = logging.getLogger("bayeux.client")

#: The transports the client has, in its default order of preference.
TRANSPORTS: tuple[str, ...] = ("websocket", "long-polling")

E = TypeVar("E", bound=ClientEvent)
#: What a subscription callback may be: a plain function or an async one.
Callback = Callable[[MessageReceived], Awaitable[None] | None]
#: What a presence callback is: a plain function taking a :class:`PresenceEvent`.
PresenceCallback = Callable[[PresenceEvent], None]


class ClientError(BayeuxError):
    """The client cannot do what was asked (it is closed, say)."""


class SessionEndedError(ClientError):
    """The server ended the session for good (``reconnect: none``): no retry follows.

    For example, an extension refused the handshake terminally (bad
    credentials). ``error`` is the server's error string.
    """

    def __init__(self, message: str, error: str) -> None:
        super().__init__(message)
        self.error = error


class CallError(BayeuxError):
    """A service call failed: ``error`` is the server's (or client's) error string."""

    def __init__(self, channel: str, error: str) -> None:
        super().__init__(f"call to {channel} failed: {error}")
        self.channel = channel
        self.error = error


class BufferFull(ClientError):
    """Too many publishes are already waiting for the connection to come back."""


class SubscribeError(BayeuxError):
    """A subscription was refused, or ended with an error.

    Attributes:
        channel: the channel or pattern subscribed to.
        error: the server's error string (``"403:/x:Forbidden channel"``), or
            the client's reason (a subscriber too slow, a session that ended).
    """

    def __init__(self, channel: str, error: str) -> None:
        super().__init__(f"subscription to {channel} failed: {error}")
        self.channel = channel
        self.error = error


class _Result:
    __slots__ = ("data", "done", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: str | None = None
        self.data: Any = None


_NEW, _STARTING, _ACTIVE, _ENDED = "new", "starting", "active", "ended"


class Subscription:
    """One subscription to a channel or pattern; made by :meth:`BayeuxClient.subscribe`.

    Use it as an async context manager (subscribed on entry, unsubscribed on
    exit) and iterate it for :class:`~bayeux_core.MessageReceived` values, or
    await it once (``sub = await client.subscribe(...)``) and call
    :meth:`unsubscribe` later. Entering or awaiting returns once the server
    acknowledged the subscription, and raises :class:`SubscribeError` if it
    refused it.

    Iteration stops when the subscription is unsubscribed or the client
    closes. It raises :class:`SubscribeError` when the subscription ends with
    an error: a re-subscription (after the client had to handshake again)
    refused by the server, a session ended by the server, or more than
    ``buffer`` messages waiting for this subscriber.
    """

    def __init__(
        self,
        client: BayeuxClient,
        channel: str,
        callback: Callback | None,
        buffer: int,
        since: str | None = None,
    ) -> None:
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1, not {buffer!r}")
        self.channel = channel
        #: a history position to recover from when subscribing (docs/delivery.md)
        self.since = since
        #: the latest recovery's outcome (None: none asked yet), and why it failed
        self.recovered: bool | None = None
        self.recovery_reason: str | None = None
        #: the error the subscription ended with, if any
        self.error: str | None = None
        self._client = client
        self._callback = callback
        self._buffer = buffer
        self._send, self._receive = trio.open_memory_channel[MessageReceived](buffer)
        self._state = _NEW
        self._settled = trio.Event()

    def __repr__(self) -> str:
        return f"<Subscription {self.channel} {self._state}>"

    @property
    def position(self) -> str | None:
        """The latest history position seen on this channel (keep it to recover later)."""
        return self._client.session.positions.get(self.channel)

    @property
    def active(self) -> bool:
        """True from the server's acknowledgement until the subscription ends."""
        return self._state == _ACTIVE

    # ------------------------------------------------------------ start/stop

    async def _start(self) -> Subscription:
        if self._state != _NEW:
            raise RuntimeError("a Subscription is started only once")
        self._state = _STARTING
        try:
            self._client._add(self)
        except BaseException:
            self._state = _ENDED
            raise
        try:
            await self._settled.wait()
        except BaseException:
            self._client._remove(self)
            self._end(None)
            raise
        if self.error is not None:
            raise SubscribeError(self.channel, self.error)
        if self._state == _ENDED:
            raise ClientError("the client closed before the subscription was acknowledged")
        if self._callback is not None:
            self._client._spawn(self._run_callback)
        return self

    def __await__(self) -> Generator[Any, None, Subscription]:
        return self._start().__await__()

    async def __aenter__(self) -> Subscription:
        return await self._start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.unsubscribe()

    async def unsubscribe(self) -> None:
        """Stop receiving; the server is told once no subscription to the channel is left.

        Messages already received can still be iterated. Does nothing the
        second time.
        """
        self._client._remove(self)
        self._end(None)
        await trio.lowlevel.checkpoint()

    # -------------------------------------------------------------- messages

    async def receive(self) -> MessageReceived:
        """The next message.

        Raises :class:`trio.EndOfChannel` once unsubscribed (after the messages
        already received), or :class:`SubscribeError` if it ended with an error.
        """
        if self._state == _NEW:
            raise RuntimeError("subscribe first: async with client.subscribe(...) as sub")
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            if self.error is not None:
                raise SubscribeError(self.channel, self.error) from None
            raise

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> MessageReceived:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    # ------------------------------------------------------ the client's calls

    def _deliver(self, message: MessageReceived) -> None:
        if self._state == _ENDED:
            return
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            self._client._remove(self)
            self._end(f"more than {self._buffer} messages were waiting for this subscriber")

    def _acknowledged(self) -> None:
        if self._state == _STARTING:
            self._state = _ACTIVE
            self._settled.set()

    def _end(self, error: str | None) -> None:
        if self._state == _ENDED:
            return
        self._state = _ENDED
        self.error = error
        self._send.close()
        self._settled.set()

    async def _run_callback(self) -> None:
        callback = self._callback
        assert callback is not None
        try:
            async for message in self:
                try:
                    result = callback(message)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("the callback of the subscription to %s failed", self.channel)
        except SubscribeError as exc:
            log.warning("%s", exc)


class _PresenceFeed(Subscription):
    """The subscription to ``/presence<channel>`` under a :class:`Presence`.

    Its deliveries go to the client's :class:`Roster` of the channel (one per
    channel, shared by every Presence on it), not to a queue of its own.
    """

    def __init__(self, client: BayeuxClient, presence: Presence) -> None:
        super().__init__(client, presence_channel(presence.channel), None, 1)
        self.presence = presence

    def _deliver(self, message: MessageReceived) -> None:
        pass  # the roster has it (BayeuxClient._handle)

    def _end(self, error: str | None) -> None:
        super()._end(error)
        self.presence._ended(error)


class Presence:
    """Who is in a channel with presence; made by :meth:`BayeuxClient.presence`.

    Enter it (``async with client.presence("/chat/room") as room:``) or await
    it (``room = await client.presence(...)``, then :meth:`close`): either
    returns once the server acknowledged the subscription to
    ``/presence<channel>`` and sent the members list. Then:

    * :attr:`members` maps each user in the channel to their info, in join
      order, kept up to date as users join and leave;
    * ``room.on("join", fn)`` / ``room.on("leave", fn)`` call ``fn`` with each
      :class:`PresenceEvent` of that kind;
    * ``async for event in room`` yields every :class:`PresenceEvent` after
      the members list, joins and leaves alike.

    After a new handshake (the server lost the session) the client subscribes
    again and gets a new members list; the differences with what it knew come
    as leaves and joins, so ``members``, the callbacks and the iteration stay
    in step with the server.

    Raises :class:`SubscribeError` (``.channel`` is the presence channel)
    when the server refuses the subscription (no presence on that channel, or
    access refused), or sends no members list within ``timeout`` seconds of
    acknowledging it (a server without presence for it). Iteration raises it
    when the subscription ends with an error, as a :class:`Subscription`'s
    does, or when more than ``buffer`` events were waiting for it (the
    members and the callbacks carry on then).
    """

    def __init__(
        self, client: BayeuxClient, channel: str, buffer: int, timeout: float | None
    ) -> None:
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1, not {buffer!r}")
        if not can_have_presence(channel):
            raise LocalProtocolError(f"{channel!r} cannot have presence")
        #: the channel whose members these are (``/chat/room``)
        self.channel = channel
        #: the error the presence ended with, if any
        self.error: str | None = None
        self._client = client
        self._timeout = timeout
        self._buffer = buffer
        self._feed = _PresenceFeed(client, self)
        self._roster: Roster | None = None
        #: the members once ended (the roster's are live until then)
        self._last: dict[str, Any] = {}
        self._callbacks: dict[str, list[PresenceCallback]] = {"join": [], "leave": []}
        self._send, self._receive = trio.open_memory_channel[PresenceEvent](buffer)
        self._overflow: str | None = None
        self._state = _NEW
        self._synced = trio.Event()

    def __repr__(self) -> str:
        return f"<Presence {self.channel} {self._state} {len(self.members)} members>"

    @property
    def members(self) -> Mapping[str, Any]:
        """User -> info of everyone in the channel, in join order (read-only, live).

        Empty until the members list arrived; frozen at its last state once
        the presence ended.
        """
        roster = self._roster
        return types.MappingProxyType(roster.members if roster is not None else self._last)

    @property
    def active(self) -> bool:
        """True from the members list until the presence ends."""
        return self._state == _ACTIVE

    # ------------------------------------------------------------ start/stop

    async def _start(self) -> Presence:
        if self._state != _NEW:
            raise RuntimeError("a Presence is started only once")
        self._state = _STARTING
        channel = self._feed.channel
        await self._feed._start()  # SubscribeError, ClientError
        roster = self._client._rosters.get(channel)
        assert roster is not None  # made by _add; dropped only with the feed
        if not roster.synced:
            timeout = math.inf if self._timeout is None else self._timeout
            try:
                with trio.move_on_after(timeout):
                    await self._synced.wait()
            except BaseException:
                await self.close()
                raise
            if not roster.synced and self._state == _STARTING:
                await self.close()
                raise SubscribeError(
                    channel,
                    f"no members list within {timeout:g} s: is presence on for "
                    f"{self.channel} on the server?",
                )
        if self._state != _STARTING:  # the feed ended meanwhile
            if self.error is not None:
                raise SubscribeError(channel, self.error)
            raise ClientError("the client closed before the members list came")
        self._roster = roster
        self._state = _ACTIVE
        return self

    def __await__(self) -> Generator[Any, None, Presence]:
        return self._start().__await__()

    async def __aenter__(self) -> Presence:
        return await self._start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop following the channel (unsubscribe from its presence channel).

        Events already received can still be iterated. Does nothing the second
        time.
        """
        await self._feed.unsubscribe()

    # ------------------------------------------------------------- callbacks

    def on(self, kind: str, callback: PresenceCallback) -> PresenceCallback:
        """Call ``callback(event)`` for each ``"join"`` or ``"leave"``; returns it.

        Callbacks run inside the client, as :meth:`BayeuxClient.on` listeners
        do: they must not block (for async work, iterate instead). Their
        exceptions are logged on ``bayeux.client``.
        """
        if kind not in self._callbacks:
            raise ValueError(f"unknown presence event {kind!r}: 'join' or 'leave'")
        if inspect.iscoroutinefunction(callback):
            raise TypeError("presence callbacks are plain functions: iterate for async work")
        self._callbacks[kind].append(callback)
        return callback

    def off(self, kind: str, callback: PresenceCallback) -> None:
        """Remove a callback added with :meth:`on` (nothing if it is not there)."""
        with contextlib.suppress(KeyError, ValueError):
            self._callbacks[kind].remove(callback)

    # ---------------------------------------------------------------- events

    async def receive(self) -> PresenceEvent:
        """The next join or leave.

        Raises :class:`trio.EndOfChannel` once closed (after the events
        already received), or :class:`SubscribeError` if it ended with an
        error or too many events were waiting.
        """
        if self._state in (_NEW, _STARTING):
            raise RuntimeError("start it first: async with client.presence(...) as room")
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            error = self.error or self._overflow
            if error is not None:
                raise SubscribeError(self._feed.channel, error) from None
            raise

    def __aiter__(self) -> Presence:
        return self

    async def __anext__(self) -> PresenceEvent:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    # ------------------------------------------------------ the client's calls

    def _changed(self, roster: Roster, changes: list[PresenceEvent]) -> None:
        """The roster took a delivery (``changes`` may be empty: a first list)."""
        if self._state == _STARTING and roster.synced:
            self._synced.set()
        if self._state != _ACTIVE:
            return  # before the start returns, ``members`` has them already
        for event in changes:
            if self._overflow is None:
                try:
                    self._send.send_nowait(event)
                except trio.WouldBlock:
                    self._overflow = (
                        f"more than {self._buffer} presence events were waiting "
                        "(the members and callbacks go on)"
                    )
                    self._send.close()
            for callback in list(self._callbacks[event.kind]):
                try:
                    callback(event)
                except Exception:
                    log.exception(
                        "a %s callback of the presence in %s failed", event.kind, self.channel
                    )

    def _ended(self, error: str | None) -> None:
        if self._state == _ENDED:
            return
        self._state = _ENDED
        self.error = error
        if self._roster is not None:
            self._last = dict(self._roster.members)
            self._roster = None
        self._send.close()
        self._synced.set()


#: What a token callback is: a plain function returning the token (or None).
TokenCallback = Callable[[], str | None]


class _HandshakeToken(Extension):
    """Puts ``token()`` into each outgoing handshake's ``ext``, at ``path``.

    Called for every handshake sent (the first, each re-handshake, each
    resend), so a server that refused an expired token gets the fresh one
    the application now returns. A callback that fails costs that handshake
    its token, never the client: the server refuses it and the session
    tries again later, as after any refused handshake.
    """

    def __init__(self, token: TokenCallback, path: tuple[str, ...]) -> None:
        self._token = token
        self._path = path

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if message_kind(message) is not MessageKind.HANDSHAKE:
            return message
        try:
            token: object = self._token()  # checked: an untyped app may return anything
        except Exception:
            log.exception("the token callback failed: handshaking without a token")
            return message
        if token is None:
            return message
        if not isinstance(token, str):
            log.warning(
                "the token callback returned %s, not a string: handshaking without a token",
                type(token).__name__,
            )
            return message
        # Copied on the way down: the session's own message (kept for
        # resends) may share these dicts.
        ext = message.get("ext")
        tree: dict[str, Any] = dict(ext) if isinstance(ext, dict) else {}
        message["ext"] = node = tree
        *parents, leaf = self._path
        for key in parents:
            child = node.get(key)
            node[key] = node = dict(child) if isinstance(child, dict) else {}
        node[leaf] = token
        return message


def _token_path(field: str) -> tuple[str, ...]:
    """``"auth.token"`` -> ("auth", "token"); ValueError for an empty part."""
    parts = tuple(field.split("."))
    if not all(parts):
        raise ValueError(
            f"token_field must be a dotted path in ext (say 'auth.token'), not {field!r}"
        )
    return parts


class BayeuxClient:
    """A Bayeux client; made and run by :func:`open_client` (see its arguments)."""

    def __init__(
        self,
        url: str,
        *,
        transports: Sequence[str] = TRANSPORTS,
        disable: Iterable[str] = (),
        extensions: Iterable[Extension] = (),
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        cookies: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        retry: float = 1.0,
        max_retry: float = 30.0,
        connect_timeout: float = 10.0,
        max_pending: int = 1000,
        max_message_size: int = 1024 * 1024,
        close_timeout: float = 2.0,
        ack: bool = False,
        token: TokenCallback | None = None,
        token_field: str = "auth.token",
    ) -> None:
        disabled = set(disable)
        for name in (*transports, *disabled):
            if name not in TRANSPORTS:
                raise ValueError(f"unknown transport {name!r}: choose from {', '.join(TRANSPORTS)}")
        enabled = list(dict.fromkeys(t for t in transports if t not in disabled))
        if not enabled:
            raise ValueError("every transport is disabled")
        if max_message_size < 1024:
            raise ValueError(f"max_message_size must be at least 1024, not {max_message_size!r}")
        if not (math.isfinite(connect_timeout) and connect_timeout > 0):
            raise ValueError(f"connect_timeout must be a positive number, not {connect_timeout!r}")
        token_path = _token_path(token_field)
        extensions = list(extensions)
        if token is not None:
            if inspect.iscoroutinefunction(token):
                raise TypeError("token must be a plain function: keep the token in a variable")
            extensions.insert(0, _HandshakeToken(token, token_path))
        self.url = url
        header_list = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        self._settings = HttpSettings(
            endpoint=Endpoint.parse(url),
            headers=header_list,
            cookies=dict(cookies or {}),
            ssl_context=ssl_context,
            connect_timeout=connect_timeout,
            max_message_size=max_message_size,
        )
        #: the protocol state (read it; the client drives it)
        self.session = ClientSession(
            connection_types=enabled,
            retry=retry,
            max_retry=max(max_retry, retry),
            max_pending=max_pending,
            extensions=extensions,
            ack=ack,
        )
        self._transports: dict[str, Transport] = {}
        for name in enabled:
            if name == "websocket":
                self._transports[name] = WebSocketTransport(self._settings, self)
            else:
                self._transports[name] = LongPollingTransport(self._settings, self)
        self._transport = self._transports[enabled[0]]
        self._close_timeout = close_timeout
        self._subscriptions: dict[str, list[Subscription]] = {}
        #: presence channel -> who is in its channel, while subscribed to it
        self._rosters: dict[str, Roster] = {}
        self._results: dict[str, _Result] = {}
        self._listeners: list[Callable[[ClientEvent], None]] = []
        self._changed = trio.Event()
        self._timer_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        #: why the client cannot be used any more, once it cannot
        self._closed: str | None = None
        self._down = False
        #: the last connection failure or handshake refusal, for error messages
        self.last_error: str | None = None
        #: the server's error when it ended the session for good
        self._end_error: str | None = None

    # ------------------------------------------------------------ properties

    @property
    def client_id(self) -> str | None:
        """The server's id for this client's current session."""
        return self.session.client_id

    @property
    def transport(self) -> str:
        """The transport in use: ``"websocket"`` or ``"long-polling"``."""
        return self._transport.name

    @property
    def connected(self) -> bool:
        """A session exists and the transport is not known to be down."""
        return self.session.state is ClientState.CONNECTED and not self._down

    # ------------------------------------------------------------ publishing

    async def publish(self, channel: str, data: Any, *, ext: Any = None) -> None:
        """Publish ``data`` (any JSON value) and return once the server accepted it.

        While the client is not connected the publish waits, and goes out once
        the connection is back (see ``max_pending``). Cancelling the wait does
        not withdraw a publish that has already been handed to the session.

        Raises:
            PublishError: the server refused it; ``.error`` is its error string.
            BufferFull: ``max_pending`` publishes are already waiting.
            ClientError: the client is closed.
            TypeError: ``data`` or ``ext`` is not JSON.
            ValueError: the message is larger than ``max_message_size``.
            LocalProtocolError: ``channel`` is not a channel one can publish to.
        """
        self._check_open()
        self._check_message(channel, data, ext, "publish")
        try:
            message_id = self.session.publish(channel, data, now=trio.current_time(), ext=ext)
        except LocalProtocolError as exc:
            if is_valid_name(channel) and not is_meta(channel):
                raise BufferFull(str(exc)) from None
            raise
        result = self._results[message_id] = _Result()
        try:
            self._pump()
            await result.done.wait()
        finally:
            del self._results[message_id]
        if result.error is not None:
            raise PublishError(result.error)

    # A call has a default deadline, as CometD's remoteCall has.
    async def call(
        self,
        channel: str,
        data: Any,
        *,
        ext: Any = None,
        timeout: float | None = 10.0,  # noqa: ASYNC109
    ) -> Any:
        """Call the service at ``channel`` (``/service/...``); return its reply data.

        The server runs the handler registered for the channel and sends its
        result to this client alone (CometD's remote call).

        Raises:
            CallError: the server refused the call or its handler failed
                (``.error`` is the error string), or the session ended first.
            TimeoutError: no result within ``timeout`` seconds (None: wait on).
            ClientError, BufferFull, TypeError, ValueError: as :meth:`publish`.
        """
        self._check_open()
        self._check_message(channel, data, ext, "send")
        if not is_service(channel):
            raise LocalProtocolError(f"{channel!r} is not a /service channel")
        try:
            message_id = self.session.call(channel, data, now=trio.current_time(), ext=ext)
        except LocalProtocolError as exc:
            if is_valid_name(channel):
                raise BufferFull(str(exc)) from None
            raise
        result = self._results[message_id] = _Result()
        try:
            self._pump()
            with trio.move_on_after(math.inf if timeout is None else timeout):
                await result.done.wait()
        finally:
            del self._results[message_id]
            if not result.done.is_set():
                self.session.cancel_call(message_id)
        if not result.done.is_set():
            raise TimeoutError(f"no result from {channel} within {timeout:g} s")
        if result.error is not None:
            raise CallError(channel, result.error)
        return result.data

    # ----------------------------------------------------------- subscribing

    def subscribe(
        self,
        channel: str,
        callback: Callback | None = None,
        *,
        buffer: int = 1000,
        since: str | None = None,
    ) -> Subscription:
        """A subscription to a channel or pattern (``/chat/*``, ``/chat/**``).

        Nothing is sent until it is entered (``async with``) or awaited. With a
        ``callback`` (a function or an async function taking a
        :class:`~bayeux_core.MessageReceived`), a task of the client calls it for
        each message, one at a time; its exceptions are logged.

        ``buffer`` is how many received messages may wait for the subscriber;
        one more ends the subscription with an error (nothing is dropped
        silently).

        ``since``: a history position seen earlier on ``channel``
        (``Subscription.position``); the server replays what followed it, and
        ``Subscription.recovered`` says whether it could. The client also does
        this by itself when it must subscribe again after a new handshake.
        """
        return Subscription(self, channel, callback, buffer, since)

    def presence(
        self,
        channel: str,
        *,
        buffer: int = 1000,
        timeout: float | None = 10.0,
    ) -> Presence:
        """Who is in ``channel``, a channel the server keeps presence for.

        ``async with client.presence("/chat/room") as room:`` (or ``room =
        await client.presence(...)``) subscribes to ``/presence/chat/room`` and
        returns once the members list came: ``room.members`` (user -> info),
        ``room.on("join" | "leave", fn)``, ``async for event in room``. See
        :class:`Presence`.

        Following a channel's presence does not put this client in it: a
        client is in a channel while subscribed to the channel itself.

        ``timeout``: seconds to wait for the members list once the server
        acknowledged the subscription (None: wait on); a server without
        presence for the channel sends none. ``buffer``: events that may wait
        for the iteration.

        Raises:
            LocalProtocolError: ``channel`` cannot have presence (a pattern,
                ``/meta``, ``/service`` or ``/presence`` channels).
        """
        return Presence(self, channel, buffer, timeout)

    # ---------------------------------------------------------------- events

    def add_listener(self, listener: Callable[[ClientEvent], None]) -> None:
        """Call ``listener`` with every event of the session (see bayeux_core).

        :class:`~bayeux_core.TransportDown` and :class:`~bayeux_core.TransportUp`
        are the transport down/up events; :class:`~bayeux_core.HandshakeSucceeded`
        comes after every (re-)handshake. Listeners must not block.
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[ClientEvent], None]) -> None:
        self._listeners.remove(listener)

    def on(
        self, event_type: type[E], callback: Callable[[E], None]
    ) -> Callable[[ClientEvent], None]:
        """Call ``callback`` with each event of ``event_type``; returns the listener."""

        def listener(event: ClientEvent) -> None:
            if isinstance(event, event_type):
                callback(event)

        self._listeners.append(listener)
        return listener

    async def wait_connected(self) -> None:
        """Return once a session exists and the transport is up.

        Raises :class:`ClientError` if the client closes first.
        """
        while not self.connected:
            self._check_open()
            await self._changed.wait()

    # ------------------------------------------------------------- internals

    def _check_message(self, channel: str, data: Any, ext: Any, verb: str) -> None:
        """Refuse, before it is queued, a message that is not JSON or is too large."""
        try:
            size = len(orjson.dumps({"channel": channel, "data": data, "ext": ext}))
        except TypeError as exc:
            raise TypeError(f"cannot {verb} a value that is not JSON: {exc}") from None
        if size > self._settings.max_message_size:
            raise ValueError(
                f"the message is {size} bytes, more than max_message_size "
                f"({self._settings.max_message_size})"
            )

    def _check_open(self) -> None:
        if self._closed is not None:
            if self._end_error is not None:
                raise SessionEndedError(self._closed, self._end_error)
            raise ClientError(self._closed)
        if self._nursery is None:
            raise ClientError("the client is not running: use `async with open_client(url)`")

    def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        for transport in self._transports.values():
            nursery.start_soon(transport.run)
        nursery.start_soon(self._timer_loop)
        self.session.handshake(now=trio.current_time())
        self._pump()

    def _spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn)

    async def _shutdown(self) -> None:
        """Disconnect (within ``close_timeout``) and end whatever is left."""
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._close_timeout
            state = self.session.state
            if state is not ClientState.DISCONNECTED:
                transport = self._transport
                if state is not ClientState.CONNECTED:
                    transport.abort()  # no session: nothing worth sending
                self.session.disconnect(now=trio.current_time())
                self._pump()
                await transport.flush()
                if isinstance(transport, WebSocketTransport):
                    await transport.close()
        self._closed = self._closed or "the client is closed"

    def _add(self, subscription: Subscription) -> None:
        self._check_open()
        channel = subscription.channel
        self.session.subscribe(channel, now=trio.current_time(), since=subscription.since)
        self._subscriptions.setdefault(channel, []).append(subscription)
        if channel not in self._rosters:
            target = presence_target(channel)
            if target is not None and can_have_presence(target):
                # Kept for any subscription to it: a Presence that comes later
                # shares the members list the first subscribe brought.
                self._rosters[channel] = Roster(target)
        self._pump()

    def _remove(self, subscription: Subscription) -> None:
        subscriptions = self._subscriptions.get(subscription.channel)
        if subscriptions is None or subscription not in subscriptions:
            return
        subscriptions.remove(subscription)
        if not subscriptions:
            del self._subscriptions[subscription.channel]
            self._rosters.pop(subscription.channel, None)
            if self.session.state is not ClientState.DISCONNECTED:
                self.session.unsubscribe(subscription.channel, now=trio.current_time())
                self._pump()

    async def _timer_loop(self) -> None:
        while True:
            with trio.CancelScope() as scope:
                self._timer_scope = scope
                self._retime()
                await trio.sleep_forever()
            self._timer_scope = None
            deadline = self.session.get_timer()
            now = trio.current_time()
            if deadline is not None and deadline <= now:
                self.session.handle_timer(max(deadline, now))
                self._pump()

    def _retime(self) -> None:
        if self._timer_scope is not None:
            deadline = self.session.get_timer()
            self._timer_scope.deadline = math.inf if deadline is None else deadline

    def _pump(self) -> None:
        """Act on the session's events, then hand its messages to the transport."""
        session = self.session
        changed = False
        for _ in range(1000):
            events = session.events()
            for event in events:
                self._handle(event)
            messages = session.messages_to_send()
            if messages:
                self._transport.send(messages)
            if not events and not messages:
                break
            changed = changed or bool(events)
        self._retime()
        if changed:
            self._changed.set()
            self._changed = trio.Event()

    def _handle(self, event: ClientEvent) -> None:
        if isinstance(event, MessageReceived):
            roster = self._rosters.get(event.channel)
            if roster is not None:
                self._presence_changed(roster, event)
            for pattern, subscriptions in list(self._subscriptions.items()):
                if matches(pattern, event.channel):
                    for subscription in list(subscriptions):
                        subscription._deliver(event)
        elif isinstance(event, (PublishSucceeded, PublishFailed)):
            result = self._results.get(event.id)
            if result is not None:
                result.error = event.error if isinstance(event, PublishFailed) else None
                result.done.set()
        elif isinstance(event, (CallSucceeded, CallFailed)):
            result = self._results.get(event.id)
            if result is not None:
                if isinstance(event, CallFailed):
                    result.error = event.error
                else:
                    result.data = event.data
                result.done.set()
        elif isinstance(event, SubscribeSucceeded):
            for subscription in self._subscriptions.get(event.channel, ()):
                subscription._acknowledged()
        elif isinstance(event, SubscriptionRecovered):
            if not event.recovered:
                log.warning("missed messages on %s are lost: %s", event.channel, event.reason)
            for subscription in self._subscriptions.get(event.channel, ()):
                subscription.recovered = event.recovered
                subscription.recovery_reason = event.reason
        elif isinstance(event, SubscribeFailed):
            log.warning("subscription to %s refused: %s", event.channel, event.error)
            self._rosters.pop(event.channel, None)
            for subscription in self._subscriptions.pop(event.channel, []):
                subscription._end(event.error)
        elif isinstance(event, HandshakeSucceeded):
            log.debug("handshake succeeded (%s...)", event.client_id[:6])
            self.last_error = None
            self._use(self.session.connection_type)
        elif isinstance(event, HandshakeFailed):
            self.last_error = f"handshake refused: {event.error}"
            log.warning("%s", self.last_error)
        elif isinstance(event, TransportDown):
            self._down = True
            log.info("transport down (%s): %s", self._transport.name, self.last_error)
            # Whatever is still in flight is as lost as what timed out.
            self._transport.abort()
            self.session.transport_failed(now=trio.current_time())
        elif isinstance(event, TransportUp):
            self._down = False
            log.info("transport up (%s)", self._transport.name)
        elif isinstance(event, SessionEnded):
            self._end(event.error)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("client listener %r failed", listener)

    def _presence_changed(self, roster: Roster, event: MessageReceived) -> None:
        changes = roster.apply(event.data)
        if changes is None:
            return
        for subscription in list(self._subscriptions.get(event.channel, ())):
            if isinstance(subscription, _PresenceFeed):
                subscription.presence._changed(roster, changes)

    def _end(self, error: str | None) -> None:
        if error is None:
            self._closed = "the client is closed"
        else:
            self._closed = f"the server ended the session: {error}"
            self._end_error = error
            log.warning("%s", self._closed)
            for transport in self._transports.values():
                transport.abort()
        subscriptions = [s for group in self._subscriptions.values() for s in group]
        self._subscriptions.clear()
        self._rosters.clear()
        for subscription in subscriptions:
            subscription._end(error)

    def _use(self, name: str) -> None:
        """Move to transport ``name``, taking along what the old one had not sent."""
        new = self._transports.get(name)
        if new is None or new is self._transport:
            return
        old = self._transport
        unsent = old.take_unsent()
        old.abort()
        log.info("using %s", name)
        self._transport = new
        if unsent:
            new.send(unsent)

    # ------------------------------------------------------ the transports'

    def transport_received(self, transport: Transport, messages: list[Message]) -> None:
        if transport is self._transport:
            self.session.receive(messages, now=trio.current_time())
            self._pump()

    def transport_failed(self, transport: Transport, reason: str) -> None:
        if transport is not self._transport:
            return
        self.last_error = reason
        log.debug("%s failed: %s", transport.name, reason)
        transport.abort()
        self.session.transport_failed(now=trio.current_time())
        self._pump()

    def transport_refused(self, transport: Transport, reason: str) -> None:
        """The server will not speak ``transport``: fall back to the next one, if any."""
        if transport is not self._transport:
            return
        session = self.session
        fallback = next((t for t in session.connection_types if t != transport.name), None)
        if fallback is None:
            self.transport_failed(transport, reason)
            return
        self.last_error = reason
        log.warning("%s; falling back to %s", reason, fallback)
        session.connection_types.remove(transport.name)
        if session.connection_type == transport.name:
            session.connection_type = fallback
        self._use(fallback)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out


@contextlib.asynccontextmanager
async def open_client(
    url: str,
    *,
    transports: Sequence[str] = TRANSPORTS,
    disable: Iterable[str] = (),
    extensions: Iterable[Extension] = (),
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    cookies: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    retry: float = 1.0,
    max_retry: float = 30.0,
    connect_timeout: float = 10.0,
    max_pending: int = 1000,
    max_message_size: int = 1024 * 1024,
    close_timeout: float = 2.0,
    ack: bool = False,
    token: TokenCallback | None = None,
    token_field: str = "auth.token",
) -> AsyncIterator[BayeuxClient]:
    """Run a Bayeux client for the duration of an ``async with`` block.

    ``async with open_client("https://example.com/faye") as client:``

    The client handshakes at once (in the background: entering does not wait;
    see :meth:`BayeuxClient.wait_connected`) and keeps its session going until
    the block ends, when it disconnects (waiting at most ``close_timeout``).

    Args:
        url: the Bayeux endpoint, ``http(s)://`` or ``ws(s)://`` (the same
            server either way); ``user:password@`` becomes Basic authorization.
        transports: the transports to use, in order of preference.
        disable: transports not to use, as Faye's ``client.disable(...)``.
        extensions: client extensions (:class:`bayeux_core.Extension`), run in
            order on every message out and in.
        headers: extra headers for every HTTP request and WebSocket upgrade.
        cookies: initial cookies; ``Set-Cookie`` answers update them.
        ssl_context: for ``https``/``wss``; the default verifies certificates
            against the system's trust store.
        retry: seconds before lost messages are sent again (doubling, while
            the server stays silent, up to ``max_retry``).
        connect_timeout: seconds to open a connection (TCP, TLS, upgrade).
        max_pending: publishes that may wait while the client is down; one
            more raises :class:`BufferFull`.
        max_message_size: largest message or response accepted, and largest
            publish sent, in bytes.
        ack: ask for acknowledged delivery (CometD's ack extension): if the
            server agrees, deliveries lost with a dropped connection are sent
            again, in order, and copies are dropped (``docs/delivery.md``).
        token: a function called before each handshake (the first and every
            new one, say after the server ended a session whose token
            expired); what it returns (a string, or None for no token) goes
            into the handshake's ``ext`` at ``token_field``. It must not
            block: an application that refreshes tokens in the background
            keeps the current one in a variable and returns that. If it
            raises, the handshake goes without a token (and is refused; the
            client tries again later). See docs/client.md, "Tokens".
        token_field: where in ``ext`` the token goes, as a dotted path
            (``"auth.token"`` is ``ext.auth.token``, the server's default).
    """
    client = BayeuxClient(
        url,
        transports=transports,
        disable=disable,
        extensions=extensions,
        headers=headers,
        cookies=cookies,
        ssl_context=ssl_context,
        retry=retry,
        max_retry=max_retry,
        connect_timeout=connect_timeout,
        max_pending=max_pending,
        max_message_size=max_message_size,
        close_timeout=close_timeout,
        ack=ack,
        token=token,
        token_field=token_field,
    )
    try:
        async with trio.open_nursery() as nursery:
            client._start(nursery)
            try:
                yield client
            finally:
                await client._shutdown()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The block's own exception (or the one failure) comes out as itself,
        # not wrapped in the group our nursery made of it.
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from leaves[0].__cause__
        raise


def _refuse_inside_an_event_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "publish_sync() blocks: from async code use `async with open_client(url)` "
        "(or run publish_sync in a worker thread)"
    )


def publish_sync(
    url: str,
    channel: str,
    data: Any,
    *,
    ext: Any = None,
    timeout: float = 10.0,
    transports: Sequence[str] = TRANSPORTS,
    disable: Iterable[str] = (),
    extensions: Iterable[Extension] = (),
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    cookies: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    token: TokenCallback | None = None,
    token_field: str = "auth.token",
) -> None:
    """Publish one message from ordinary (not async) code; blocks until acknowledged.

    For a Django or Flask view, a script, a cron job: it connects, publishes,
    waits for the server's acknowledgement and disconnects. Each call makes a
    new connection and session; to publish often, keep a client open with
    :func:`open_client` instead.

    Do not call it from async code (a coroutine, an asyncio or trio task): it
    runs its own trio event loop and blocks the thread. It raises RuntimeError
    when it sees a running asyncio or trio loop. ``token`` and ``token_field``:
    as for :class:`BayeuxClient`, for a server that wants a connection token
    (docs/access.md); a backend's secret goes in ``ext`` instead.

    Raises:
        PublishError: the server refused the message (``.error`` says why).
        TimeoutError: no acknowledgement within ``timeout`` seconds.
    """
    _refuse_inside_an_event_loop()
    options: dict[str, Any] = {
        "transports": transports,
        "disable": disable,
        "extensions": extensions,
        "headers": headers,
        "cookies": cookies,
        "ssl_context": ssl_context,
        "token": token,
        "token_field": token_field,
    }

    async def publish_once() -> None:
        async with open_client(url, **options) as client:
            with trio.move_on_after(timeout) as scope:
                await client.publish(channel, data, ext=ext)
            if scope.cancelled_caught:
                reason = f" (last error: {client.last_error})" if client.last_error else ""
                raise TimeoutError(f"no acknowledgement from {url} within {timeout:g} s{reason}")

    trio.run(publish_once)
