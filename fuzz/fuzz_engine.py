"""Fuzz target: the engine's receive path, driven like a network layer would.

Each input builds a fresh :class:`~bayeux_core.Engine` (configuration and
extensions picked by the input), runs a fixed prefix that leaves four clients
in interesting states, offers the whole input once as a request body, then
reads the input again with :class:`atheris.FuzzedDataProvider` as a program of
operations:

* a raw body through :func:`~bayeux_core.decode_body` into
  :meth:`~bayeux_core.Engine.receive`, on a new request connection or on an
  open stream;
* a batch of well-formed messages built from templates (every channel kind,
  the prefix's client ids and some bad ones), so deep paths stay reachable;
* :meth:`~bayeux_core.Engine.open_stream`, plain or with a client id (known
  or arbitrary, as an EventSource URL would carry);
* :meth:`~bayeux_core.Engine.close` of a request or stream connection;
* time passing and :meth:`~bayeux_core.Engine.handle_timer`;
* a server :meth:`~bayeux_core.Engine.publish`;
* :meth:`~bayeux_core.Engine.reply_failed` for a reply that carried messages;
* :meth:`~bayeux_core.Engine.release_held`;
* draining the actions now or letting several inputs share one drain.

Invariants (each an ``assert``; any exception is a finding):

* nothing raises. :class:`~bayeux_core.LocalProtocolError` is for caller
  misuse, and this harness never misuses the API (fresh connection ids, no
  input on closed connections, valid server publishes), so it is a finding too;
* every :class:`~bayeux_core.Reply` body is a JSON array of objects, and the
  queued messages it reports are in it;
* a request connection gets at most one reply, and after the final
  ``release_held`` every request connection not closed has had exactly one;
* no action names a connection after the harness closed it; ``Deliver`` and
  ``Close`` name open streams only;
* a delivery (pushed or queued) holds ``channel``, ``data`` and ``ext`` only;
* a few rounds of ``handle_timer(now)`` and a drain leave no deadline at or
  before ``now`` (a network layer cannot spin on a timer).

Run it with ``python fuzz/fuzz_engine.py -max_total_time=60``. See
``fuzz/README.md``.
"""

from __future__ import annotations

import itertools
import sys
from collections import Counter
from typing import Any

import atheris
import orjson

from bayeux_core import (
    Action,
    BodyError,
    Close,
    Deliver,
    Engine,
    EngineConfig,
    Event,
    Extension,
    Handshaken,
    Message,
    MessageContext,
    OverflowPolicy,
    Reply,
    decode_body,
)

#: The ids the prefix's clients get, in handshake order: a long-polling client
#: with a held connect, a WebSocket client, a client that handshook only, and
#: an EventSource client. Seed files use them, so they reach deep paths.
CLIENT_IDS = tuple(f"{n:031d}" for n in range(1, 5))

_DELIVERY_KEYS = frozenset({"channel", "data", "ext"})
_CHANNELS = (
    "/meta/handshake",
    "/meta/connect",
    "/meta/subscribe",
    "/meta/unsubscribe",
    "/meta/disconnect",
    "/meta/subscribe/x",
    "/meta/process",
    "/meta",
    "/service/echo",
    "/service",
    "/a",
    "/a/b",
    "/a/b/c",
    "/private",
    "/x",
    "/a/*",
    "/a/**",
    "a/b",
    "",
)
_PUBLISH_CHANNELS = ("/a", "/a/b", "/a/b/c", "/x", "/private", "/z/y")
_PATTERNS = (
    "/a",
    "/a/b",
    "/a/*",
    "/a/**",
    "/**",
    "/*",
    "/private",
    "/service/echo",
    "/service/**",
    "/meta/connect",
    "/meta/**",
    "/a/*/b",
    "/a*",
    "",
)
_CONNECTION_TYPES = ("long-polling", "websocket", "eventsource", "callback-polling", "flash", "")
_BAD_CLIENT_IDS: tuple[object, ...] = ("", "__proto__", "nope", 7, None, ["x"])
_DATA: tuple[object, ...] = (None, 0, "hello", {"text": "hi"}, [1, 2, 3], {"nested": {"k": [True]}})
_ADVICE: tuple[object, ...] = (
    None,
    {"timeout": 0},
    {"timeout": 1500},
    {"timeout": -1},
    {"timeout": "10"},
    {"timeout": True},
    {"timeout": 1e12},
    [],
)
_IDS: tuple[object, ...] = ("1", 2, 3.5, None, {"x": 1}, True, "drop")


