"""An in-process client, like Faye's ``server.getClient()``.

It is a real Bayeux client of the server's engine: its messages go through the
server's extensions (with ``request=None``) and it has a session and
subscriptions like any other client, but nothing crosses a socket. Its
connection is a stream, so deliveries arrive as soon as they are routed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import trio

from bayeux_core import BayeuxError, Message, matches

from ._hub import Kind
from ._output import Output

if TYPE_CHECKING:
    from ._server import BayeuxServer

__all__ = ["LocalClient", "PublishError"]

log = logging.getLogger("bayeux.server")

Callback = Callable[[str, Any], None]


class PublishError(BayeuxError):
    """The server refused a message; ``error`` is its error string."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class LocalClient:
    """A client of the server it lives in. Get one with ``server.get_client()``."""

    kind = Kind.LOCAL
    output: Output | None = None

    def __init__(self, server: BayeuxServer) -> None:
        self._server = server
        self._conn = server.hub.new_conn(self)
        server.hub.open_stream(self._conn)
        self._client_id: str | None = None
        self._next_id = 0
        self._waiting: dict[str, trio.Event] = {}
        self._replies: dict[str, Message] = {}
        self._callbacks: dict[str, list[Callback]] = {}
        self._closed = False

    @property
    def client_id(self) -> str | None:
        return self._client_id

    async def publish(self, channel: str, data: Any, *, ext: Any = None) -> None:
        """Publish through the server's extensions; raises PublishError if refused."""
        message: Message = {"channel": channel, "data": data}
        if ext is not None:
            message["ext"] = ext
        await self._request(message)

    async def subscribe(self, channel: str, callback: Callback) -> None:
        """Call ``callback(channel, data)`` for each message matching ``channel``."""
        first = channel not in self._callbacks
        self._callbacks.setdefault(channel, []).append(callback)
        if first:
            try:
                await self._request({"channel": "/meta/subscribe", "subscription": channel})
            except BaseException:
                self._callbacks.pop(channel, None)
                raise

    async def unsubscribe(self, channel: str, callback: Callback | None = None) -> None:
        """Remove ``callback`` (or every callback) from ``channel``."""
        callbacks = self._callbacks.get(channel)
        if callbacks is None:
            return
        if callback is not None and callback in callbacks:
            callbacks.remove(callback)
        if callback is None or not callbacks:
            del self._callbacks[channel]
            await self._request({"channel": "/meta/unsubscribe", "subscription": channel})

    async def disconnect(self) -> None:
        """End the session."""
        if self._client_id is not None and not self._closed:
            self._closed = True
            await self._request({"channel": "/meta/disconnect"})
        self._server.hub.forget(self._conn)

    # ------------------------------------------------------------- internals

    async def _ensure_session(self) -> None:
        if self._client_id is not None:
            return
        reply = await self._send(
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["in-process"],
            }
        )
        if reply.get("successful") is not True:
            raise PublishError(str(reply.get("error")))
        self._client_id = str(reply["clientId"])
        await self._send_connect()
        for channel in self._callbacks:
            await self._send(
                {"channel": "/meta/subscribe", "subscription": channel, "clientId": self._client_id}
            )

    async def _request(self, message: Message) -> Message:
        if self._closed:
            raise PublishError("the client is disconnected")
        await self._ensure_session()
        message["clientId"] = self._client_id
        reply = await self._send(message)
        if reply.get("successful") is not True:
            raise PublishError(str(reply.get("error")))
        return reply

    async def _send(self, message: Message) -> Message:
        self._next_id += 1
        message_id = format(self._next_id, "x")
        message["id"] = message_id
        done = self._waiting[message_id] = trio.Event()
        await self._server.receive(self._conn, [message], None)
        await done.wait()
        return self._replies.pop(message_id)

    async def _send_connect(self) -> None:
        if self._closed or self._client_id is None:
            return
        message = {
            "channel": "/meta/connect",
            "clientId": self._client_id,
            "connectionType": "in-process",
        }
        await self._server.receive(self._conn, [message], None)

    async def _rehandshake(self) -> None:
        self._client_id = None
        await self._ensure_session()

    # ------------------------------------------------------ the hub's calls

    def reply(self, conn: int, body: bytes) -> bool:
        for message in orjson.loads(body):
            self._handle(message)
        return True

    def push(self, frame: bytes) -> None:
        for message in orjson.loads(frame):
            self._handle(message)

    def close_stream(self) -> None:
        self._client_id = None

    def _handle(self, message: Message) -> None:
        if "successful" not in message:
            self._dispatch(message)
            return
        if message.get("channel") == "/meta/connect":
            start = self._server.hub.start_soon
            if message.get("successful") is True:
                start(self._send_connect)
            elif not self._closed:
                start(self._rehandshake)
            return
        message_id = message.get("id")
        event = self._waiting.pop(str(message_id), None)
        if event is not None:
            self._replies[str(message_id)] = message
            event.set()

    def _dispatch(self, message: Message) -> None:
        channel = message.get("channel")
        if type(channel) is not str or "data" not in message:
            return
        for pattern, callbacks in list(self._callbacks.items()):
            if matches(pattern, channel):
                for callback in list(callbacks):
                    try:
                        callback(channel, message["data"])
                    except Exception:
                        log.exception("local client callback %r failed", callback)
