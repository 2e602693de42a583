"""What the server fuzz targets share: the real server, fed over socketpairs.

Not a target itself (``make fuzz`` runs ``fuzz/fuzz_*.py`` only).

Each input runs in a fresh :class:`BayeuxServer` (its hub and engine, not its
listener) under ``trio.run`` with a :class:`trio.testing.MockClock` that only
moves when the input says so, or when the harness waits for a deadline. Every
client connection is a ``socket.socketpair()``: the server side is wrapped in
a ``trio.SocketStream`` and served by :func:`bayeux_trio.server._connection.serve_connection`
exactly as an accepted TCP socket is (its output buffer writes to the stdlib
socket without blocking, which a socketpair supports as it is). No exception
handler is in between, so anything that escapes a connection is a crash.

Input format (so that recorded traffic can be a seed): the bytes are split on
:data:`SEPARATOR`. The first part goes to connection 0; every later part
starts with a control byte and the rest is its payload:

* bits 0-1: which of four client connections sends it (opened on first use,
  and again after it was closed);
* bits 2-3: 1 shuts the client's writing side after the payload (EOF for the
  server), 2 closes the client socket entirely (the server's writes fail);
* bits 4-6: how far the clock moves afterwards (:data:`JUMPS`, in seconds);
* bit 7: the payload is not sent as it is but given to the target's
  ``build`` function first (the WebSocket target builds a frame from it).

After each part the harness waits until every task is blocked and reads what
the server wrote, so chunk boundaries are the ones the input gives.

Before the input, a well-behaved client (long-polling, or WebSocket)
handshakes and subscribes to ``/good/**``; its client id is random, so the
input cannot name it. Every later handshake gets a predictable id
(``000…001``, ``000…002``, …, as :mod:`fuzz_engine` uses), so recorded and
mutated traffic can connect, subscribe and publish for real.

Invariants, each an ``assert`` (or an exception out of the server):

* every byte the server writes on a connection parses with an h11 client
  connection (responses paired with the requests an h11 server saw), with a
  status from :data:`STATUSES`; after a ``101`` every frame parses with
  wsproto's client-side frame parser (unmasked, valid UTF-8 text, a valid
  close code, nothing after a close frame), and only text, ping, pong and
  close frames appear;
* every Bayeux JSON (or JSON-P) body and WebSocket text message is a JSON
  array of objects;
* after the input, every request sent whole on a connection both sides still
  have open gets a response (held connects once their hold runs out), unless
  the connection became a WebSocket or an EventSource stream;
* the well-behaved client's id appears in no other connection's output;
* after all clients' EOF, every server connection task ends within
  :data:`END_WITHIN` virtual seconds, and the hub keeps no endpoint and the
  server tracks no stream except the well-behaved client's;
* the well-behaved client's connects keep succeeding, and a message published
  after the input reaches it.

No exception is expected out of a connection: the server handles closed
sockets itself. The harness reads a few private attributes to do its checks
(the engine's id generator, the hub's endpoints, the server's tracked streams,
wsproto's frame buffer); a rename there shows up as a failing seed replay.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import h11
import orjson
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Ping, Request, TextMessage
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

from bayeux_core import EngineConfig, random_client_id
from bayeux_trio import BayeuxServer, ServerConfig
from bayeux_trio.server._connection import serve_connection

__all__ = [
    "END_WITHIN",
    "JUMPS",
    "SEPARATOR",
    "STATUSES",
    "Outcome",
    "Segment",
    "encode",
    "fuzz_client_id",
    "run",
    "segments",
]

SEPARATOR = b"\xff\xfe"
#: clock moves (seconds) selected by bits 4-6 of a control byte; they reach
#: the header (10 s), hold (25 s) and body (30 s) timeouts.
JUMPS = (0.0, 0.0, 0.0, 0.0, 1.0, 9.0, 11.0, 31.0)
#: at most this many parts of an input are used (bounds the time per input)
MAX_SEGMENTS = 64
CONNECTIONS = 4
#: every status the server may answer with: 100 Continue, 101 for WebSocket,
#: 200, 304 for static files, h11's 400/431/501 and our own refusals
STATUSES = frozenset({100, 101, 200, 304, 400, 403, 404, 405, 408, 413, 431, 501})
#: close codes a server may send (RFC 6455 section 7.4; 1005 means "none")
_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1005, 1007, 1008, 1009, 1010, 1011})
#: virtual seconds a server connection may outlive its client's EOF
END_WITHIN = 60.0
#: virtual seconds the server may take to answer every whole request (a few
#: pipelined connects are each held for 25 s)
ANSWER_WITHIN = 200.0
#: virtual seconds the well-behaved client may take to see the last message
DELIVER_WITHIN = 60.0
MOUNT = "/faye"
GOOD_CHANNEL = "/good/news"

CONFIG = ServerConfig(
    port=0,
    mount=MOUNT,
    # Small limits, so that inputs of a few KB reach the refusals.
    max_body=2048,
    max_ws_message=2048,
    max_header=2048,
    engine=EngineConfig(max_batch=16, max_subscriptions=8, max_queue=64),
)

_JSONP = re.compile(rb"/\*\*/([A-Za-z_$][\w$.]*)\((.*)\);", re.DOTALL)
_READ = 65536

log = logging.getLogger("bayeux.server")


def fuzz_client_id(n: int) -> str:
    """The id of the ``n``-th handshake after the well-behaved client's (from 1)."""
    return f"{n:031d}"


