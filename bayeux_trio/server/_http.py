"""One HTTP/1.1 connection: parse with h11, let the binding route it, answer.

What a request under the mount is, how its messages are carried and how the
answer is shaped are Faye's wire rules, and they live in
:mod:`bayeux_core.wire`: this module reads and writes bytes. Outside the
mount it serves the health check, the admin API and metrics, and the files of
``--static`` (else 404).

A Bayeux request gets a fresh engine connection id. When the engine holds
its ``/meta/connect``, the task keeps reading the socket so that a client that
goes away is noticed (the engine then keeps its messages for the next
connect); the hub writes the response straight into the output buffer when
the reply comes, and wakes this task to read the next request.

Bytes come and go through the connection's :class:`~._output.Output`: on a
plaintext connection this task reads its socket directly (the fast path),
waiting on the hub's :class:`~._reads.ReadPoller`, which answers a
kept-alive connection's next plain request in the task's place when nothing
in it can wait (``_serve_inline``); otherwise (TLS, memory streams) it awaits
``Output.receive``. A request the poller handed to the engine whose reply
comes later (a publish waiting for Redis, a held connect) is left *pending*:
the task sleeps on, the reply finishes the request (``reply``), and bytes
that arrive first wake the task, which holds them until the reply is out.
"""

from __future__ import annotations

import http
import logging
import math
import socket
from collections.abc import Coroutine, Generator, Sequence
from typing import Any

import h11
import trio

from bayeux_core import Message
from bayeux_core.wire import (
    BAD_REQUEST,
    EVENT_PING,
    Answer,
    BayeuxRequest,
    ClientScript,
    EventStream,
    HttpRequest,
    HttpResponse,
    NotMounted,
    ReplyShape,
    Route,
    classify,
    cors_headers,
    decode_request,
    event_bytes,
    jsonp_wrap,
    reply_response,
    stream_head,
)

from ._context import ServerContext, Upgrade
from ._frames import chunk
from ._http_fast import FastParser, may_complete
from ._hub import Hub, Kind
from ._output import Output
from ._static import StaticFile, StaticFiles

__all__ = ["HttpConnection", "reply_head"]

log = logging.getLogger("bayeux.server")

_READ_SIZE = 65536
#: A closing connection's input is discarded for this long at most, this
#: long between reads, and up to this many bytes (nginx's lingering close), so
#: that a client still sending a body we refused reads our 413, not a reset.
_LINGER_TIME = 10.0
_LINGER_IDLE = 2.0
_LINGER_BYTES = 64 * 1024 * 1024
_REASONS = {status.value: status.phrase.encode() for status in http.HTTPStatus}
# A Bayeux 200 is written from these bytes rather than through h11.send, whose
# header validation and framing cost more than the rest of the reply. h11
# still sees the response (a constant one, with the same framing and no
# Connection header) so that its state moves exactly as for the real one.
_REPLY_STATE = h11.Response(status_code=200, headers=[(b"content-length", b"0")], reason=b"OK")
_END = h11.EndOfMessage()
#: the headers of a Bayeux 200 up to its length, rendered once from the binding
_REPLY_HEAD = {
    jsonp: b"HTTP/1.1 200 OK\r\n"
    + b"".join(
        name + b": " + value + b"\r\n"
        for name, value in reply_response(ReplyShape("f" if jsonp else None), b"").headers
    )
    for jsonp in (False, True)
}
_NO_REPLY_SHAPE = ReplyShape()
_NO_ROUTE = Route()


class _Closed(Exception):
    """The peer went away, or we must stop reading this connection."""


class _TooLarge(Exception):
    """The request body is over ``max_body``."""


class _Served(_Closed):
    """The hub's poller dispatched a request of this connection in place
    (``_serve_inline``), and its reply is not out yet: the task takes over.

    Only a head wait can meet it (``_requests`` goes on from the dispatch);
    anywhere else it ends the connection, as a ``_Closed``."""


