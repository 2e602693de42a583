"""The driver: the one object that talks to the engine.

Why it needs no lock: every engine call here is synchronous, and each one is
followed by :meth:`Driver.pump` before control goes back to the event loop.
An ASGI application runs all its request handlers on one event loop thread,
so two engine calls can never interleave; the "lock" is the absence of an
``await`` between a feed and its drain (docs/embedding.md, "The loop").
Handlers do their waiting (for a reply, for the next frame) outside it, on
anyio primitives, so the same code runs on asyncio and on trio.

What a pump does with each action:

* :class:`~bayeux_core.Reply` for a request connection resolves that
  request's :class:`Pending` (its handler writes the HTTP response); for a
  stream, it is framed and put on the stream's memory channel;
* :class:`~bayeux_core.Deliver` is framed once per stream kind and put on
  every recipient's channel;
* :class:`~bayeux_core.Close` closes the stream's channel: its handler sends
  what is queued, then closes the WebSocket or ends the EventSource body;
* events go to the application's listeners.

A stream whose channel is full (a peer that does not read) is closed, and a
reply that could not be queued goes back to the engine with
:meth:`~bayeux_core.Engine.reply_failed`.

The timer task sleeps until :meth:`~bayeux_core.Engine.get_timer` and calls
:meth:`~bayeux_core.Engine.handle_timer`; a pump that moves the deadline
earlier wakes it. It runs in the ASGI lifespan's task group when the server
sends lifespan events, and otherwise is started on the first request as a
task of the running event loop (Starlette does not forward lifespan events to
mounted applications).
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from bayeux_core import Close, Deliver, Engine, Event, Message, Reply
from bayeux_core.wire import event_bytes

__all__ = ["Driver", "Listener", "Pending", "Stream", "StreamKind"]

log = logging.getLogger("bayeux.asgi")

Listener = Callable[[Event], None]

#: frames a stream may have waiting before it counts as stuck and is closed
STREAM_BUFFER = 1024
#: the WebSocket close code of a stream closed because it did not keep up
CLOSE_OVERFLOW = 1013


class StreamKind(enum.Enum):
    """How a stream frames what the engine sends it."""

    WEBSOCKET = "websocket"
    EVENTSOURCE = "eventsource"


class Pending:
    """One HTTP request waiting for its :class:`~bayeux_core.Reply`."""

    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.reply: Reply | None = None


class Stream:
    """One WebSocket or EventSource: a memory channel of framed bytes.

    WebSocket frames are ``str`` (text messages), EventSource ones ``bytes``
    (whole events). The handler reads :attr:`frames` until it ends, then
    closes with :attr:`close_code`.
    """

    __slots__ = ("_finished", "_send", "close_code", "frames", "kind")

    def __init__(self, kind: StreamKind, buffer: int = STREAM_BUFFER) -> None:
        self.kind = kind
        send: MemoryObjectSendStream[str | bytes]
        receive: MemoryObjectReceiveStream[str | bytes]
        send, receive = anyio.create_memory_object_stream[str | bytes](buffer)
        self._send = send
        self.frames = receive
        #: how the WebSocket is closed once :attr:`frames` ends
        self.close_code = 1000
        self._finished = False

    def push(self, frame: str | bytes) -> bool:
        """Queue one frame; False if the stream is finished or stuck (then it closes)."""
        try:
            self._send.send_nowait(frame)
        except anyio.WouldBlock:
            log.info("closing a %s stream that does not read", self.kind.value)
            self.finish(CLOSE_OVERFLOW)
            return False
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False
        return True

    def finish(self, code: int = 1000) -> None:
        """No more frames: the handler sends what is queued, then closes."""
        if not self._finished:
            self._finished = True
            self.close_code = code
            self._send.close()


class Driver:
    """Owns an :class:`~bayeux_core.Engine` for one event loop."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conns: dict[int, Pending | Stream] = {}
        self._next_conn = 0
        self._listeners: list[Listener] = []
        #: set to wake the timer task when the deadline moved earlier
        self._wake: anyio.Event | None = None
        self._armed = math.inf
        #: the thread of the event loop that started the driver
        self._thread: int | None = None
        self._detached: object = None  # the lazily started timer task, kept alive

    # ------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._thread is not None

    def claim(self) -> None:
        """Bind the driver to the calling event loop's thread (once)."""
        ident = threading.get_ident()
        if self._thread is None:
            self._thread = ident
        elif self._thread != ident:
            raise RuntimeError(
                "a BayeuxASGI application serves one event loop: its engine is not thread-safe"
            )

    def start_detached(self) -> None:
        """Start the timer task on the running loop, outside any task group.

        anyio has no task without a task group, so this is the one place that
        asks which loop runs: asyncio gets a loop task, trio a system task.
        Both end with the loop.
        """
        self.claim()
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            import trio

            trio.lowlevel.spawn_system_task(self.run_timer)
        else:
            self._detached = loop.create_task(self.run_timer())

    async def run_timer(self) -> None:
        """Fire the engine's deadlines until cancelled."""
        engine = self.engine
        try:
            while True:
                deadline = engine.get_timer()
                self._wake = wake = anyio.Event()
                self._armed = math.inf if deadline is None else deadline
                if deadline is None or deadline > anyio.current_time():
                    with anyio.move_on_after(self._armed - anyio.current_time()):
                        await wake.wait()
                else:
                    await anyio.lowlevel.checkpoint()
                deadline = engine.get_timer()
                now = anyio.current_time()
                if deadline is not None and now >= deadline:
                    engine.handle_timer(now)
                    self.pump()
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:  # a bug: log it rather than take the loop down
            log.exception("the Bayeux timer task failed")
            raise
        finally:
            self._wake = None

    def shutdown(self) -> None:
        """Answer every held connect and close every stream (server going away)."""
        self.engine.release_held(now=anyio.current_time())
        self.pump()
        for endpoint in list(self._conns.values()):
            if isinstance(endpoint, Stream):
                endpoint.finish(1001)

    # ------------------------------------------------------------ endpoints

    def _new_conn(self, endpoint: Pending | Stream) -> int:
        self._next_conn += 1
        self._conns[self._next_conn] = endpoint
        return self._next_conn

    def new_request(self) -> tuple[int, Pending]:
        pending = Pending()
        return self._new_conn(pending), pending

    def new_stream(self, kind: StreamKind) -> tuple[int, Stream]:
        stream = Stream(kind)
        return self._new_conn(stream), stream

    def forget(self, conn: int) -> None:
        """``conn`` is gone (closed, or its peer left): the engine drops it."""
        endpoint = self._conns.pop(conn, None)
        if endpoint is not None:
            if isinstance(endpoint, Stream):
                endpoint.finish()
            self.engine.close(conn, now=anyio.current_time())
            self.pump()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    # ---------------------------------------------------------------- inputs

    def receive(self, conn: int, messages: Sequence[Message], request: object) -> None:
        self.engine.receive(
            conn, messages, now=anyio.current_time(), request=request, wall=time.time() * 1000
        )
        self.pump()

    def open_stream(self, conn: int, client_id: str | None = None) -> bool:
        ok = self.engine.open_stream(conn, now=anyio.current_time(), client_id=client_id)
        self.pump()
        return ok

    def publish(self, channel: str, data: Any, ext: Any = None) -> None:
        self.engine.publish(channel, data, now=anyio.current_time(), ext=ext)
        self.pump()

    def reply_failed(self, reply: Reply) -> None:
        self.engine.reply_failed(reply, now=anyio.current_time())
        self.pump()

    # ------------------------------------------------------------ execution

    def pump(self) -> None:
        """Run everything the engine has to send, then re-arm the timer."""
        engine = self.engine
        conns = self._conns
        while actions := engine.actions_to_send():
            for action in actions:
                kind = type(action)
                if kind is Deliver:
                    self._deliver(action)  # type: ignore[arg-type]
                elif kind is Reply:
                    reply: Reply = action  # type: ignore[assignment]
                    endpoint = conns.get(reply.conn)
                    if isinstance(endpoint, Pending):
                        # The request is finished: its id is the engine's no more.
                        del conns[reply.conn]
                        endpoint.reply = reply
                        endpoint.done.set()
                    elif endpoint is None or not endpoint.push(_frame(endpoint.kind, reply.body)):
                        engine.reply_failed(reply, now=anyio.current_time())
                elif kind is Close:
                    endpoint = conns.get(action.conn)  # type: ignore[attr-defined]
                    if isinstance(endpoint, Stream):
                        endpoint.finish(1000)
                elif isinstance(action, Event):
                    self._notify(action)
        deadline = engine.get_timer()
        if deadline is not None and deadline < self._armed and self._wake is not None:
            self._armed = deadline
            self._wake.set()

    def _deliver(self, action: Deliver) -> None:
        conns = self._conns
        body = b"[" + action.payload + b"]"
        text: str | None = None
        event: bytes | None = None
        for conn in action.conns:
            endpoint = conns.get(conn)
            if not isinstance(endpoint, Stream):
                continue
            if endpoint.kind is StreamKind.WEBSOCKET:
                if text is None:
                    text = body.decode("utf-8")
                endpoint.push(text)
            else:
                if event is None:
                    event = event_bytes(body)
                endpoint.push(event)

    def _notify(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed on %s", listener, type(event).__name__)


def _frame(kind: StreamKind, body: bytes) -> str | bytes:
    if kind is StreamKind.WEBSOCKET:
        return body.decode("utf-8")
    return event_bytes(body)