# ------------------------------------------------------------------ input


@dataclass(frozen=True, slots=True)
class Segment:
    """One part of an input: bytes for one connection, then what to do."""

    conn: int
    payload: bytes
    #: 0 nothing, 1 shut the client's writing side, 2 close the client socket
    close: int = 0
    jump: int = 0  # index into JUMPS
    build: bool = False

    def control(self) -> int:
        return self.conn | (self.close << 2) | (self.jump << 4) | (self.build << 7)


def segments(data: bytes) -> list[Segment]:
    parts = data.split(SEPARATOR)
    found = [Segment(0, parts[0])] if parts[0] else []
    for part in parts[1:]:
        if part:
            c = part[0]
            close = (c >> 2) & 3
            found.append(
                Segment(c & 3, part[1:], close if close < 3 else 0, (c >> 4) & 7, bool(c & 0x80))
            )
    return found[:MAX_SEGMENTS]


def encode(parts: list[Segment]) -> bytes:
    """The input that :func:`segments` reads back as ``parts``."""
    out = bytearray()
    for i, part in enumerate(parts):
        if SEPARATOR in part.payload:
            raise ValueError("a payload holds the separator")
        if i or part.control():
            out += SEPARATOR + bytes([part.control()])
        out += part.payload
    return bytes(out)


# --------------------------------------------------------------- checkers


class _Requests:
    """The request heads a client sent, as an h11 server (the server's) sees them.

    Only the method, version and upgrade headers matter: they decide how the
    responses are framed. A dummy empty response moves this h11 to the next
    request; once it is confused, it stops.
    """

    def __init__(self) -> None:
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=CONFIG.max_header)
        self.heads: deque[h11.Request] = deque()
        #: requests sent whole (the server owes each an answer)
        self.complete = 0
        self.dead = False

    def feed(self, data: bytes) -> None:
        if self.dead:
            return
        try:
            self.h11.receive_data(data)
            while not self.dead:
                event = self.h11.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, h11.Request):
                    self.heads.append(event)
                    headers = dict(event.headers)
                    if event.method == b"CONNECT" or b"upgrade" in headers:
                        self.dead = True  # the server hands the socket over, or closes
                elif isinstance(event, h11.EndOfMessage):
                    self.complete += 1
                    self.h11.send(
                        h11.Response(status_code=200, headers=[(b"content-length", b"0")])
                    )
                    self.h11.send(h11.EndOfMessage())
                    if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                        self.h11.start_next_cycle()
                    else:
                        self.dead = True
                elif isinstance(event, h11.ConnectionClosed):
                    self.dead = True
        except h11.ProtocolError:
            self.dead = True