class HttpConnection:
    """Serves one accepted connection until it closes or becomes a WebSocket."""

    kind = Kind.HTTP

    def __init__(self, server: ServerContext, output: Output) -> None:
        self.server = server
        self.hub: Hub = server.hub
        self.config = server.config
        #: the peer's IP address, set by the server when the engine limits
        #: clients per address (else None: not counted)
        self.address: str | None = None
        #: the connection's transport (see ``_output``); it passes to the
        #: WebSocket on an upgrade
        self.output: Output | None = output
        output.on_broken = self._broken
        #: the plaintext socket, read directly; None: read through the output
        self._sock: socket.socket | None = output.socket
        #: the last read took all the socket held (see ReadPoller.wait)
        self._drained = True
        #: what _serve_inline leaves the task: the bytes it read, or the
        #: exception it met
        self._handed: bytes | BaseException | None = None
        #: _serve_inline handed a request to the engine and its reply has not
        #: come: the task sleeps in _read_head's wait, and no head is due
        self._pending = False
        #: made when first needed (``h11_state``): a WebSocket handshake the fast
        #: path takes never needs one
        self._h11: h11.Connection | None = None
        #: engine connection id of the request waiting for its reply
        self._waiting: int | None = None
        #: how the waiting request's reply is shaped (JSON-P, CORS)
        self._shape = _NO_REPLY_SHAPE
        self._hold_scope: trio.CancelScope | None = None
        self._eventsource: int | None = None
        #: the current request is a HEAD: responses carry headers only
        self._head = False
        #: bytes of the current request's body read so far
        self._body_size = 0
        # The fast path (._http_fast). While h11 is between requests with an
        # empty buffer, input collects in _input; a request parse() takes is
        # answered without h11 ever seeing it, which leaves h11 in the very
        # state it would reach again after that request. Anything else goes
        # to h11 (_sync_h11) before h11 is used.
        self._fast_ok = True
        self._parser = FastParser(self.config.max_header, self.config.max_body)
        self._input = b""
        #: the current request's bytes, when the fast path took it
        self._fast: bytes | None = None
        self._fast_body = b""
        self._fast_close = False
        #: the fast path took the request as a protocol upgrade
        self._fast_upgrade = False
        self._fast_replied = False
        #: carries the deadline of the head being read (see _serve)
        self._reads = trio.CancelScope()
        #: the deadline given to ``_reads`` (read back without trio's property)
        self._armed = math.inf
        #: when the head being awaited is due; ``_armed`` may be earlier (_read_head)
        self._due = math.inf
        #: bytes of the head being read have arrived
        self._head_started = False
        #: _serve resumed a head wait whose earlier deadline passed (_read_head)
        self._resumed = False
        #: the WebSocket upgrade asked for, handed back by serve()
        self._upgrade: Upgrade | None = None
        #: the last request classified, and its route (see _route_of)
        self._routed: HttpRequest | None = None
        self._route: Route = _NO_ROUTE

    @property
    def h11_state(self) -> h11.Connection:
        """The connection's h11 state machine, the parser of record."""
        state = self._h11
        if state is None:
            state = self._h11 = h11.Connection(
                h11.SERVER, max_incomplete_event_size=self.config.max_header
            )
        return state

    # ------------------------------------------------------------- main loop

    async def serve(self) -> Upgrade | None:
        """Serve HTTP requests; returns the WebSocket upgrade if one was asked for.

        The caller answers and serves it once this connection is dropped (see
        ``_connection.serve_connection``), so an idle WebSocket does not keep
        the h11 state, the parser and the request alive.
        """
        try:
            await self._serve()
        except _Closed:
            pass
        except h11.RemoteProtocolError as exc:
            await self._bad_http(exc)
        finally:
            if self._sock is not None:
                # before the socket is closed, or read by a WebSocket
                self.hub.reads.forget(self._sock)
            if self._waiting is not None:
                self.hub.forget(self._waiting)
                self._waiting = None
            if self._eventsource is not None:
                self.hub.forget(self._eventsource)
                self._eventsource = None
        upgrade, self._upgrade = self._upgrade, None
        return upgrade

    async def _serve(self) -> None:
        # One cancel scope carries every head's deadline: moving a deadline
        # costs less than a scope per request. The deadline is infinite except
        # while a head is awaited, so it cancels nothing else. An idle wait
        # may leave an earlier deadline in place (see _read_head): when that
        # one passes before the head is due, a new scope takes over and the
        # wait goes on where it was.
        while True:
            with self._reads:
                await self._requests()
            if not self._reads.cancelled_caught:
                return
            if trio.current_time() >= self._due:
                break
            # Only a head wait can be cancelled: it resumes from what is
            # buffered (or, pending, goes on waiting for the reply).
            if self._fast is not None and not self._pending:
                self._input = self._fast + self._input
                self._fast = None
            self._reads = trio.CancelScope()
            self._arm(self._due)
            self._resumed = True
        if self._fast_ok:
            # h11 answers the timeout on what arrived
            self._to_h11((self._fast or b"") + self._input)
            self._fast = None
        if self._head_started:
            log.debug("closing a connection whose request head did not arrive in time")
            self._respond_simple(408, b"Request timeout", close=True)
            await self._finish()

    async def _requests(self) -> None:
        while True:
            try:
                request = await self._read_head()
            except _Served:
                upgraded = False  # dispatched by _serve_inline: on from there
            else:
                if request is None:
                    return
                if self._fast is None:
                    body = await self._read_body(request)
                    upgraded = await self._dispatch(request, body)
                elif self._dispatch_now(request):
                    upgraded = False
                else:
                    upgraded = await self._dispatch_fast(request)
            if upgraded:
                return
            # Responses written outside an engine pass (400s, preflights,
            # static files) are sent now; engine replies were sent by the hub.
            self.hub.flush()
            if self._waiting is not None:
                await self._hold()
            if self._fast is not None and not self._pending:
                if not self._fast_replied:
                    self._sync_h11()  # let h11 judge what the request left
                else:
                    self._fast = None
                    if self._fast_close or self.server.closing:
                        await self._finish()
                        return
                    continue
            if (
                self.h11_state.our_state is h11.MUST_CLOSE
                or self.h11_state.their_state is h11.MUST_CLOSE
            ):
                await self._finish()
                return
            if self.h11_state.our_state is not h11.DONE:
                # a streaming response (EventSource) ended: the connection is spent
                return
            if self.server.closing:
                await self._finish()  # shutting down: no next request here
                return
            self.h11_state.start_next_cycle()
            data, closed = self.h11_state.trailing_data
            self._fast_ok = not data and not closed

    async def _read_head(self) -> HttpRequest | None:
        """The next request head, or None on a clean close between requests.

        An idle kept-alive connection may wait ``idle_timeout`` for its next
        request; once a request has begun, its whole head must arrive within
        ``header_timeout`` (slow-header attacks cost us one idle task, no more).
        """
        config = self.config
        fast = self._fast_ok
        data = self._input if fast else self.h11_state.trailing_data[0]
        started = self._head_started = bool(data)
        reads = self._reads
        if self._resumed:
            self._resumed = False  # _serve armed the deadline of this very wait
        elif started or not fast:
            self._arm(
                trio.current_time() + (config.header_timeout if started else config.idle_timeout)
            )
        else:
            self._due_idle()
        # h11 checks max_header only against a head it has not completed; a
        # whole head that arrived in one read is measured here.
        unparsed = len(data)
        self._head = False
        while fast:
            if data:
                taken = self._parser.parse(data)
                if taken is not None:
                    size = taken.size
                    self._input = data[size:]
                    self._fast = data[:size]
                    self._fast_body = taken.body
                    self._fast_close = taken.close
                    self._fast_upgrade = taken.upgrade
                    self._fast_replied = False
                    # The deadline stays armed: see _dispatch_fast.
                    if reads.cancel_called:
                        await trio.lowlevel.checkpoint()  # late: it passed first
                    return taken.request
                if not may_complete(data, config.max_header):
                    break
                if not started:
                    started = self._head_started = True
                    self._arm(trio.current_time() + config.header_timeout)
                self._input = data  # for the timeout's answer
            more = await self._receive(not data)
            if not more:
                if not data:
                    return None  # closed between requests, as h11 reports it
                self._to_h11(data)
                self.h11_state.receive_data(b"")
                break
            data += more
        if fast:
            unparsed = len(data)
            if self._fast_ok:
                self._to_h11(data)
            if self._armed != self._due:
                # h11 takes over with the due deadline, before it consumes
                # anything a resumed wait would need again.
                if reads.cancel_called:
                    await trio.lowlevel.checkpoint()
                self._arm(self._due)
        while True:
            event = self.h11_state.next_event()
            if event is h11.NEED_DATA:
                data = await self._receive()
                unparsed += len(data)
                if data and not started:
                    started = self._head_started = True
                    self._arm(trio.current_time() + config.header_timeout)
                self.h11_state.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                self._head = event.method == b"HEAD"
                if unparsed - len(self.h11_state.trailing_data[0]) > config.max_header:
                    raise h11.RemoteProtocolError("head too large", error_status_hint=431)
                await self._head_read()
                # What the fast path makes: header names lower-case, as
                # iterating h11's headers gives them.
                headers = list(event.headers)
                return HttpRequest(event.method, event.target, headers, event.http_version)
            if isinstance(event, h11.ConnectionClosed):
                return None
            raise _Closed  # PAUSED, or an event that cannot start a request

    async def _head_read(self) -> None:
        """A whole head is in: its deadline no longer applies."""
        reads = self._reads
        self._armed = reads.deadline = math.inf
        if reads.cancel_called:
            # The deadline passed before this task ran again: it is late.
            await trio.lowlevel.checkpoint()

    def _dispatch_now(self, request: HttpRequest) -> bool:
        """:meth:`_dispatch` of a fast-path Bayeux request, when nothing in it
        can wait (no async extension, no bus); False, having done nothing,
        otherwise. The common publish is answered without a coroutine."""
        route = self._route_of(request)
        if type(route) is not BayeuxRequest or not self.server.receives_at_once:
            return False
        body = self._fast_body
        messages = decode_request(route, body, self.server.wire)
        if isinstance(messages, HttpResponse):
            self._fast_body = b""
            log.debug("refused a Bayeux request: %d", messages.status)
            self._respond(messages)
            return True
        if not self.server.at_once(messages):
            return False  # (a connect on Redis: its session is claimed first)
        self._fast_body = b""
        self._receive_now(route, messages, request)
        return True

    def _receive_now(
        self, route: BayeuxRequest, messages: Sequence[Message], request: HttpRequest
    ) -> None:
        """Hand a Bayeux request's messages to the engine, without waiting."""
        self._shape = route.shape
        conn = self.hub.new_conn(self)
        self._waiting = conn
        self.server.receive_at_once(conn, messages, request, self.address)

    def _route_of(self, request: HttpRequest) -> Route:
        """``classify(request)``, remembered for a repeated head: the fast
        path hands back the same request for the same head bytes."""
        if request is self._routed:
            return self._route
        route = classify(request, self.server.wire)
        self._routed = request
        self._route = route
        return route

    async def _dispatch_fast(self, request: HttpRequest) -> bool:
        """:meth:`_dispatch` for a request the fast path took.

        Moving a deadline costs about as much as the rest of reading the
        request, so the head's deadline is cleared only if the dispatch
        suspends: its first step runs here, and a deadline cannot fire while
        this task runs. A dispatch that suspends (extensions, Redis, static
        files, streams) finds no deadline when it first yields to trio.
        """
        body = self._fast_body
        self._fast_body = b""
        dispatch = self._dispatch(request, body)
        try:
            trap = dispatch.send(None)
        except StopIteration as done:
            upgraded: bool = done.value
            return upgraded
        self._disarm()
        return await _Resumed(dispatch, trap)

    def _disarm(self) -> None:
        """No head deadline applies until the next head is awaited."""
        self._armed = self._reads.deadline = math.inf

    def _arm(self, deadline: float) -> None:
        """The head being awaited is due at ``deadline``."""
        self._due = self._armed = self._reads.deadline = deadline

    def _due_idle(self) -> None:
        """The next head, between fast requests, is due after ``idle_timeout``.

        Moving the deadline later each time would cost more than the rest of
        reading a request: an earlier one armed for a previous wait stays,
        and if it passes first, _serve resumes the wait under the due one.
        """
        due = self._due = trio.current_time() + self.config.idle_timeout
        if due < self._armed:
            self._arm(due)

    def _to_h11(self, data: bytes) -> None:
        """Hand the buffered input to h11, which parses from here on."""
        self._fast_ok = False
        self._input = b""
        self.h11_state.receive_data(data)

    def _sync_h11(self) -> None:
        """Let h11 see the request the fast path took, and what followed it.

        The differential tests hold parse() to h11's events, so h11 reaches
        the state it would have had with the request read through it.
        """
        raw = self._fast
        if raw is None:
            return
        self._fast = None
        state = self.h11_state
        self._to_h11(raw + self._input)
        event = state.next_event()
        assert isinstance(event, h11.Request), event
        event = state.next_event()
        while isinstance(event, h11.Data):
            event = state.next_event()
        assert isinstance(event, h11.EndOfMessage), event
        if self._fast_replied:
            state.send(_REPLY_STATE)
            state.send(_END)

    async def _read_body(self, request: HttpRequest) -> bytes:
        limit = self.config.max_body
        parts: list[bytes] = []
        framings = 0
        for name, value in request.headers:
            if name == b"content-length":
                framings |= 1
                if int(value) > limit:
                    # Refuse at once rather than read (or wait for) what we refuse.
                    self._respond_simple(413, b"Request entity too large", close=True)
                    await self._finish()
                    raise _Closed
            elif name == b"transfer-encoding":
                framings |= 2
        if framings == 3:
            # Both framings: a proxy that trusts the other one sees another
            # request boundary (smuggling). RFC 9112 6.1 allows refusing it.
            self._respond_simple(400, b"Bad request", close=True)
            await self._finish()
            raise _Closed
        if self.h11_state.they_are_waiting_for_100_continue:
            go_on = h11.InformationalResponse(status_code=100, headers=[])
            self._write_raw(self.h11_state.send(go_on) or b"")
            self.hub.flush()
        # The body usually arrived with the head: take it without a timeout scope.
        self._body_size = 0
        try:
            if self._take_body(parts, limit):
                return b"".join(parts)
            with trio.move_on_after(self.config.body_timeout) as scope:
                while True:
                    self.h11_state.receive_data(await self._receive())
                    if self._take_body(parts, limit):
                        return b"".join(parts)
        except _TooLarge:
            self._respond_simple(413, b"Request entity too large", close=True)
            await self._finish()
            raise _Closed from None
        if scope.cancelled_caught:
            self._respond_simple(408, b"Request timeout", close=True)
            await self._finish()
        raise _Closed

    def _take_body(self, parts: list[bytes], limit: int) -> bool:
        """Take the body events h11 has; True at the end of the message."""
        while True:
            event = self.h11_state.next_event()
            if event is h11.NEED_DATA:
                return False
            if isinstance(event, h11.Data):
                self._body_size += len(event.data)
                if self._body_size > limit:
                    raise _TooLarge
                parts.append(bytes(event.data))
                continue
            if isinstance(event, h11.EndOfMessage):
                return True
            raise _Closed

    async def _receive(self, between: bool = False) -> bytes:
        """The next bytes; ``b""`` at the end of the input.

        ``between``: nothing of the next request is buffered (the fast path
        waits for a head), so the poller may serve it in place.
        """
        # Straight on the socket: a request usually comes after our reply went
        # out, so wait first and read once; trio's receive_some would try a
        # read first, and add a checkpoint and wrappers. The wait is the hub's
        # poller's (no epoll_ctl per request, see ReadPoller), which needs to
        # know whether a read left bytes behind.
        sock = self._sock
        if sock is None:
            return await self._receive_stream()
        reads = self.hub.reads
        # (a bound method per wait: one kept would tie the connection in a
        # cycle, left for the collector once the connection is dropped)
        serve = self._serve_inline if between else None
        try:
            while True:
                handed = self._handed
                if handed is None:  # else a cancel came while the poller served
                    await reads.wait(sock, self._drained, serve)
                    handed = self._handed
                if handed is not None:
                    self._handed = None
                    if isinstance(handed, BaseException):
                        raise handed
                    return handed
                try:
                    data = sock.recv(_READ_SIZE)
                except BlockingIOError:
                    self._drained = True
                    continue
                self._drained = len(data) < _READ_SIZE
                if self._pending and data:  # (the poller stopped meanwhile)
                    self._pending = False
                    self._input = data
                    raise _Served
                return data
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            raise _Closed from None

    async def _receive_stream(self) -> bytes:
        """:meth:`_receive` through a trio stream (TLS, memory streams)."""
        output = self.output
        if output is None:
            raise _Closed
        try:
            return await output.receive()
        except trio.BrokenResourceError:
            raise _Closed from None

    def _serve_inline(self) -> bool:
        """Answer the request that made the socket readable, from the poller.

        What the task would do after its wait (``_read_head``'s fast path,
        then ``_dispatch_now``), for a whole fast-path Bayeux request that
        needs nothing to wait; then what it would do before the next wait.
        True: answered or pending (see the module), the task waits on.
        False: the task takes over, with the bytes read (``_handed``) or, once
        dispatched, ``_Served``.
        """
        sock = self._sock
        assert sock is not None
        try:
            data = sock.recv(_READ_SIZE)
        except BlockingIOError:
            self._drained = True
            return True  # nothing after all: wait on
        except OSError as exc:
            self._handed = exc
            return False
        size = len(data)
        self._drained = size < _READ_SIZE
        self._handed = data
        if self._pending:
            # Before the pending request's reply: the task holds what came
            # (the end of the input ends the connection, as in _hold).
            self._pending = False
            if data:
                self._input = data
                self._handed = _Served()
            return False
        server = self.server
        if not data or size == _READ_SIZE or server.closing or self._reads.cancel_called:
            return False
        try:
            taken = self._parser.parse(data)
            if taken is None or taken.size != size or taken.close or taken.upgrade:
                return False
            request = taken.request
            route = self._route_of(request)
            if type(route) is not BayeuxRequest or not server.receives_at_once:
                return False
            messages = decode_request(route, taken.body, server.wire)
            if isinstance(messages, HttpResponse):
                return False  # the task answers it, through h11
            if not server.at_once(messages):
                return False
            self._handed = None
            self._fast = data
            self._fast_close = self._fast_upgrade = self._fast_replied = False
            self._receive_now(route, messages, request)
            self.hub.flush()
            if self._waiting is not None:
                # The reply comes later: see reply(). No head is due
                # meanwhile; a deadline left armed that passes first only
                # resumes the wait (_serve).
                self._pending = True
                self._due = math.inf
                return True
            if not self._fast_replied:
                self._handed = _Served()
                return False
            self._served_in_place()
            return True
        except Exception as exc:  # the task's to raise, as if it had run this
            self._handed = exc
            return False

    async def _hold(self) -> None:
        """Wait for the held reply while watching the socket for EOF."""
        self._disarm()
        with trio.CancelScope() as scope:
            self._hold_scope = scope
            while self._waiting is not None:
                data = await self._receive()
                if not data:
                    raise _Closed
                # Pipelined bytes: kept until the next cycle.
                if self._fast is not None:
                    self._input += data
                    pending = len(self._input)
                else:
                    self.h11_state.receive_data(data)
                    pending = len(self.h11_state.trailing_data[0])
                if pending > self.config.max_body + self.config.max_header:
                    raise _Closed
        self._hold_scope = None
        if self._waiting is not None:
            raise _Closed  # the output broke while we waited

    async def _finish(self) -> None:
        """Send what is buffered, then close our side gently.

        Closing a socket with unread input makes the kernel send a reset,
        which can destroy the error response we just wrote before the client
        reads it. So: flush, shut down writing, and discard input for a
        moment, until the client closes too.
        """
        self._disarm()
        output = self.output
        if output is None:
            return
        self.hub.mark_dirty(output)
        await output.wait_flushed()
        if output.broken:
            return
        await output.send_eof()
        discarded = 0
        with trio.move_on_after(_LINGER_TIME):
            while discarded <= _LINGER_BYTES:
                with trio.move_on_after(_LINGER_IDLE) as idle:
                    data = await self._receive()
                if idle.cancelled_caught or not data:
                    return  # the client went quiet, or closed too
                discarded += len(data)

    def _write_raw(self, data: bytes) -> None:
        output = self.output
        if output is not None:
            output.write(data)
            self.hub.mark_dirty(output)

    def _broken(self) -> None:
        if self._hold_scope is not None:
            self._hold_scope.cancel()
        elif self._pending and self._sock is not None:
            self._pending = False
            self._handed = _Closed()
            self.hub.reads.wake(self._sock)

    # --------------------------------------------------------------- routing

    async def _dispatch(self, request: HttpRequest, body: bytes) -> bool:
        """Answer one request; True if the connection now belongs to a WebSocket.

        ``request`` comes from the fast path or from h11, in the same shape.
        """
        route = self._route_of(request)
        if isinstance(route, BayeuxRequest):
            messages = decode_request(route, body, self.server.wire)
            if isinstance(messages, HttpResponse):
                log.debug("refused a Bayeux request: %d", messages.status)
                self._respond(messages)
                return False
            self._shape = route.shape
            conn = self.hub.new_conn(self)
            self._waiting = conn
            await self.server.receive(conn, messages, request, self.address)
            return False
        if isinstance(route, NotMounted):
            path = route.path
            # health, the admin API and metrics (bayeux_trio.ops)
            response = self.server.respond_outside(request, body, path)
            if response is not None:
                self._respond(response)
                return False
            await self._static_response(request, self.server.static_files, path)
            return False
        if isinstance(route, ClientScript):
            await self._static_response(request, self.server.client_files, route.name)
            return False
        if isinstance(route, Answer):
            self._respond(route.response)
            return False
        if isinstance(route, EventStream):
            await self._eventsource_stream(route)
            return False
        output = self.output
        assert output is not None
        if self._fast is not None and self._fast_upgrade:
            # h11 would pause here and leave the bytes after the head to the
            # WebSocket (the differential tests hold the fast path to that).
            self._fast = None
            leftover, self._input = self._input, b""
        else:
            self._sync_h11()
            leftover = self.h11_state.trailing_data[0]
        self._upgrade = Upgrade(request, leftover, output)
        self.output = None  # the connection's transport belongs to the WebSocket now
        return True

    # ----------------------------------------------------- engine callbacks

    def reply(self, conn: int, body: bytes) -> bool:
        """The hub has the reply for our waiting request: write it out."""
        if conn == self._eventsource:
            return self._push_event(body)
        if conn != self._waiting or self.output is None or self.output.broken:
            return False
        self._waiting = None
        self.hub.release(conn)
        callback = self._shape.callback
        if callback is not None:
            body = jsonp_wrap(callback, body)
        ok = self._send_reply(body)
        if self._hold_scope is not None:
            self._hold_scope.cancel()
        elif self._pending:
            self._pending = False
            self._end_pending()
        return ok

    def _end_pending(self) -> None:
        """The reply of a request pending in place is out: what the task
        would do after it (``_requests``, ``_read_head``), or wake the task
        to do it when the connection ends here."""
        if self.server.closing:
            self._handed = _Served()
            assert self._sock is not None  # (only a socket's request is pending)
            self.hub.reads.wake(self._sock)
            return
        self._served_in_place()

    def _served_in_place(self) -> None:
        """A fast request answered without the task: _requests' end of it,
        and _read_head's start of the next wait."""
        self._fast = None
        self._head_started = self._head = False
        self._due_idle()

    def _send_reply(self, body: bytes) -> bool:
        """Write a Bayeux 200 (JSON, or JSON-P when the shape has a callback).

        Never for a HEAD (routed to 400), so the body always goes out.
        """
        output = self.output
        assert output is not None
        if self._fast is not None:
            # h11 has not seen the request; this is the close it would decide
            self._fast_replied = True
            close = self._fast_close
        else:
            state = self.h11_state
            state.send(_REPLY_STATE)
            state.send(_END)
            # h11 adds Connection: close exactly when it will close after this
            # response (the client asked to, or spoke HTTP/1.0).
            close = state.our_state is h11.MUST_CLOSE
        shape = self._shape
        ok = output.write(
            reply_head(shape.callback is not None, len(body), shape.origin, close) + body
        )
        self.hub.mark_dirty(output)
        return ok

    def push(self, frame: bytes) -> None:  # pragma: no cover - HTTP endpoints have output
        raise AssertionError("HTTP endpoints are written through their output buffer")

    def close_stream(self) -> None:
        if self._eventsource is not None and self.output is not None:
            self.output.write(b"0\r\n\r\n")
            self.hub.mark_dirty(self.output)
            if self._hold_scope is not None:
                self._hold_scope.cancel()

    # ------------------------------------------------------------ responses

    def _respond(self, response: HttpResponse) -> None:
        """Write an answer the binding made (refusals, preflights)."""
        headers = [*response.headers, (b"content-length", b"%d" % len(response.body))]
        self._send(h11.Response(status_code=response.status, headers=headers), response.body)

    def _respond_simple(self, status: int, text: bytes, *, close: bool = False) -> None:
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(text)),
        ]
        if close:
            headers.append((b"connection", b"close"))
        self._send(h11.Response(status_code=status, headers=headers), text)

    async def _static_response(
        self, request: HttpRequest, files: StaticFiles | None, path: str
    ) -> None:
        if request.method not in (b"GET", b"HEAD"):
            self._respond_simple(405 if files is not None else 404, b"Not found")
            return
        found: StaticFile | None = None
        if files is not None:
            found = await trio.to_thread.run_sync(files.get, path)
        if found is None:
            self._respond_simple(404, b"Not found")
            return
        base = [
            (b"etag", found.etag.encode()),
            (b"last-modified", found.last_modified.encode()),
        ]
        inm = ims = None
        for name, value in request.headers:
            if name == b"if-none-match":
                inm = inm or value
            elif name == b"if-modified-since":
                ims = ims or value
        if found.not_modified(
            inm.decode("latin-1") if inm is not None else None,
            ims.decode("latin-1") if ims is not None else None,
        ):
            self._send(h11.Response(status_code=304, headers=base), b"")
            return
        response_headers = [
            *base,
            (b"content-type", found.content_type.encode()),
            (b"content-length", b"%d" % len(found.body)),
        ]
        body = found.body if request.method == b"GET" else b""
        self._send(h11.Response(status_code=200, headers=response_headers), body)

    def _send(self, response: h11.Response, body: bytes) -> bool:
        self._sync_h11()
        output = self.output
        assert output is not None
        if not response.reason:
            response = h11.Response(
                status_code=response.status_code,
                headers=response.headers,
                reason=_REASONS.get(response.status_code, b""),
            )
        data = self.h11_state.send(response) or b""
        if body and not self._head:
            data += self.h11_state.send(h11.Data(data=body)) or b""
        data += self.h11_state.send(h11.EndOfMessage()) or b""
        ok = output.write(data)
        self.hub.mark_dirty(output)
        return ok

    async def _bad_http(self, exc: h11.RemoteProtocolError) -> None:
        log.debug("malformed HTTP: %s", exc)
        if self.h11_state.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        status = exc.error_status_hint
        text = b"Request header fields too large" if status == 431 else b"Bad request"
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(text)),
            (b"connection", b"close"),
        ]
        try:
            self._send(h11.Response(status_code=status, headers=headers), text)
        except h11.LocalProtocolError:
            return
        await self._finish()

    # ----------------------------------------------------------- EventSource

    async def _eventsource_stream(self, route: EventStream) -> None:
        self._sync_h11()
        if self.h11_state.their_http_version != b"1.1":
            # Events are written as HTTP/1.1 chunks; h11 would frame a 1.0
            # response by closing, so the chunk sizes would show (found with fuzz/).
            self._respond(BAD_REQUEST)
            return
        client_id = route.client_id
        conn = self.hub.new_conn(self)
        self._eventsource = conn
        head = stream_head(route)
        # The stream ends when either side closes it: no keep-alive after it.
        headers = [*head.headers, (b"connection", b"close")]
        output = self.output
        assert output is not None
        await self.server.claim(client_id)
        if not self.hub.is_known_client(client_id):
            self._eventsource = None
            self.hub.release(conn)
            self._respond(BAD_REQUEST)
            return
        data = (
            self.h11_state.send(h11.Response(status_code=200, headers=headers, reason=b"OK")) or b""
        )
        output.write(data + chunk(head.body))
        self.hub.mark_dirty(output)
        # The hub frames pushed deliveries by kind: as SSE events from now on.
        self.kind = Kind.EVENTSOURCE
        self.server.track_stream(self)
        try:
            self.hub.open_stream(conn, client_id)
            with trio.CancelScope() as scope:
                self._hold_scope = scope
                while await self._receive():
                    pass
        finally:
            self._hold_scope = None
            self.server.untrack_stream(self)
            self._eventsource = None
            self.hub.forget(conn)
        raise _Closed

    def _push_event(self, body: bytes) -> bool:
        output = self.output
        if output is None:
            return False
        ok = output.write(chunk(event_bytes(body)))
        self.hub.mark_dirty(output)
        return ok

    def ping(self) -> None:
        """Keep an EventSource stream open through proxies (``:`` comment)."""
        output = self.output
        if output is not None and self._eventsource is not None:
            output.write(chunk(EVENT_PING))
            self.hub.mark_dirty(output)


class _Resumed:
    """Awaits a coroutine whose first step has run and yielded ``trap``.

    What ``await`` does for the remaining steps: each value goes to trio,
    and trio's answer (or exception) back into the coroutine.
    """

    __slots__ = ("_coro", "_trap")

    def __init__(self, coro: Coroutine[Any, Any, bool], trap: Any) -> None:
        self._coro = coro
        self._trap = trap

    def __await__(self) -> Generator[Any, Any, bool]:
        coro = self._coro
        value = self._trap
        self._trap = None
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # trio's Cancelled, or close()
                try:
                    value = coro.throw(exc)
                except StopIteration as done:
                    result: bool = done.value
                    return result
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as done:
                    result = done.value
                    return result


def reply_head(jsonp: bool, length: int, origin: bytes | None, close: bool) -> bytes:
    """The head h11 writes for a Bayeux 200 with the binding's headers, in
    the binding's order, then content-length, the CORS pair when there is an
    Origin, and the Connection: close h11 adds when it will close."""
    head = _REPLY_HEAD[jsonp] + b"content-length: %d\r\n" % length
    for name, value in cors_headers(origin):
        head += name + b": " + value + b"\r\n"
    return head + (b"Connection: close\r\n\r\n" if close else b"\r\n")
