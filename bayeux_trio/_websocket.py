"""One WebSocket connection, after the HTTP upgrade.

The upgrade is answered through wsproto, then the h11 connection and the
request are dropped (they would cost a few KB per idle connection). From then
on one task reads frames; everything the engine sends is written into the
output buffer by the hub, already framed (server frames are unmasked and we
offer no compression, so one frame serves every recipient).

A text message is a JSON message or array, as with Faye. A message that is
not valid Bayeux gets an error reply; a message over the size limit closes the
connection with 1009.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from bayeux_core import BodyError, decode_body

from ._frames import ws_text_frame
from ._hub import Kind
from ._output import Output

if TYPE_CHECKING:
    from ._http import HttpConnection
    from ._server import BayeuxServer

__all__ = ["WebSocketEndpoint", "upgrade"]

log = logging.getLogger("bayeux.server")

_PING = b"\x89\x00"
_BAD_BODY = ws_text_frame(b'[{"successful":false,"error":"400::Bad request"}]')
_READ_SIZE = 65536


async def upgrade(http: HttpConnection, request: h11.Request) -> None:
    """Accept the upgrade on ``http``'s socket and serve the WebSocket."""
    output = http.output
    assert output is not None
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.initiate_upgrade_connection(list(request.headers), request.target)
    except RemoteProtocolError as exc:
        log.debug("refused a WebSocket upgrade: %s", exc)
        data = ws.send(RejectConnection(status_code=400))
        output.write(data)
        http.hub.mark_dirty(output)
        await output.wait_flushed()
        return
    for event in ws.events():
        assert isinstance(event, Request)
    output.write(ws.send(AcceptConnection()))
    http.hub.mark_dirty(output)
    leftover = http.h11.trailing_data[0]
    endpoint = WebSocketEndpoint(http.server, http.stream, ws, output)
    http.output = None  # the socket's output belongs to the WebSocket now
    # The output still calls http._broken when it fails (a reader too far
    # behind is cut off): that cancels this scope, so the socket is closed and
    # the engine queues the client's messages for its next connect.
    with trio.CancelScope() as scope:
        http._hold_scope = scope
        await endpoint.serve(leftover)


class WebSocketEndpoint:
    """The engine's view of one WebSocket: a stream connection."""

    kind = Kind.WEBSOCKET

    __slots__ = ("_parts", "_size", "conn", "output", "server", "stream", "ws")

    def __init__(
        self, server: BayeuxServer, stream: trio.SocketStream, ws: WSConnection, output: Output
    ) -> None:
        self.server = server
        self.stream = stream
        self.ws = ws
        self.output: Output | None = output
        self._parts: list[str] = []
        self._size = 0
        self.conn = server.hub.new_conn(self)

    async def serve(self, leftover: bytes) -> None:
        hub = self.server.hub
        log.debug("WebSocket %d open", self.conn)
        hub.open_stream(self.conn)
        self.server.track_stream(self)
        try:
            if leftover:
                self.ws.receive_data(leftover)
                if not await self._events():
                    return
            while True:
                try:
                    data = await self.stream.receive_some(_READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    return
                self.ws.receive_data(data or None)
                if not await self._events() or not data:
                    return
        finally:
            log.debug("WebSocket %d closed", self.conn)
            self.server.untrack_stream(self)
            self.output = None
            hub.forget(self.conn)

    async def _events(self) -> bool:
        """Handle what wsproto parsed; False once the connection is over.

        Everything one read brought is handled in one hub batch: what the
        engine sends meanwhile is flushed once, at the end, with one send per
        connection (a publisher's burst reaches each subscriber in one write).
        """
        output = self.output
        assert output is not None
        hub = self.server.hub
        # Async extensions may wait: then flush after every message as before,
        # so output never waits on another message's extension.
        batched = not self.server._async_extensions
        with hub.batch():
            for event in self.ws.events():
                if isinstance(event, TextMessage):
                    self._size += len(event.data)
                    if self._size > self.server.config.max_ws_message:
                        self._close(1009, "Message too big")
                        return False
                    self._parts.append(event.data)
                    if event.message_finished:
                        text = "".join(self._parts)
                        self._parts.clear()
                        self._size = 0
                        if not batched:
                            hub.flush()
                        await self._handle(text)
                        if self.output is None or output.broken:
                            return False
                elif isinstance(event, Ping):
                    output.write(self.ws.send(event.response()))
                    hub.mark_dirty(output)
                elif isinstance(event, CloseConnection):
                    if self.ws.state.name not in ("CLOSED", "LOCAL_CLOSING"):
                        output.write(self.ws.send(event.response()))
                    hub.mark_dirty(output)
                    hub.flush()  # everything so far, before waiting on this socket
                    await output.wait_flushed()
                    return False
                elif isinstance(event, BytesMessage):
                    self._close(1003, "Text frames only")
                    return False
        # Pongs and error frames, written outside an engine pass, were sent
        # when the batch ended, with everything else.
        return True

    async def _handle(self, text: str) -> None:
        server = self.server
        messages = decode_body(
            text,
            max_bytes=server.config.max_ws_message,
            max_messages=server.hub.engine.config.max_batch,
        )
        if isinstance(messages, BodyError):
            log.debug("refused a WebSocket message: %s", messages.detail)
            self._write(_BAD_BODY)
            return
        await server.receive(self.conn, messages, None)

    def _write(self, data: bytes) -> bool:
        output = self.output
        if output is None:
            return False
        ok = output.write(data)
        self.server.hub.mark_dirty(output)
        return ok

    def _close(self, code: int, reason: str) -> None:
        # wsproto refuses a second close: then there is nothing more to send.
        with contextlib.suppress(LocalProtocolError):
            self._write(self.ws.send(CloseConnection(code=code, reason=reason)))

    # ------------------------------------------------------------ the hub's

    def reply(self, conn: int, body: bytes) -> bool:
        return self._write(ws_text_frame(body))

    def push(self, frame: bytes) -> None:  # pragma: no cover - we have an output
        raise AssertionError("WebSocket endpoints are written through their output buffer")

    def close_stream(self) -> None:
        """The session ended (disconnect, expiry): close, as Faye does."""
        self._close(1000, "")

    def ping(self) -> None:
        self._write(_PING)