class Checker:
    """Parses what the server writes on one connection; asserts it is valid."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.requests = _Requests()
        self.h11 = h11.Connection(h11.CLIENT)
        self.frames: FrameProtocol | None = None
        self.closed_frame = False
        self.status: int | None = None
        self.content_type = b""
        self.attachment = False
        self.sse = b""
        self.body: list[bytes] = []
        #: statuses seen, in order (tests look at them)
        self.statuses: list[int] = []
        #: final (non-1xx) responses begun
        self.finals = 0
        #: Bayeux messages received (HTTP bodies and WebSocket text frames)
        self.messages: list[Any] = []
        #: close codes of WebSocket close frames received
        self.close_codes: list[int] = []
        self.eof = False

    def sent(self, data: bytes) -> None:
        self.requests.feed(data)

    def received(self, data: bytes, *, client_eof: bool) -> None:
        """Server bytes (``b""``: the server closed)."""
        assert self.secret not in data, "the well-behaved client's id leaked"
        if not data:
            self.eof = True
        if self.frames is not None:
            self._frames(data)
            return
        if self.h11.their_state in (h11.MUST_CLOSE, h11.CLOSED) and data:
            raise AssertionError(f"bytes after a response that closed: {data[:80]!r}")
        try:
            self.h11.receive_data(data)
            self._events()
        except h11.RemoteProtocolError:
            # A response may stop short only because the client went first.
            if not (self.eof and client_eof):
                raise

    def _pair(self) -> None:
        """Send (to our h11) the request the next response answers.

        Its method and upgrade headers decide how the response is framed; an
        HTTP/1.0 request is sent as 1.1 (h11 sends nothing else), which frames
        the server's answer the same way (it says ``Connection: close``).
        """
        head = self.requests.heads.popleft() if self.requests.heads else None
        method = head.method if head is not None else b"GET"
        headers: list[tuple[bytes, bytes]] = [(b"host", b"x")]
        if head is not None:
            headers += [(k, v) for k, v in head.headers if k in (b"connection", b"upgrade")]
        try:
            request = h11.Request(method=method, target=b"/", headers=headers)
        except h11.LocalProtocolError:
            request = h11.Request(method=method, target=b"/", headers=[(b"host", b"x")])
        self.h11.send(request)
        self.h11.send(h11.EndOfMessage())

    def _events(self) -> None:
        conn = self.h11
        while True:
            if conn.our_state is h11.IDLE and (conn.trailing_data[0] or conn.trailing_data[1]):
                if conn.trailing_data[0]:
                    self._pair()
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if conn.their_state is h11.SWITCHED_PROTOCOL:
                    self.frames = FrameProtocol(client=True, extensions=[])
                    self._frames(conn.trailing_data[0])
                return
            if isinstance(event, h11.InformationalResponse):
                assert event.status_code in STATUSES, event
                self.statuses.append(event.status_code)
            elif isinstance(event, h11.Response):
                assert event.status_code in STATUSES, event
                self.statuses.append(event.status_code)
                self.finals += 1
                self.status = event.status_code
                headers = dict(event.headers)
                self.content_type = headers.get(b"content-type", b"")
                # Only Bayeux JSON-P replies are attachments (static .js is not).
                self.attachment = b"content-disposition" in headers
                self.body = []
            elif isinstance(event, h11.Data):
                if self.content_type.startswith(b"text/event-stream"):
                    self._events_stream(bytes(event.data))
                elif sum(map(len, self.body)) < 1 << 20:
                    self.body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._check_body()
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return

    def owes_answers(self) -> bool:
        """True while the server has not begun a response to every request
        this open connection sent whole.

        Not counted: connections the server closed, or that became a
        WebSocket or an EventSource stream (which reads and drops what
        follows), or whose requests an h11 server could not follow.
        """
        if self.eof or self.frames is not None or self.requests.dead:
            return False
        if self.content_type.startswith(b"text/event-stream"):
            return False
        return self.finals < self.requests.complete

    def _events_stream(self, data: bytes) -> None:
        """EventSource events: each ``data:`` line is a Bayeux JSON array."""
        self.sse += data
        *events, self.sse = self.sse.split(b"\r\n\r\n")
        for event in events:
            for line in event.split(b"\r\n"):
                if line.startswith(b"data: "):
                    self.messages += _check_bayeux(line[6:])
                else:
                    # The server's other lines; anything else (a chunk size)
                    # is framing that leaked into the stream.
                    assert line in (b"retry: 5000", b":", b""), line[:80]

    def _check_body(self) -> None:
        if self.status != 200:
            return
        body = b"".join(self.body)
        if self.content_type.startswith(b"application/json"):
            self.messages += _check_bayeux(body)
        elif self.content_type.startswith(b"text/javascript") and self.attachment:
            match = _JSONP.fullmatch(body)
            assert match is not None, body[:200]
            self.messages += _check_bayeux(match.group(2))

    def _frames(self, data: bytes) -> None:
        frames = self.frames
        assert frames is not None
        if not data:
            return
        assert not self.closed_frame, f"bytes after a close frame: {data[:80]!r}"
        frames.receive_bytes(data)
        try:
            for frame in frames.received_frames():
                assert not self.closed_frame, f"a frame after a close frame: {frame}"
                if frame.opcode is Opcode.TEXT:
                    assert frame.message_finished, "the server fragments nothing"
                    assert isinstance(frame.payload, str)
                    self.messages += _check_bayeux(frame.payload.encode())
                elif frame.opcode is Opcode.CLOSE:
                    assert isinstance(frame.payload, tuple)
                    code, _reason = frame.payload
                    assert code in _CLOSE_CODES or 3000 <= code <= 4999, code
                    self.close_codes.append(code)
                    self.closed_frame = True
                    # wsproto stops parsing at a close frame: look at the rest.
                    rest = len(frames._frame_decoder.buffer)
                    assert not rest, f"{rest} bytes after a close frame"
                else:
                    assert frame.opcode in (Opcode.PING, Opcode.PONG), frame.opcode
        except ParseFailed as exc:
            raise AssertionError(f"the server sent a bad frame: {exc}") from exc


def _check_bayeux(body: bytes) -> list[Any]:
    value = orjson.loads(body)
    assert type(value) is list, body[:200]
    for message in value:
        assert type(message) is dict, body[:200]
    return value


# ------------------------------------------------------------ connections


class _ErrorLog(logging.Handler):
    """Turns an error logged by the server (a failed listener...) into a crash."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class _Client:
    sock: socket.socket
    checker: Checker
    #: 0 open, 1 our writing side shut, 2 closed
    state: int = 0
    #: the server's task for this connection has ended
    server_done: bool = False


