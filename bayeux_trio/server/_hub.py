"""The hub: the one place that talks to the engine.

Connection tasks call the hub's methods, which call the engine and then
execute every action it returns before they return themselves. Nothing awaits
between an engine call and the draining of its actions, so in trio's single
thread there is no lock and no race. Actions run in one pass:

* :class:`~bayeux_core.Reply` goes to the endpoint that owns the connection id;
* :class:`~bayeux_core.Deliver` is framed once per transport kind and appended
  to each recipient's output buffer;
* events go to the application's listeners;

then every output buffer that got bytes is flushed with one non-blocking send.

The hub is the engine's only caller, and it is never re-entered. An engine
input made while a pass runs (a listener that calls ``server.publish`` or
``server.disconnect``, an endpoint that gives up its connection) is not made
at once: it waits in a queue and runs when the pass has executed every action
it had, in the order the inputs were made, in that same pump; what it
produces then runs as more of the pass. So a listener's publish on
:class:`~bayeux_core.Subscribed` reaches the client after the subscribe reply,
never before. The queue is one attribute test when empty.

Inside :meth:`Hub.batch` the flush waits for the end of the block, so that a
WebSocket read holding many messages costs one send per connection, not one
per message.
A single timer task sleeps until the engine's next deadline, which each pass
updates in place. Deadlines are rounded up to a 10 ms tick, so that one wake-up
serves every deadline of that tick: with thousands of idle clients, each held
``/meta/connect`` expiring on its own costs a trio cancellation per connect.
Nothing fires early; a held connect or an expiry may come up to 10 ms late.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, Protocol

import trio

from bayeux_core import (
    Action,
    Close,
    Deliver,
    Engine,
    ErrorCode,
    Event,
    Extension,
    LocalProtocolError,
    Message,
    Reply,
    Session,
    is_meta,
    is_service,
    is_valid_name,
)
from bayeux_core.wire import event_bytes

from ._frames import chunk, ws_text_frame
from ._output import DrainCount, Output
from ._reads import ReadPoller
from ._wallclock import wall_clock_ms

__all__ = ["Endpoint", "Hub", "Kind"]

log = logging.getLogger("bayeux.server")

#: the timer task's resolution, in seconds (see the module docstring)
TIMER_TICK = 0.01


class Kind(enum.IntEnum):
    """How an endpoint frames what the engine sends it."""

    HTTP = 0
    WEBSOCKET = 1
    EVENTSOURCE = 2
    LOCAL = 3


_TRANSPORTS = {
    Kind.HTTP: "long-polling",
    Kind.WEBSOCKET: "websocket",
    Kind.EVENTSOURCE: "eventsource",
    Kind.LOCAL: "in-process",
}


class Endpoint(Protocol):
    """Something that owns engine connection ids and can receive replies."""

    kind: Kind
    output: Output | None

    def reply(self, conn: int, body: bytes) -> bool:
        """Send a reply body; False if it could not be sent."""

    def push(self, frame: bytes) -> None:
        """Push one framed delivery (LOCAL endpoints get the raw JSON array)."""

    def close_stream(self) -> None:
        """The session bound to this stream ended."""


Listener = Callable[[Event], None]


class Hub:
    """Owns the :class:`~bayeux_core.Engine` for a server."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._endpoints: dict[int, Endpoint] = {}
        self._dirty: list[Output] = []
        self._listeners: list[Listener] = []
        self._next_conn = 0
        self._nursery: trio.Nursery | None = None
        self._timer_scope = trio.CancelScope()
        #: the deadline last given to the timer scope (setting it costs a
        #: trio deadline-heap update, so it is set only when it changes)
        self._timer_deadline = math.inf
        #: outputs still draining (see :meth:`has_pending_output`)
        self.drains = DrainCount()
        #: where plaintext HTTP connections wait for their next request
        self.reads = ReadPoller()
        #: the task inside :meth:`batch`, whose passes leave output unflushed
        self._batch_task: trio.lowlevel.Task | None = None
        #: a cluster bus's hook (bayeux_trio.redis): it sees each pass's actions
        #: first and returns those to run now; it runs the rest later through
        #: :meth:`execute`
        self.intercept: Callable[[list[Action]], list[Action]] | None = None
        #: deliveries handed to connections, and replies sent (for metrics)
        self.delivered = 0
        self.responses = 0
        #: called after each write pass that had output (metrics' latency)
        self.after_flush: Callable[[], None] | None = None
        #: True while a pass executes actions: engine inputs made then wait
        self._pumping = False
        #: those inputs, run in order once the pass has run its actions
        self._deferred: list[Callable[[], object]] = []

    # ------------------------------------------------------------- lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the timer and own the drain tasks; cancel to stop."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.reads.run)
            task_status.started()
            while True:
                with self._timer_scope:
                    self._update_timer()
                    await trio.sleep_forever()
                self._timer_scope = trio.CancelScope()
                self._timer_deadline = math.inf
                # A pass never spans an await: no task runs inside one.
                self.engine.handle_timer(trio.current_time())
                self._pump()

    def release_held(self) -> None:
        """Answer every held connect (shutdown): clients reconnect later."""
        if self._pumping:
            self._deferred.append(self._release_held)
            return
        self._release_held()
        self._pump()

    def _release_held(self) -> None:
        self.engine.release_held(now=trio.current_time())

    # ------------------------------------------------------------ endpoints

    def new_conn(self, endpoint: Endpoint) -> int:
        """A fresh connection id owned by ``endpoint``."""
        self._next_conn += 1
        self._endpoints[self._next_conn] = endpoint
        return self._next_conn

    def forget(self, conn: int) -> None:
        """``conn`` is gone: the engine drops what it held on it."""
        if self._endpoints.pop(conn, None) is not None:
            if self._pumping:
                self._deferred.append(partial(self._close, conn))
                return
            self._close(conn)
            self._pump()

    def _close(self, conn: int) -> None:
        self.engine.close(conn, now=trio.current_time())

    def start_soon(self, fn: Callable[[], Awaitable[object]]) -> None:
        """Run ``fn`` in the hub's nursery (for work that must not nest in a pump)."""
        if self._nursery is None:
            raise LocalProtocolError("the hub is not running")
        self._nursery.start_soon(fn)

    def has_pending_output(self) -> bool:
        """True while some connection has bytes the kernel has not taken."""
        return bool(self._dirty) or self.drains.active > 0

    def release(self, conn: int) -> None:
        """Drop ``conn`` after its reply; the engine no longer knows it."""
        self._endpoints.pop(conn, None)

    def transport_of(self, conn: int) -> str | None:
        """The transport of connection ``conn`` by name, None if it is not open."""
        endpoint = self._endpoints.get(conn)
        return _TRANSPORTS[endpoint.kind] if endpoint is not None else None

    def is_known_client(self, client_id: str) -> bool:
        return self.engine.store.get(client_id) is not None

    def mark_dirty(self, output: Output) -> None:
        if not output.dirty:
            output.dirty = True
            self._dirty.append(output)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Flush once at the end of the block, not after every engine pass.

        Only passes made by the calling task wait: passes made by other tasks
        meanwhile (should this one wait on something) flush as usual, this
        task's buffered output included. A task that may block inside the
        block should call :meth:`flush` first.
        """
        task = trio.lowlevel.current_task()
        self._batch_task = task
        try:
            yield
        finally:
            if self._batch_task is task:
                self._batch_task = None
        # Not on an exception: the connection's own cleanup pumps, and flushes.
        self._flush()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    # ---------------------------------------------------------------- inputs
    #
    # Each input calls the engine and pumps, unless a pass is running: then it
    # is deferred (see the module docstring) and what it returns is what the
    # engine would say now. Exceptions of a deferred input are logged.

    def add_extension(self, extension: Extension) -> None:
        self.engine.add_extension(extension)

    def remove_extension(self, extension: Extension) -> None:
        self.engine.remove_extension(extension)

    def receive(
        self,
        conn: int,
        messages: Sequence[Message],
        request: object = None,
        address: str | None = None,
    ) -> None:
        """A batch arrived on ``conn``; ``address`` counts toward a per-address limit."""
        if self._pumping:
            self._deferred.append(partial(self._receive, conn, messages, request, address))
            return
        # The engine call inline (not through _receive): this is the hot path.
        self.engine.receive(
            conn,
            messages,
            now=trio.current_time(),
            request=request,
            address=address,
            wall=wall_clock_ms(),
        )
        self._pump()

    def _receive(
        self, conn: int, messages: Sequence[Message], request: object, address: str | None
    ) -> None:
        self.engine.receive(
            conn,
            messages,
            now=trio.current_time(),
            request=request,
            address=address,
            wall=wall_clock_ms(),
        )

    def open_stream(self, conn: int, client_id: str | None = None) -> bool:
        if self._pumping:
            self._deferred.append(partial(self._open_stream, conn, client_id))
            return client_id is None or self.engine.store.get(client_id) is not None
        ok = self._open_stream(conn, client_id)
        self._pump()
        return ok

    def _open_stream(self, conn: int, client_id: str | None) -> bool:
        return self.engine.open_stream(conn, now=trio.current_time(), client_id=client_id)

    def publish(self, channel: str, data: Any, ext: Any = None) -> None:
        """Publish from the server (see :meth:`bayeux_core.Engine.publish`).

        Inside a pass the publish is deferred: an invalid channel still
        raises at once, data that is not JSON is logged when it runs.
        """
        if self._pumping:
            _check_publishable(channel)
            self._deferred.append(partial(self._publish, channel, data, ext))
            return
        self.engine.publish(channel, data, now=trio.current_time(), ext=ext)
        self._pump()

    def _publish(self, channel: str, data: Any, ext: Any) -> None:
        self.engine.publish(channel, data, now=trio.current_time(), ext=ext)

    def disconnect(self, client_id: str, *, rehandshake: bool = False) -> bool:
        """End a session from the server; False if there is none here.

        ``rehandshake``: ask the client to handshake again (its credentials
        expired) instead of telling it to stop.
        """
        if self._pumping:
            self._deferred.append(partial(self._disconnect, client_id, rehandshake))
            return self.engine.store.get(client_id) is not None
        done = self._disconnect(client_id, rehandshake)
        self._pump()
        return done

    def _disconnect(self, client_id: str, rehandshake: bool = False) -> bool:
        return self.engine.disconnect(client_id, now=trio.current_time(), rehandshake=rehandshake)

    def unsubscribe(self, client_id: str, pattern: str) -> bool:
        """Drop one subscription from the server; False if there is no such one."""
        if self._pumping:
            self._deferred.append(partial(self._unsubscribe, client_id, pattern))
            session = self.engine.store.get(client_id)
            return session is not None and pattern in session.subscriptions
        done = self._unsubscribe(client_id, pattern)
        self._pump()
        return done

    def _unsubscribe(self, client_id: str, pattern: str) -> bool:
        return self.engine.unsubscribe(client_id, pattern, now=trio.current_time())

    def answer_call(
        self,
        client_id: str,
        channel: str,
        message_id: Any,
        *,
        data: Any = None,
        error: str | None = None,
    ) -> bool:
        """A service call's result (see :meth:`bayeux_core.Engine.answer_call`)."""
        if self._pumping:
            self._deferred.append(
                partial(self._answer_call, client_id, channel, message_id, data, error)
            )
            return self.engine.store.get(client_id) is not None
        done = self._answer_call(client_id, channel, message_id, data, error)
        self._pump()
        return done

    def _answer_call(
        self, client_id: str, channel: str, message_id: Any, data: Any, error: str | None
    ) -> bool:
        return self.engine.answer_call(
            client_id, channel, message_id, now=trio.current_time(), data=data, error=error
        )

    # ------------------------------------------------------ a cluster bus's

    def route(
        self, channel: str, payload: bytes, *, now: float, offset: int | None = None
    ) -> Collection[Session]:
        """Route a delivery from the bus; call :meth:`pump` after a run of them.

        A bus reads in a task of its own, never inside a pass; ``now`` is
        ``trio.current_time()``, read once for the run.
        """
        if self._pumping:
            raise LocalProtocolError("route() inside a pass")
        return self.engine.route(channel, payload, now=now, offset=offset)

    def adopt(
        self,
        client_id: str,
        *,
        subscriptions: Iterable[str] = (),
        backlog: Iterable[bytes] = (),
        connected: bool = True,
        user: str | None = None,
        info: Any = None,
        access: Any = None,
        acked: tuple[int, Iterable[bytes]] | None = None,
    ) -> None:
        """Take over a session from another node (see :meth:`bayeux_core.Engine.adopt`)."""
        if self._pumping:
            raise LocalProtocolError("adopt() inside a pass")
        self.engine.adopt(
            client_id,
            now=trio.current_time(),
            subscriptions=subscriptions,
            backlog=backlog,
            connected=connected,
            user=user,
            info=info,
            access=access,
            acked=acked,
        )
        self._pump()

    def evict(self, client_id: str) -> bool:
        """Drop a session another node took over; False if there is none here."""
        if self._pumping:
            self._deferred.append(partial(self._evict, client_id))
            return self.engine.store.get(client_id) is not None
        done = self._evict(client_id)
        if done:
            self._pump()
        return done

    def _evict(self, client_id: str) -> bool:
        return self.engine.evict(client_id, now=trio.current_time())

    def share_history(self, epoch: str, start: int) -> bool:
        """Number history from the bus's log (no actions follow)."""
        return self.engine.share_history(epoch, start)

    def numbered(self, channel: str, payload: bytes, offset: int) -> bytes:
        """``payload`` as :meth:`route` would number it (a read: no state changes)."""
        return self.engine.numbered(channel, payload, offset)

    # ------------------------------------------------------------ execution

    def _pump(self, held: list[Action] | None = None) -> None:
        """Run the engine's actions (``held`` first), then deferred inputs, until none are left."""
        engine = self.engine
        self._pumping = True
        try:
            if held:
                self._run(held)
            while True:
                while actions := engine.actions_to_send():
                    if self.intercept is not None:
                        actions = self.intercept(actions)
                    self._run(actions)
                if not self._deferred:
                    break
                self._run_deferred()
        finally:
            self._pumping = False
        batch_task = self._batch_task
        if batch_task is None or batch_task is not trio.lowlevel.current_task():
            self._flush()
        self._update_timer()

    def _run(self, actions: list[Action]) -> None:
        engine = self.engine
        endpoints = self._endpoints
        for action in actions:
            kind = type(action)
            if kind is Deliver:
                self._deliver(action)  # type: ignore[arg-type]
            elif kind is Reply:
                reply: Reply = action  # type: ignore[assignment]
                endpoint = endpoints.get(reply.conn)
                if endpoint is None or not endpoint.reply(reply.conn, reply.body):
                    # Part of executing the action, not a new input: made now.
                    engine.reply_failed(reply, now=trio.current_time())
                else:
                    self.responses += 1
                    self.delivered += len(reply.messages)
            elif kind is Close:
                endpoint = endpoints.get(action.conn)  # type: ignore[attr-defined]
                if endpoint is not None:
                    endpoint.close_stream()
            else:
                self._notify(action)  # type: ignore[arg-type]

    def _run_deferred(self) -> None:
        deferred = self._deferred
        self._deferred = []
        for work in deferred:
            try:
                work()
            except Exception:
                log.exception("deferred engine input %r failed", work)

    def pump(self) -> None:
        """Run what the engine has to send (after :meth:`route`)."""
        if not self._pumping:
            self._pump()

    def execute(self, actions: list[Action]) -> None:
        """Run actions that :attr:`intercept` held back, then pump."""
        if self._pumping:  # pragma: no cover - the bus executes from its own tasks
            raise LocalProtocolError("execute() inside a pass")
        self._pump(actions)

    def _deliver(self, action: Deliver) -> None:
        endpoints = self._endpoints
        frames: list[bytes | None] = [None, None, None, None]
        dirty = self._dirty
        self.delivered += len(action.conns)
        for conn in action.conns:
            endpoint = endpoints.get(conn)
            if endpoint is None:
                continue
            kind = endpoint.kind
            frame = frames[kind]
            if frame is None:
                frame = frames[kind] = _frame(kind, action.payload)
            output = endpoint.output
            if output is None:
                endpoint.push(frame)
            elif output.write(frame) and not output.dirty:
                output.dirty = True
                dirty.append(output)

    def flush(self) -> None:
        """Send what is buffered on every dirty connection."""
        self._flush()

    def _flush(self) -> None:
        if not self._dirty:
            return
        nursery = self._nursery
        if nursery is None:
            raise LocalProtocolError("the hub is not running")
        dirty = self._dirty
        self._dirty = []
        for output in dirty:
            output.flush(nursery)
        if self.after_flush is not None:
            self.after_flush()

    def _notify(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed on %s", listener, type(event).__name__)

    def _update_timer(self) -> None:
        deadline = self.engine.get_timer()
        if deadline is None:
            deadline = math.inf
        else:
            # max(): float rounding must never move a deadline earlier
            deadline = max(deadline, math.ceil(deadline / TIMER_TICK) * TIMER_TICK)
        if deadline != self._timer_deadline:
            self._timer_deadline = deadline
            self._timer_scope.deadline = deadline


def _check_publishable(channel: str) -> None:
    """Raise as :meth:`bayeux_core.Engine.publish` does for a channel it refuses."""
    if not is_valid_name(channel):
        raise LocalProtocolError(f"invalid channel {channel!r}", ErrorCode.CHANNEL_INVALID)
    if is_meta(channel) or is_service(channel):
        raise LocalProtocolError(f"cannot publish to {channel!r}", ErrorCode.CHANNEL_FORBIDDEN)


def _frame(kind: Kind, payload: bytes) -> bytes:
    body = b"[" + payload + b"]"
    if kind is Kind.WEBSOCKET:
        return ws_text_frame(body)
    if kind is Kind.EVENTSOURCE:
        return chunk(event_bytes(body))
    return body