class _Gate(Extension):
    """Refuses and drops some incoming messages, as an auth extension would."""

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        ext = message.get("ext")
        if type(ext) is dict:
            if ext.get("drop"):
                return None
            if "error" in ext:
                message["error"] = ext["error"]  # any JSON value
        if message.get("channel") == "/meta/subscribe" and message.get("subscription") in (
            "/private",
            ["/private"],
        ):
            message["error"] = "403::Private channel"
        return message


class _Stamp(Extension):
    """Rewrites deliveries per recipient, and drops them for one client."""

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if not context.is_delivery:
            return message
        if context.client_id == CLIENT_IDS[2]:
            return None
        message["ext"] = {"to": context.client_id}
        return message


class _ReplyFilter(Extension):
    """Sees replies only: drops some, edits the advice of others."""

    outgoing_deliveries = False

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("id") == "drop":
            return None
        advice = message.get("advice")
        if type(advice) is dict:
            advice["multiple-clients"] = False
        return message


def _config(fdp: atheris.FuzzedDataProvider) -> EngineConfig:
    return EngineConfig(
        timeout=fdp.PickValueInList([25.0, 0.0, 0.5]),
        interval=fdp.PickValueInList([0.0, 0.25]),
        session_timeout=fdp.PickValueInList([30.0, 0.0, 1.0]),
        max_queue=fdp.PickValueInList([10_000, 1, 3]),
        overflow=fdp.PickValueInList([OverflowPolicy.DROP_OLDEST, OverflowPolicy.DISCONNECT]),
        max_batch=fdp.PickValueInList([1_000, 2]),
        max_subscriptions=fdp.PickValueInList([1_000, 1, 2]),
        max_clients=fdp.PickValueInList([1_000, 5]),
    )


def _extensions(fdp: atheris.FuzzedDataProvider) -> list[Extension]:
    mask = fdp.ConsumeIntInRange(0, 7)
    kinds: list[type[Extension]] = [_Gate, _Stamp, _ReplyFilter]
    return [kind() for bit, kind in enumerate(kinds) if mask & (1 << bit)]


def _check_delivery(raw: bytes) -> None:
    delivery = orjson.loads(raw)
    assert type(delivery) is dict, delivery
    assert delivery.keys() <= _DELIVERY_KEYS, delivery
    assert type(delivery["channel"]) is str, delivery


class Harness:
    """A make-believe network layer that checks what the engine asks of it."""

    def __init__(self, config: EngineConfig, extensions: list[Extension]) -> None:
        numbers = itertools.count(1)
        self.engine = Engine(
            config, extensions=extensions, client_id_generator=lambda: f"{next(numbers):031d}"
        )
        self.now = 0.0
        self._conns = itertools.count(1)
        self._message_ids = itertools.count(1)
        #: request connections waiting for their one reply
        self.waiting: set[int] = set()
        #: request connections that got their reply
        self.answered: set[int] = set()
        self.streams: set[int] = set()
        self.closed: set[int] = set()
        self.client_ids: list[str] = []
        #: replies that carried queued messages (for reply_failed)
        self.carried: list[Reply] = []
        #: deliveries seen (pushed to a stream or carried by a reply)
        self.deliveries = 0
        #: application events seen, by class name
        self.events: Counter[str] = Counter()

    # ----------------------------------------------------------- inputs

    def request(self, messages: list[Any]) -> int:
        conn = next(self._conns)
        self.waiting.add(conn)
        self.engine.receive(conn, messages, now=self.now)
        return conn

    def on_stream(self, conn: int, messages: list[Any]) -> None:
        assert conn in self.streams
        self.engine.receive(conn, messages, now=self.now)

    def open_stream(self, client_id: Any = None) -> int:
        conn = next(self._conns)
        self.streams.add(conn)
        bound = self.engine.open_stream(conn, now=self.now, client_id=client_id)
        assert bound or client_id is not None
        return conn

    def close(self, conn: int) -> None:
        # Actions queued before the close may still name the connection (a
        # network layer drops those writes); draining first keeps the "nothing
        # after close" check exact.
        self.drain()
        self._closed(conn)

    def _closed(self, conn: int) -> None:
        self.engine.close(conn, now=self.now)
        self.waiting.discard(conn)
        self.streams.discard(conn)
        self.closed.add(conn)

    def advance(self, to: float) -> None:
        """Move the clock and fire timers until the next deadline is later.

        A drain may set a deadline at ``now`` (a released connect starts a
        session timeout of 0), so a network layer fires again at once; it must
        not take more than a few rounds.
        """
        self.now = max(self.now, to)
        for _ in range(4):
            self.engine.handle_timer(self.now)
            self.drain()
            deadline = self.engine.get_timer()
            if deadline is None or deadline > self.now:
                return
        raise AssertionError(f"timers due at {deadline} keep firing at {self.now}")

    def message(self, channel: str, client_id: Any = None, **fields: Any) -> Message:
        message: Message = {"channel": channel, "id": str(next(self._message_ids))}
        if client_id is not None:
            message["clientId"] = client_id
        message.update(fields)
        return message

    # ---------------------------------------------------------- outputs

    def drain(self) -> list[Action]:
        actions = self.engine.actions_to_send()
        to_close: list[int] = []
        for action in actions:
            if isinstance(action, Reply):
                self._check_reply(action)
            elif isinstance(action, Deliver):
                _check_delivery(action.payload)
                for conn in action.conns:
                    assert conn in self.streams, (action, self.streams)
                self.deliveries += len(action.conns)
            elif isinstance(action, Close):
                assert action.conn in self.streams, (action, self.streams)
                to_close.append(action.conn)
            elif isinstance(action, Event):
                self.events[type(action).__name__] += 1
                if isinstance(action, Handshaken):
                    self.client_ids.append(action.client_id)
            else:
                raise AssertionError(f"unknown action {action!r}")
        for conn in to_close:
            if conn in self.streams:
                self._closed(conn)
        return actions

    def _check_reply(self, reply: Reply) -> None:
        conn = reply.conn
        assert conn not in self.closed, reply
        if conn not in self.streams:
            assert conn in self.waiting, ("second reply", reply, conn in self.answered)
            self.waiting.discard(conn)
            self.answered.add(conn)
        body = orjson.loads(reply.body)
        assert type(body) is list, reply
        for message in body:
            assert type(message) is dict, reply
        if reply.messages:
            assert reply.client_id is not None, reply
            self.carried.append(reply)
        for raw in reply.messages:
            assert raw in reply.body, reply
            _check_delivery(raw)
            self.deliveries += 1

    def finish(self) -> None:
        self.engine.release_held(now=self.now)
        self.drain()
        assert not self.waiting, ("request connections never answered", sorted(self.waiting))


