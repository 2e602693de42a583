"""A Bayeux server on stdlib asyncio, bayeux_core and its wire binding.

Run ``python docs/examples/asyncio_longpoll.py [port]`` and point a Faye
client at ``http://127.0.0.1:8000/faye``; see ``docs/embedding.md``.
``bayeux_core.wire`` says what each request is and shapes each answer, so
this serves long-polling (JSON or form POSTs), callback-polling (JSON-P),
CORS and EventSource. Left here: HTTP/1.x over asyncio streams, with a small
parser (``Content-Length`` bodies only). Not served: WebSocket (an upgrade
gets 400) and the client script (``/faye/client.js`` gets 404).

Every engine call happens between two awaits on the one event-loop thread,
so no lock is needed: input in, ``actions_to_send()`` out, then await.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Callable, Iterable
from http import HTTPStatus

from bayeux_core import Close, Deliver, Engine, EngineConfig, Event, Reply, wire
from bayeux_core.wire import HttpRequest, HttpResponse

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter

#: the transports served here, offered in handshake replies (no WebSocket)
SERVED = ("long-polling", "cross-origin-long-polling", "callback-polling", "eventsource")
#: seconds between EventSource comments that keep a stream open through proxies
PING_EVERY = 10.0
NOT_HERE = HttpResponse(400, wire.BAD_REQUEST.headers, b"WebSocket is not supported here")

#: the framing headers of an EventSource answer, which ends with the connection
STREAMING = ((b"transfer-encoding", b"chunked"), (b"connection", b"close"))
#: what an EventSource handler is sent: a Reply or framed bytes; None ends it
StreamItem = Reply | bytes | None


class BayeuxServer:
    """Serves Bayeux at ``wire.mount``; ``on_event`` sees the engine's events."""

    def __init__(self, engine: Engine | None = None, config: wire.WireConfig | None = None) -> None:
        self.engine = (
            engine if engine is not None else Engine(EngineConfig(connection_types=SERVED))
        )
        self.wire = config if config is not None else wire.WireConfig()
        self.on_event: Callable[[Event], None] = lambda event: None
        self._conn_ids = itertools.count(1)
        #: request connection id -> the future its HTTP handler awaits
        self._waiting: dict[int, asyncio.Future[Reply]] = {}
        #: EventSource connection id -> what its handler writes, in order
        self._streams: dict[int, asyncio.Queue[StreamItem]] = {}
        self._timer_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> asyncio.Server:
        server = await asyncio.start_server(self._serve_client, host, port)
        self._tasks.add(asyncio.create_task(self._run_timers()))
        return server

    def publish(self, channel: str, data: object) -> None:
        """Publish from the application to every subscriber of ``channel``."""
        self.engine.publish(channel, data, now=self._now())
        self._flush()

    def stop(self) -> None:
        """Answer held connects, end streams (clients will come back), stop the timer."""
        self.engine.release_held(now=self._now())
        self._flush()
        for queue in self._streams.values():
            queue.put_nowait(None)
        for task in self._tasks:
            task.cancel()

    # -- the engine side: no awaits in here ---------------------------------

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _flush(self) -> None:
        """Carry out what the engine asks for, then let the timer task re-arm."""
        for action in self.engine.actions_to_send():
            if isinstance(action, Reply):
                future = self._waiting.pop(action.conn, None)
                if future is not None and not future.done():
                    future.set_result(action)
                else:
                    self._push(action.conn, action)
            elif isinstance(action, Deliver):
                event = wire.event_bytes(b"[" + action.payload + b"]")  # framed once
                for conn in action.conns:
                    self._push(conn, event)
            elif isinstance(action, Close):
                self._push(action.conn, None)  # the session ended
            elif isinstance(action, Event):
                self.on_event(action)
        self._timer_changed.set()

    def _push(self, conn: int, item: StreamItem) -> None:
        queue = self._streams.get(conn)
        if queue is not None:
            queue.put_nowait(item)

    async def _run_timers(self) -> None:
        while True:
            deadline = self.engine.get_timer()
            self._timer_changed.clear()
            delay = None if deadline is None else max(deadline - self._now(), 0.0)
            try:
                await asyncio.wait_for(self._timer_changed.wait(), delay)
            except TimeoutError:
                self.engine.handle_timer(self._now())
                self._flush()

    # -- the HTTP side --------------------------------------------------------

    async def _serve_client(self, reader: Reader, writer: Writer) -> None:
        try:
            while (request := await _read_head(reader)) is not None:
                keep_alive = await self._answer(request, reader, writer)
                await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, EOFError, ValueError, asyncio.LimitOverrunError):
            pass  # a broken or hostile client: drop the connection
        finally:
            writer.close()

    async def _answer(self, request: HttpRequest, reader: Reader, writer: Writer) -> bool:
        """Answer one request; False if the connection closes after it."""
        length = request.header(b"content-length") or b"0"
        if not length.isdigit() or request.header(b"transfer-encoding") is not None:
            raise ValueError("only Content-Length bodies here")
        if int(length) > self.wire.max_body:
            writer.write(_whole(wire.TOO_LARGE, close=True))  # refused before reading it
            return False
        body = await reader.readexactly(int(length))
        route = wire.classify(request, self.wire)
        if isinstance(route, wire.BayeuxRequest):
            await self._bayeux(route, request, body, writer)
        elif isinstance(route, wire.Answer):  # a CORS preflight, or a refusal
            writer.write(_whole(route.response))
        elif isinstance(route, wire.EventStream):
            await self._eventsource(route, request, reader, writer)
            return False  # the stream used the connection up
        elif isinstance(route, wire.WebSocketUpgrade):
            writer.write(_whole(NOT_HERE, close=True))
            return False
        else:  # NotMounted (your own pages would go here) or ClientScript
            writer.write(_whole(wire.NOT_FOUND))
        connection = (request.header(b"connection") or b"").lower()
        return request.http_version == b"1.1" and b"close" not in connection

    async def _bayeux(
        self, route: wire.BayeuxRequest, request: HttpRequest, body: bytes, writer: Writer
    ) -> None:
        messages = wire.decode_request(route, body, self.wire)  # JSON, form or query
        if isinstance(messages, HttpResponse):
            writer.write(_whole(messages))  # 400, or 413
            return
        conn = next(self._conn_ids)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[conn] = future
        self.engine.receive(conn, messages, now=self._now(), request=request)
        self._flush()
        try:
            reply = await future  # at once, or when a held connect is answered
        finally:
            if self._waiting.pop(conn, None) is not None:  # cancelled while held
                self.engine.close(conn, now=self._now())
        try:
            # JSON, or the JSON-P script; CORS headers when there was an Origin
            writer.write(_whole(wire.reply_response(route.shape, reply.body)))
            await writer.drain()
        except ConnectionError:
            self.engine.reply_failed(reply, now=self._now())  # back to its queue
            self._flush()
            raise

    async def _eventsource(
        self, route: wire.EventStream, request: HttpRequest, reader: Reader, writer: Writer
    ) -> None:
        if request.http_version != b"1.1":  # events go out as HTTP/1.1 chunks
            writer.write(_whole(wire.BAD_REQUEST, close=True))
            return
        conn = next(self._conn_ids)
        queue: asyncio.Queue[StreamItem] = asyncio.Queue()
        self._streams[conn] = queue
        watcher = asyncio.create_task(_end_on_eof(reader, queue))
        try:
            # Checks the client id, binds the stream, queues waiting messages.
            known = self.engine.open_stream(conn, now=self._now(), client_id=route.client_id)
            self._flush()
            if not known:
                writer.write(_whole(wire.BAD_REQUEST, close=True))
                return
            head = wire.stream_head(route)
            writer.write(_head(200, head.headers + STREAMING) + _chunk(head.body))
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), PING_EVERY)
                except TimeoutError:
                    item = wire.EVENT_PING
                if item is None:
                    break
                data = wire.event_bytes(item.body) if isinstance(item, Reply) else item
                writer.write(_chunk(data))
                try:
                    await writer.drain()
                except ConnectionError:
                    if isinstance(item, Reply):
                        self.engine.reply_failed(item, now=self._now())
                    raise
            writer.write(b"0\r\n\r\n")  # the end of the body
        finally:
            watcher.cancel()
            del self._streams[conn]
            self.engine.close(conn, now=self._now())  # known or not: the engine had it open
            self._flush()


