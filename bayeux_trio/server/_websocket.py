"""One WebSocket connection, after the HTTP upgrade.

The upgrade request is checked here exactly as wsproto's server handshake
checks it, without wsproto's handshake machinery: that re-serializes the
request and parses it again with a second h11 connection, which cost about
4 KB per idle connection and much of the setup CPU. Client frames go through
a :class:`FrameReader`: whole text frames, the shape of every Bayeux message,
are unmasked (one big-integer XOR) and decoded there; anything else goes to
a ``wsproto.connection.Connection``, made only when first needed (1.7 KB an
idle connection does without). ``tests/trio/test_ws_fast_paths.py`` proves on
generated inputs that the handshake, the unmasking and the reader give what
wsproto gives. Only public names of wsproto are used: the frames wsproto sees
(control frames, fragments, frames over 64 KB) are unmasked by its own
decoder, which Faye and browser clients, sending each message as one whole
text frame, hardly ever reach. One task reads the connection (its socket
directly when it is plaintext); everything the engine sends is written into
the output buffer by the hub, already framed (server frames are unmasked and
we offer no compression, so one frame serves every recipient).

A text message is a JSON message or array, as with Faye. A message that is
not valid Bayeux gets an error reply; a message over the size limit closes the
connection with 1009.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable

import trio
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    TextMessage,
)
from wsproto.frame_protocol import XorMaskerSimple
from wsproto.utilities import LocalProtocolError

from bayeux_core.wire import BAD_MESSAGE, HttpRequest, websocket_accept, websocket_messages

from ._context import ServerContext, Upgrade
from ._frames import ws_text_frame
from ._hub import Kind
from ._output import READ_SIZE, Output

__all__ = [
    "FrameReader",
    "HandshakeRefused",
    "WebSocketEndpoint",
    "accept_response",
    "accept_upgrade",
    "open_connection",
]

log = logging.getLogger("bayeux.server")

_PING = b"\x89\x00"
_BAD_BODY = ws_text_frame(BAD_MESSAGE)
#: what wsproto's handshake writes for ``RejectConnection(status_code=400)``
_REFUSED = b"HTTP/1.1 400 \r\ncontent-length: 0\r\n\r\n"
_ACCEPT_HEAD = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: "
)
#: whole text frames up to this size are unmasked with one integer XOR;
#: longer ones with wsproto's translate tables, which win once the payload is
#: large
_INT_XOR_MAX = 8192


class HandshakeRefused(Exception):
    """The upgrade request is not one wsproto would accept (the reason)."""


def accept_response(request: HttpRequest) -> bytes:
    """The 101 response to a WebSocket upgrade request, or HandshakeRefused.

    The binding decides (:func:`bayeux_core.wire.websocket_accept`, the checks
    of wsproto 1.x's server handshake); these are the bytes wsproto would
    write for its answer.
    """
    answer = websocket_accept(request)
    if answer.status != 101:
        raise HandshakeRefused("not an upgrade wsproto would accept")
    return _ACCEPT_HEAD + dict(answer.headers)[b"sec-websocket-accept"] + b"\r\n\r\n"


#: the first byte of a whole text frame (FIN, no RSV bit, opcode 1)
_WHOLE_TEXT = 0x81


class _TooBig:
    """A frame header declared more than the reader's limit."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TOO_BIG"


#: what :meth:`FrameReader.feed` yields for a frame over its limit
TOO_BIG = _TooBig()
#: what :meth:`FrameReader.feed` yields: a whole text message, wsproto's events, TOO_BIG
ReaderEvent = str | Event | _TooBig


class FrameReader:
    """Client bytes to events: wsproto's, with whole text frames done here.

    A whole, masked, unfragmented text frame (the shape of every Bayeux
    message from a browser or Faye client) is unmasked and decoded here and
    comes out as a ``str``; any other frame (control frames, fragments,
    binary, 64-bit lengths, bad UTF-8, anything wsproto would refuse) is
    handed, frame by frame, to a wsproto ``Connection`` made on first need,
    whose events come out as they are. After wsproto reports a close (the
    peer's, or its refusal of a frame), everything goes to wsproto. The
    events are those wsproto alone would give, except that a text message
    split over reads may come out whole (``tests/trio/test_ws_fast_paths.py``).

    Only a frame at most ``hold`` bytes long waits here for its last bytes;
    a longer one streams through wsproto, so a message over the size limit
    is cut off early as before.

    ``limit``: as soon as a frame's header is read, a frame (of any kind)
    declaring more bytes than this, or a fragment taking its message past
    it, yields :data:`TOO_BIG` and parsing stops: a header that declares
    2**62 bytes is refused at once rather than waited for. None: no check.
    """

    __slots__ = (
        "_bypass",
        "_declared",
        "_hold",
        "_in_message",
        "_limit",
        "_pending",
        "_through",
        "_ws",
    )

    def __init__(self, hold: int, limit: int | None = None) -> None:
        self._hold = min(hold, 65535)
        self._limit = limit
        #: bytes the frames of the current fragmented message declared so far
        self._declared = 0
        self._ws: Connection | None = None
        #: bytes of an incomplete frame not yet parsed
        self._pending = b""
        #: bytes of the current frame still to be handed to wsproto
        self._through = 0
        #: wsproto is inside a fragmented message (continuations go to it)
        self._in_message = False
        #: wsproto reported a close: it gets everything from now on
        self._bypass = False

    @property
    def connection(self) -> Connection:
        """The wsproto connection (made now if no frame has needed it yet)."""
        if self._ws is None:
            self._ws = open_connection()
        return self._ws

    @property
    def state(self) -> ConnectionState:
        ws = self._ws
        return ConnectionState.OPEN if ws is None else ws.state

    def send(self, event: Event) -> bytes:
        return self.connection.send(event)

    def feed(self, data: bytes | None) -> list[ReaderEvent]:
        """Parse ``data`` (None: the peer closed the socket); the events."""
        if data is None or self._bypass:
            ws = self.connection
            if self._pending and data is not None:
                data = self._pending + data
            self._pending = b""
            ws.receive_data(data)
            return list(ws.events())
        buf = self._pending + data if self._pending else data
        self._pending = b""
        events: list[ReaderEvent] = []
        at = 0
        end = len(buf)
        while at < end:
            if self._through:
                stop = min(end, at + self._through)
                self._through -= stop - at
                if not self._to_wsproto(buf[at:stop], events):
                    return events
                at = stop
                continue
            if end - at < 2:
                break
            first = buf[at]
            second = buf[at + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                if end - at < 4:
                    break
                length = int.from_bytes(buf[at + 2 : at + 4], "big")
                head = 4
            elif length == 127:
                if end - at < 10:
                    break
                length = int.from_bytes(buf[at + 2 : at + 10], "big")
                head = 10
            if second & 0x80:
                head += 4
            limit = self._limit
            if limit is not None:
                opcode = first & 0x0F
                declared = length + self._declared if opcode == 0 else length
                if declared > limit:
                    events.append(TOO_BIG)
                    self._bypass = True  # nothing more is parsed: we close
                    return events
                if opcode < 8:  # control frames may come between fragments
                    self._declared = 0 if first & 0x80 else declared
            stop = at + head + length
            if (
                first == _WHOLE_TEXT
                and second & 0x80
                and (head == 6 or (head == 8 and length > 125))
                and not self._in_message
                and length <= self._hold
                and (self._ws is None or self._ws.state is ConnectionState.OPEN)
            ):
                if stop > end:
                    break  # wait for the rest of the frame
                text = _unmask_text(buf[at + head - 4 : at + head], buf[at + head : stop])
                if text is not None:
                    events.append(text)
                    at = stop
                    continue
            # wsproto's: note where its messages start and end, then hand it
            # the frame (what has arrived of it).
            if end - at < head:
                break
            opcode = first & 0x0F
            if opcode in (1, 2) and not first & 0x80:
                self._in_message = True
            elif opcode == 0 and first & 0x80:
                self._in_message = False
            self._through = stop - at
        if at < end:
            self._pending = buf[at:]
        return events

    def _to_wsproto(self, data: bytes, events: list[ReaderEvent]) -> bool:
        """Feed wsproto; False once it reported a close (then it gets the rest)."""
        ws = self.connection
        ws.receive_data(data)
        for event in ws.events():
            events.append(event)
            if isinstance(event, CloseConnection):
                self._bypass = True
        return not self._bypass


def _unmask_text(key: bytes, payload: bytes) -> str | None:
    """A client frame's payload unmasked and decoded; None if not UTF-8."""
    size = len(payload)
    data: bytes | bytearray
    if size > _INT_XOR_MAX:
        data = XorMaskerSimple(key).process(bytearray(payload))
    else:
        mask = (key * ((size >> 2) + 1))[:size]
        data = (int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")).to_bytes(
            size, "little"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None  # wsproto refuses it, with its own close code


def open_connection() -> Connection:
    """A server-side wsproto connection, past the handshake, no extensions.

    wsproto's own, untouched. An earlier version swapped in a decoder that
    unmasked with an integer XOR, through wsproto's private attributes; the
    frames that reach wsproto here are rarely on a hot path (see
    :class:`FrameReader`), so it is gone, and with it any tie to wsproto's
    internals.
    """
    return Connection(ConnectionType.SERVER)


async def accept_upgrade(
    server: ServerContext, upgrade: Upgrade, address: str | None
) -> Callable[[], Awaitable[None]] | None:
    """Answer the upgrade on its connection; returns the WebSocket to serve.

    None if the upgrade was refused (the refusal has been sent).
    """
    output = upgrade.output
    try:
        response = accept_response(upgrade.request)
    except HandshakeRefused as exc:
        log.debug("refused a WebSocket upgrade: %s", exc)
        output.write(_REFUSED)
        server.hub.mark_dirty(output)
        await output.wait_flushed()
        return None
    output.write(response)
    server.hub.mark_dirty(output)
    leftover = upgrade.leftover
    limit = server.config.max_ws_message
    reader = FrameReader(limit, limit)
    endpoint = WebSocketEndpoint(server, reader, output)
    endpoint.address = address
    # When the output fails (a reader too far behind is cut off, a send
    # fails) the endpoint's read loop ends at once, so the connection is
    # closed and the engine queues the client's messages for its next
    # connect (Output.wake: no per-connection memory on a plaintext socket).
    output.on_broken = endpoint.wake
    return functools.partial(endpoint.serve, leftover)


class WebSocketEndpoint:
    """The engine's view of one WebSocket: a stream connection."""

    kind = Kind.WEBSOCKET

    __slots__ = (
        "_parts",
        "_size",
        "address",
        "conn",
        "idle",
        "output",
        "server",
        "ws",
    )

    def __init__(self, server: ServerContext, ws: FrameReader, output: Output) -> None:
        self.server = server
        self.ws = ws
        self.output: Output | None = output
        self._parts: list[str] = []
        self._size = 0
        #: the peer's IP address, for the engine's clients-per-address limit
        self.address: str | None = None
        #: idle sweeps since the last read (the server closes it after a few)
        self.idle = 0
        self.conn = server.hub.new_conn(self)

    async def serve(self, leftover: bytes) -> None:
        hub = self.server.hub
        log.debug("WebSocket %d open", self.conn)
        hub.open_stream(self.conn)
        self.server.track_stream(self)
        try:
            if leftover:
                if not await self._events(self.ws.feed(leftover)):
                    return
            transport = self.output
            assert transport is not None
            sock = transport.socket
            if sock is None:
                await self._read_stream(transport)
                return
            # A plaintext socket is read directly rather than through a
            # stream: an idle connection then waits in one coroutine frame
            # fewer than three (trio's stream and socket wrappers), about
            # 1 KB less.
            while True:
                output = self.output
                if output is None or output.broken:
                    return  # it broke while this task was busy: see wake()
                try:
                    await trio.lowlevel.wait_readable(sock)
                    data = sock.recv(READ_SIZE)
                except BlockingIOError:
                    continue  # woken without data after all
                except (trio.ClosedResourceError, OSError):
                    return  # closed by wake(), or reset by the peer
                self.idle = 0
                if not await self._events(self.ws.feed(data or None)) or not data:
                    return
        finally:
            log.debug("WebSocket %d closed", self.conn)
            self.server.untrack_stream(self)
            self.output = None
            hub.forget(self.conn)

    async def _read_stream(self, transport: Output) -> None:
        """The read loop through a trio stream (TLS, memory streams)."""
        while True:
            output = self.output
            if output is None or output.broken:
                return
            try:
                data = await transport.receive()
            except trio.BrokenResourceError:
                return  # ended by wake(), or the connection broke
            self.idle = 0
            if not await self._events(self.ws.feed(data or None)) or not data:
                return

    async def _events(self, events: list[ReaderEvent]) -> bool:
        """Handle what the reader parsed; False once the connection is over.

        Everything one read brought is handled in one hub batch: what the
        engine sends meanwhile is flushed once, at the end, with one send per
        connection (a publisher's burst reaches each subscriber in one write).
        """
        output = self.output
        assert output is not None
        hub = self.server.hub
        # Async extensions may wait: then flush after every message as before,
        # so output never waits on another message's extension.
        batched = self.server.batches_messages
        with hub.batch():
            for event in events:
                if type(event) is str:  # a whole message, from the fast path
                    if len(event) > self.server.config.max_ws_message:
                        self._close(1009, "Message too big")
                        return False
                    if not batched:
                        hub.flush()
                    await self._handle(event)
                    if self.output is None or output.broken:
                        return False
                elif isinstance(event, TextMessage):
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
                    # No pong after our close frame (the session ended):
                    # wsproto refuses to send one (found with fuzz/).
                    if self.ws.state is ConnectionState.OPEN:
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
                elif event is TOO_BIG:
                    self._close(1009, "Message too big")
                    return False
        # Pongs and error frames, written outside an engine pass, were sent
        # when the batch ended, with everything else.
        return True

    async def _handle(self, text: str) -> None:
        if self.ws.state is not ConnectionState.OPEN:
            return  # after our close frame: unanswered, so the client sends it again
        server = self.server
        messages = websocket_messages(text, server.wire)
        if isinstance(messages, bytes):
            log.debug("refused a WebSocket message that is not Bayeux")
            self._write(_BAD_BODY)
            return
        await server.receive(self.conn, messages, None, self.address)

    def wake(self) -> None:
        """The output broke: end the read loop if it is waiting on the connection.

        The connection is closed right after, when the connection task ends.
        """
        output = self.output
        if output is not None:
            output.wake()

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

    def going_away(self) -> None:
        """Server shutdown: close with 1001 after what is already written.

        The connection id is given up at once, so nothing more is framed after
        the close frame; the session keeps its queue for its next connect.
        """
        self._close(1001, "Server shutting down")
        self.server.hub.forget(self.conn)

    def ping(self) -> None:
        self._write(_PING)