def _prefix(h: Harness) -> None:
    """Four clients, as ``CLIENT_IDS`` describes them."""
    handshake = {"version": "1.0", "supportedConnectionTypes": ["long-polling", "websocket"]}
    # 1: long-polling, subscribed to /a/**, its second connect held.
    h.request([h.message("/meta/handshake", **handshake)])
    one = CLIENT_IDS[0]
    h.request([h.message("/meta/connect", one, connectionType="long-polling")])
    h.request([h.message("/meta/subscribe", one, subscription="/a/**")])
    h.request([h.message("/meta/connect", one, connectionType="long-polling")])
    # 2: WebSocket, subscribed to /a/b, bound to its stream by a connect.
    ws = h.open_stream()
    h.on_stream(ws, [h.message("/meta/handshake", **handshake)])
    two = CLIENT_IDS[1]
    h.on_stream(
        ws,
        [
            h.message("/meta/connect", two, connectionType="websocket"),
            h.message("/meta/subscribe", two, subscription="/a/b"),
        ],
    )
    # 3: handshaken only, subscribed to /** (its messages pile up).
    h.request([h.message("/meta/handshake", **handshake)])
    h.request([h.message("/meta/subscribe", CLIENT_IDS[2], subscription="/**")])
    # 4: EventSource, subscribed to /a/*.
    h.request([h.message("/meta/handshake", **handshake)])
    h.drain()
    four = CLIENT_IDS[3]
    h.open_stream(four)
    h.request(
        [
            h.message("/meta/connect", four, connectionType="eventsource"),
            h.message("/meta/subscribe", four, subscription="/a/*"),
        ]
    )
    h.drain()


def _client_id(h: Harness, fdp: atheris.FuzzedDataProvider) -> Any:
    if fdp.ConsumeIntInRange(0, 3) == 0:
        return fdp.PickValueInList(list(_BAD_CLIENT_IDS))
    return fdp.PickValueInList(h.client_ids or list(CLIENT_IDS))