async def _end_on_eof(reader: Reader, queue: asyncio.Queue[StreamItem]) -> None:
    """An EventSource client sends nothing more: end its stream when it leaves."""
    try:
        while await reader.read(4096):
            pass
    except ConnectionError:
        pass
    queue.put_nowait(None)


async def _read_head(reader: Reader) -> HttpRequest | None:
    """The next request's head, as the binding takes it; None at end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    request_line, *lines = head[:-4].split(b"\r\n")
    method, target, version = request_line.split(b" ")  # ValueError: not HTTP
    headers = []
    for line in lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))  # the binding wants lower case
    return HttpRequest(method, target, tuple(headers), version.removeprefix(b"HTTP/"))


def _head(status: int, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode())]
    lines.extend(name + b": " + value for name, value in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _whole(response: HttpResponse, *, close: bool = False) -> bytes:
    """A whole answer of the binding's, with the framing headers it leaves to us."""
    headers = [*response.headers, (b"content-length", b"%d" % len(response.body))]
    if close:
        headers.append((b"connection", b"close"))
    return _head(response.status, headers) + response.body


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


async def main(port: int) -> None:
    server = BayeuxServer()
    server.on_event = print
    listener = await server.start("127.0.0.1", port)
    print(f"Bayeux on http://127.0.0.1:{port}{server.wire.mount}")
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8000))