@dataclass
class Outcome:
    """What one input did (tests look at it)."""

    checkers: list[Checker]
    good_received: list[Any]
    #: how far the mock clock moved during the input
    virtual_seconds: float


class _Harness:
    def __init__(self, clock: trio.testing.MockClock, websocket_good: bool) -> None:
        self.clock = clock
        self.server = BayeuxServer(CONFIG)
        self.secret = random_client_id()
        numbers = iter(range(1, 1 << 62))
        first = [self.secret]

        def new_id() -> str:
            return first.pop() if first else fuzz_client_id(next(numbers))

        # The engine's generator (see bayeux_core.Engine): the first handshake
        # is the well-behaved client's.
        self.server.engine._new_id = new_id
        self.websocket_good = websocket_good
        #: the file descriptors of the well-behaved client's server sockets
        self.good_fds: set[int] = set()
        self.good_received: list[Any] = []
        self.clients: dict[int, _Client] = {}
        self.all_clients: list[_Client] = []
        self.nursery: trio.Nursery | None = None

    # -------------------------------------------------------------- plumbing

    def _serve(self, server_sock: socket.socket, client: _Client | None) -> None:
        """Serve the server end of a socketpair as an accepted connection."""
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(server_sock))
        server = self.server

        async def serve() -> None:
            # serve_connection owns the stream (the socket) and closes it.
            try:
                await serve_connection(server, stream)
            finally:
                if client is not None:
                    client.server_done = True

        assert self.nursery is not None
        self.nursery.start_soon(serve)

    def open(self, index: int, prelude: bytes) -> _Client:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        client = _Client(ours, Checker(self.secret))
        self._serve(theirs, client)
        self.clients[index] = client
        self.all_clients.append(client)
        if prelude:
            self.send(client, prelude)
        return client

    def send(self, client: _Client, payload: bytes) -> None:
        if client.state or not payload:
            return
        client.checker.sent(payload)
        try:
            client.sock.sendall(payload)
        except OSError:
            # The server closed, or (for a huge input) its buffer is full:
            # what it did not take is lost, as on a network.
            client.state = 2

    def close(self, client: _Client, how: int) -> None:
        if client.state >= how:
            return
        if how == 1:
            with contextlib.suppress(OSError):
                client.sock.shutdown(socket.SHUT_WR)
        else:
            client.sock.close()
        client.state = how

    def drain(self) -> bool:
        """Read what the server wrote to every fuzz client; True if anything."""
        got = False
        for client in self.all_clients:
            if client.state == 2 or client.checker.eof:
                continue
            for _ in range(64):
                try:
                    data = client.sock.recv(_READ)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                got = True
                client.checker.received(data, client_eof=client.state == 1)
                if not data:
                    break
        return got

    async def settle(self) -> None:
        """Wait until nothing can run, reading the server's output meanwhile."""
        for _ in range(1000):
            await trio.testing.wait_all_tasks_blocked()
            if not self.drain():
                return
        raise AssertionError("the server never went quiet")

    async def wait_until(self, done: Callable[[], bool], within: float, what: str) -> None:
        """Let virtual time run (deadline to deadline) until ``done()``."""
        start = trio.current_time()
        while True:
            await self.settle()
            if done():
                return
            ahead = trio.lowlevel.current_statistics().seconds_to_next_deadline
            if trio.current_time() + ahead - start > within:
                raise AssertionError(f"{what} (after {within} virtual seconds)")
            self.clock.jump(max(ahead, 0.0))

    # ------------------------------------------------------------ good client

    async def good_client(self, *, task_status: trio.TaskStatus[None]) -> None:
        ours, theirs = socket.socketpair()
        self.good_fds.add(theirs.fileno())  # the server's socket keeps the number
        self._serve(theirs, None)
        client = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        try:
            if self.websocket_good:
                await _good_websocket(client, self, task_status)
            else:
                await _good_long_polling(client, self, task_status)
        finally:
            client.socket.close()

    def good_message(self, messages: list[Any]) -> None:
        for message in messages:
            channel = message.get("channel")
            if channel == GOOD_CHANNEL:
                self.good_received.append(message.get("data"))
            elif channel == "/meta/connect":
                assert message.get("successful") is True, ("well-behaved connect failed", message)

    # ------------------------------------------------------------------ run

    async def run(
        self, parts: list[Segment], prelude: Callable[[int], bytes], build: Callable[[bytes], bytes]
    ) -> Outcome:
        errors = _ErrorLog()
        log.addHandler(errors)
        start = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                await nursery.start(self.server.hub.run)
                await nursery.start(self.good_client)
                await self.settle()
                for part in parts:
                    client = self.clients.get(part.conn)
                    if client is None or client.state:
                        first = prelude(part.conn)
                        client = self.open(part.conn, first)
                        if first:
                            await self.settle()
                    self.send(client, build(part.payload) if part.build else part.payload)
                    await self.settle()
                    if part.close:
                        self.close(client, part.close)
                        await self.settle()
                    if JUMPS[part.jump]:
                        self.clock.jump(JUMPS[part.jump])
                        await self.settle()
                # Every request sent whole on a connection still open gets its
                # answer, held connects included once their hold has run out.
                await self.wait_until(
                    lambda: (
                        not any(c.checker.owes_answers() for c in self.all_clients if not c.state)
                    ),
                    ANSWER_WITHIN,
                    "a request got no response",
                )
                for client in self.all_clients:
                    self.close(client, 1)
                await self.wait_until(
                    lambda: all(c.server_done for c in self.all_clients),
                    END_WITHIN,
                    "a server connection outlived its client",
                )
                self._check_no_leaks()
                marker = {"n": len(parts)}
                self.server.publish(GOOD_CHANNEL, marker)
                await self.wait_until(
                    lambda: marker in self.good_received,
                    DELIVER_WITHIN,
                    "the well-behaved client lost a message",
                )
                nursery.cancel_scope.cancel()
        finally:
            log.removeHandler(errors)
            for client in self.all_clients:
                client.sock.close()
        assert not errors.records, [r.getMessage() for r in errors.records]
        return Outcome(
            [c.checker for c in self.all_clients], self.good_received, trio.current_time() - start
        )

    def _check_no_leaks(self) -> None:
        hub = self.server.hub
        for endpoint in hub._endpoints.values():
            assert _fd_of(endpoint) in self.good_fds, endpoint
        for stream in self.server._streams:
            assert _fd_of(stream) in self.good_fds, stream