def _template(h: Harness, fdp: atheris.FuzzedDataProvider) -> Message:
    channel = fdp.PickValueInList(list(_CHANNELS))
    client_id = _client_id(h, fdp)
    message = h.message(channel, client_id)
    if fdp.ConsumeBool():
        message["id"] = fdp.PickValueInList(list(_IDS))
    if channel.startswith("/meta/handshake"):
        message.pop("clientId", None)
        message["version"] = fdp.PickValueInList(["1.0", "", 1])
        message["supportedConnectionTypes"] = fdp.PickValueInList(
            [["long-polling"], ["websocket", "eventsource"], ["flash"], [], "long-polling", [3]]
        )
    elif channel.startswith("/meta/connect"):
        message["connectionType"] = fdp.PickValueInList(list(_CONNECTION_TYPES))
        advice = fdp.PickValueInList(list(_ADVICE))
        if advice is not None:
            message["advice"] = advice
    elif channel.startswith(("/meta/subscribe", "/meta/unsubscribe")):
        count = fdp.ConsumeIntInRange(0, 3)
        patterns = [fdp.PickValueInList(list(_PATTERNS)) for _ in range(count)]
        message["subscription"] = (
            patterns[0] if count == 1 and fdp.ConsumeBool() else patterns or None
        )
    elif not channel.startswith("/meta"):
        if fdp.ConsumeIntInRange(0, 7):
            message["data"] = fdp.PickValueInList(list(_DATA))
        if fdp.ConsumeBool():
            message["ext"] = fdp.PickValueInList(
                [{"token": "t"}, {"drop": True}, {"error": "403::No"}, {"error": 5}, "x"]
            )
        if fdp.ConsumeBool():
            # What a hostile publisher adds to take over its subscribers.
            message["advice"] = {"reconnect": "none"}
            message["successful"] = True
    return message


def _raw_body(fdp: atheris.FuzzedDataProvider) -> list[Any] | None:
    raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512))
    if fdp.ConsumeIntInRange(0, 7) == 0:
        # receive() documents that it answers anything, not only what
        # decode_body accepts, with error replies: offer any JSON array.
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return value if type(value) is list else None
    decoded = decode_body(raw)
    # A BodyError is answered by the network layer (HTTP 400, or a dropped
    # WebSocket frame); the engine never sees it.
    return None if isinstance(decoded, BodyError) else decoded


def _operation(h: Harness, fdp: atheris.FuzzedDataProvider) -> None:
    op = fdp.ConsumeIntInRange(0, 11)
    if op <= 1:
        messages = _raw_body(fdp)
        if messages is not None:
            if op == 0 or not h.streams:
                h.request(messages)
            else:
                h.on_stream(fdp.PickValueInList(sorted(h.streams)), messages)
    elif op <= 4:
        batch = [_template(h, fdp) for _ in range(fdp.ConsumeIntInRange(1, 3))]
        if op == 4 and h.streams:
            h.on_stream(fdp.PickValueInList(sorted(h.streams)), batch)
        else:
            h.request(batch)
    elif op == 5:
        h.open_stream()
    elif op == 6:
        client_id: Any = (
            fdp.PickValueInList(list(CLIENT_IDS))
            if fdp.ConsumeBool()
            else fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 40))
        )
        h.open_stream(client_id)
    elif op == 7:
        open_conns = sorted(h.waiting | h.streams)
        if open_conns:
            h.close(fdp.PickValueInList(open_conns))
    elif op == 8:
        deadline = h.engine.get_timer()
        if deadline is not None and fdp.ConsumeBool():
            h.advance(deadline)
        else:
            h.advance(h.now + fdp.ConsumeFloatInRange(0.0, 40.0))
    elif op == 9:
        ext = {"origin": "server"} if fdp.ConsumeBool() else None
        h.engine.publish(
            fdp.PickValueInList(list(_PUBLISH_CHANNELS)),
            fdp.PickValueInList(list(_DATA)),
            now=h.now,
            ext=ext,
        )
    elif op == 10:
        if h.carried:
            reply = h.carried.pop(fdp.ConsumeIntInRange(0, len(h.carried) - 1))
            h.engine.reply_failed(reply, now=h.now)
            if reply.conn in h.streams:
                h.close(reply.conn)
    else:
        h.engine.release_held(now=h.now)
    if fdp.ConsumeIntInRange(0, 3):
        h.drain()


def run(data: bytes) -> Harness:
    """Run one input and return the harness (tests look at its counters)."""
    fdp = atheris.FuzzedDataProvider(data)
    h = Harness(_config(fdp), _extensions(fdp))
    _prefix(h)
    whole = decode_body(data)
    if not isinstance(whole, BodyError):
        h.request(whole)
        h.drain()
    while fdp.remaining_bytes():
        _operation(h, fdp)
    h.finish()
    return h


def test_one_input(data: bytes) -> None:
    """One fuzz input; each invariant is an ``assert``."""
    run(data)


if __name__ == "__main__":
    import _runner

    _runner.run("engine", test_one_input, sys.argv)
