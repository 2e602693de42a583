"""A Bayeux server over HTTP long-polling, on asyncio and bayeux_core alone.

Run ``python docs/examples/asyncio_longpoll.py [port]`` and point a Faye
client at ``http://127.0.0.1:8000/bayeux`` (long-polling transport). It is
meant for reading (see ``docs/embedding.md``): JSON POST bodies only (no form
bodies, JSON-P, CORS, WebSocket or EventSource) and a deliberately small
HTTP/1.1 parser.

Every engine call happens between two awaits on the one event-loop thread,
so no lock is needed: input in, ``actions_to_send()`` out, then await.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Callable

from bayeux_core import BodyError, Engine, Event, Reply, decode_body

MAX_BODY = 1024 * 1024


class LongPollServer:
    """Serves Bayeux at ``path``; ``on_event`` sees the engine's events."""

    def __init__(self, engine: Engine | None = None, path: str = "/bayeux") -> None:
        self.engine = engine if engine is not None else Engine()
        self.path = path
        self.on_event: Callable[[Event], None] = lambda event: None
        self._conn_ids = itertools.count(1)
        #: request connection id -> the future its HTTP handler awaits
        self._waiting: dict[int, asyncio.Future[Reply]] = {}
        self._timer_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> asyncio.Server:
        server = await asyncio.start_server(self._serve_client, host, port)
        task = asyncio.create_task(self._run_timers())
        self._tasks.add(task)
        return server

    def publish(self, channel: str, data: object) -> None:
        """Publish from the application to every subscriber of ``channel``."""
        self.engine.publish(channel, data, now=self._now())
        self._flush()

    def stop(self) -> None:
        """Answer held connects (clients will come back) and stop the timer."""
        self.engine.release_held(now=self._now())
        self._flush()
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
            elif isinstance(action, Event):
                self.on_event(action)
            # Deliver and Close are for streams, which this server has none of.
        self._timer_changed.set()

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

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while (request := await _read_request(reader)) is not None:
                method, target, body = request
                if target.split("?", 1)[0] != self.path:
                    writer.write(_response(404, b"Not found", "text/plain"))
                elif method != "POST":
                    writer.write(_response(405, b"Use POST", "text/plain"))
                else:
                    await self._bayeux(body, writer)
                await writer.drain()
        except (ConnectionError, EOFError, ValueError, asyncio.LimitOverrunError):
            pass  # a broken or hostile client: drop the connection
        finally:
            writer.close()

    async def _bayeux(self, body: bytes, writer: asyncio.StreamWriter) -> None:
        messages = decode_body(body, max_bytes=MAX_BODY)
        if isinstance(messages, BodyError):
            writer.write(_response(messages.http_status, b"Bad request", "text/plain"))
            return
        conn = next(self._conn_ids)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[conn] = future
        self.engine.receive(conn, messages, now=self._now())
        self._flush()
        try:
            reply = await future  # at once, or when a held connect is answered
        finally:
            if self._waiting.pop(conn, None) is not None:  # cancelled while held
                self.engine.close(conn, now=self._now())
        try:
            writer.write(_response(200, reply.body, "application/json"))
            await writer.drain()
        except ConnectionError:
            # The messages it carried go back to the client's queue.
            self.engine.reply_failed(reply, now=self._now())
            self._flush()
            raise


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes] | None:
    """Method, target and body of the next request; None at end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if not 0 <= length <= MAX_BODY:
        raise ValueError("bad Content-Length")
    return method, target, await reader.readexactly(length)


def _response(status: int, body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
        f"Content-Type: {content_type}; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-cache, no-store\r\n\r\n"
    )
    return head.encode("latin-1") + body


async def main(port: int) -> None:
    server = LongPollServer()
    server.on_event = print
    listener = await server.start("127.0.0.1", port)
    print(f"Bayeux on http://127.0.0.1:{port}{server.path}")
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8000))