def _fd_of(endpoint: object) -> int | None:
    """The file descriptor of a connection's socket (None: closed, or none)."""
    sock = getattr(getattr(endpoint, "output", None), "socket", None)
    if not isinstance(sock, socket.socket) or sock.fileno() < 0:
        return None
    return sock.fileno()


# ------------------------------------------------------------ good clients


async def _http_exchange(
    stream: trio.SocketStream, conn: h11.Connection, messages: list[Any]
) -> list[Any]:
    body = orjson.dumps(messages)
    head = h11.Request(
        method="POST",
        target=MOUNT,
        headers=[
            ("host", "good"),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
        ],
    )
    await stream.send_all(
        (conn.send(head) or b"")
        + (conn.send(h11.Data(data=body)) or b"")
        + (conn.send(h11.EndOfMessage()) or b"")
    )
    parts: list[bytes] = []
    status = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(_READ))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            parts.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            break
        else:
            raise AssertionError(f"well-behaved client got {event!r}")
    assert status == 200, (status, parts)
    conn.start_next_cycle()
    replies: list[Any] = orjson.loads(b"".join(parts))
    return replies


async def _good_long_polling(
    stream: trio.SocketStream, harness: _Harness, task_status: trio.TaskStatus[None]
) -> None:
    conn = h11.Connection(h11.CLIENT)
    # The harness knows the id the handshake will get: one request does all.
    client_id = harness.secret
    handshake = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
    }
    subscribe = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/good/**"}
    connect = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}
    replies = await _http_exchange(stream, conn, [handshake, subscribe, connect])
    assert [r.get("successful") for r in replies] == [True, True, True], replies
    assert replies[0]["clientId"] == client_id, replies
    task_status.started()
    while True:
        harness.good_message(await _http_exchange(stream, conn, [connect]))


async def _good_websocket(
    stream: trio.SocketStream, harness: _Harness, task_status: trio.TaskStatus[None]
) -> None:
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host="good", target=MOUNT)))

    async def batches() -> AsyncIterator[list[Any]]:
        while True:
            for event in ws.events():
                if isinstance(event, TextMessage):
                    yield orjson.loads(event.data)
                elif isinstance(event, Ping):
                    await stream.send_all(ws.send(event.response()))
                elif not isinstance(event, AcceptConnection):
                    raise AssertionError(f"well-behaved WebSocket got {event!r}")
            ws.receive_data(await stream.receive_some(_READ))

    async def send(*messages: dict[str, Any]) -> None:
        await stream.send_all(ws.send(TextMessage(data=orjson.dumps(messages).decode())))

    incoming = batches()
    client_id = harness.secret
    handshake = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["websocket"],
    }
    subscribe = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/good/**"}
    connect = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"}
    # The first text message waits for the upgrade's answer (wsproto's rule).
    while ws.state.name != "OPEN":
        ws.receive_data(await stream.receive_some(_READ))
        for event in ws.events():
            assert isinstance(event, AcceptConnection), event
    await send(handshake, subscribe, connect)
    replies = await anext(incoming)
    assert [r.get("successful") for r in replies] == [True, True, True], replies
    assert replies[0]["clientId"] == client_id, replies
    task_status.started()
    await send(connect)
    async for batch in incoming:
        harness.good_message(batch)
        if any(m.get("channel") == "/meta/connect" for m in batch):
            await send(connect)


# ----------------------------------------------------------------- entry


@contextlib.contextmanager
def _inline_threads() -> Iterator[None]:
    """Static files are read in a worker thread; here, inline.

    A thread runs outside the run loop, so "every task is blocked" would not
    mean "the server is done" and the mock clock could jump under it.
    """
    original = trio.to_thread.run_sync

    async def run_sync(fn: Callable[..., Any], *args: Any, **_: Any) -> Any:
        await trio.lowlevel.checkpoint()
        return fn(*args)

    trio.to_thread.run_sync = run_sync  # type: ignore[assignment]
    try:
        yield
    finally:
        trio.to_thread.run_sync = original


class _Loop:
    """One trio run loop in a thread, kept for the whole fuzzing session.

    ``trio.run`` costs more than half a millisecond to set up and tear down;
    a fuzzer pays it once this way. Each input still gets a fresh server and
    its own nursery, cancelled at its end, so nothing carries over but the
    (mock) time of day.
    """

    def __init__(self) -> None:
        self.clock = trio.testing.MockClock()
        started = threading.Event()
        self.token: trio.lowlevel.TrioToken | None = None

        async def main() -> None:
            self.token = trio.lowlevel.current_trio_token()
            started.set()
            await trio.sleep_forever()

        self._context = _inline_threads()
        self._context.__enter__()
        thread = threading.Thread(
            target=trio.run, args=(main,), kwargs={"clock": self.clock}, daemon=True
        )
        thread.start()
        started.wait()


_loop: _Loop | None = None


def keep_loop() -> None:
    """Run every later input in one long-lived trio loop (for the fuzzer)."""
    global _loop  # noqa: PLW0603  (one loop per process)
    if _loop is None:
        _loop = _Loop()


def _no_prelude(_: int) -> bytes:
    return b""


def _as_is(payload: bytes) -> bytes:
    return payload


def run(
    data: bytes,
    *,
    websocket_good: bool,
    prelude: Callable[[int], bytes] = _no_prelude,
    build: Callable[[bytes], bytes] = _as_is,
) -> Outcome:
    """Run one input.

    ``prelude(conn)`` is sent first on each new connection (and checked like
    the rest); ``build`` turns the payload of a part with control bit 7 into
    the bytes to send.
    """
    parts = segments(data)
    if _loop is not None:
        harness = _Harness(_loop.clock, websocket_good)
        return trio.from_thread.run(harness.run, parts, prelude, build, trio_token=_loop.token)
    clock = trio.testing.MockClock()
    harness = _Harness(clock, websocket_good)
    with _inline_threads():
        result: Outcome = trio.run(harness.run, parts, prelude, build, clock=clock)
    return result
