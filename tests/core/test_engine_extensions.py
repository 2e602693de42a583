"""How the engine runs server extensions (faye.md 1.7).

Incoming hooks see each message before the engine acts on it; outgoing hooks
see every reply and every delivery, per recipient. The Extension class on its
own is tested in test_extensions.py.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bayeux_core import (
    Action,
    Deliver,
    Disconnected,
    DisconnectReason,
    Engine,
    EngineConfig,
    Extension,
    ExtensionFailed,
    Handshaken,
    LocalProtocolError,
    Message,
    MessageContext,
    OverflowPolicy,
    Published,
    QueueOverflow,
    Reply,
    Session,
    Subscribed,
    matches,
)

from .helpers import Wire, events, replies

LP = "long-polling"


def hs(**extra: Any) -> dict[str, Any]:
    return {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": [LP],
    } | extra


def connect(cid: str, ctype: str = LP, **extra: Any) -> dict[str, Any]:
    return {"channel": "/meta/connect", "clientId": cid, "connectionType": ctype} | extra


def subscribe(cid: str, subscription: Any, **extra: Any) -> dict[str, Any]:
    return {"channel": "/meta/subscribe", "clientId": cid, "subscription": subscription} | extra


def session(w: Wire, cid: str) -> Session:
    found = w.engine.store.get(cid)
    assert found is not None
    return found


def connected(w: Wire, *subscriptions: str) -> str:
    cid = w.handshake()
    if subscriptions:
        w.send([subscribe(cid, list(subscriptions))])
    w.send([connect(cid)])
    return cid


def streamed(w: Wire, *subscriptions: str) -> tuple[str, int]:
    """A client on a WebSocket, subscribed to ``subscriptions``."""
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    cid = w.handshake()
    w.send([subscribe(cid, list(subscriptions)), connect(cid, "websocket")], conn=ws)
    return cid, ws


def delivers(actions: list[Action]) -> list[Deliver]:
    return [a for a in actions if isinstance(a, Deliver)]


class Recorder(Extension):
    """Logs every call, with its context, to a shared list."""

    def __init__(self, name: str, log: list[tuple[str, str, MessageContext]]) -> None:
        self.name = name
        self.log = log

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        self.log.append((f"{self.name}.in", str(message.get("channel")), context))
        return message

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        self.log.append((f"{self.name}.out", str(message.get("channel")), context))
        return message


# --------------------------------------------------------------------- order


def test_incoming_and_outgoing_run_in_the_order_added() -> None:
    log: list[tuple[str, str, MessageContext]] = []
    w = Wire(extensions=(Recorder("a", log), Recorder("b", log)))
    w.engine.add_extension(Recorder("c", log))
    w.send([{"channel": "/x", "data": 1}])
    assert [name for name, _, _ in log] == ["a.in", "b.in", "c.in", "a.out", "b.out", "c.out"]


def test_each_message_of_a_batch_goes_through_incoming_before_its_reply() -> None:
    log: list[tuple[str, str, MessageContext]] = []
    w = Wire(extensions=(Recorder("a", log),))
    w.send([{"channel": "/x", "data": 1}, {"channel": "/y", "data": 1}])
    assert [(name, channel) for name, channel, _ in log] == [
        ("a.in", "/x"),
        ("a.out", "/x"),
        ("a.in", "/y"),
        ("a.out", "/y"),
    ]


def test_contexts_carry_now_client_request_and_kind() -> None:
    log: list[tuple[str, str, MessageContext]] = []
    w = Wire(extensions=(Recorder("a", log),))
    w.now = 7.0
    request = {"headers": [("origin", "https://example.com")]}
    w.engine.receive(1, [hs()], now=w.now, request=request)
    (cid,) = [e.client_id for e in w.engine.actions_to_send() if isinstance(e, Handshaken)]
    batch: list[Any] = [{"channel": "/x", "data": 1, "clientId": cid}, 5]
    w.engine.receive(2, batch, now=8.0)
    w.engine.actions_to_send()
    contexts = [(name, channel, ctx) for name, channel, ctx in log]
    assert contexts == [
        ("a.in", "/meta/handshake", MessageContext(7.0, None, request)),
        # the handshake reply names the new client
        ("a.out", "/meta/handshake", MessageContext(7.0, cid, request)),
        ("a.in", "/x", MessageContext(8.0, cid, None)),
        ("a.out", "/x", MessageContext(8.0, cid, None)),
        # a non-object item is never shown to incoming; its error reply is
        ("a.out", "None", MessageContext(8.0, None, None)),
    ]


def test_the_extension_list_is_copied_for_each_run() -> None:
    log: list[tuple[str, str, MessageContext]] = []

    class Quitter(Extension):
        def __init__(self, engine: Engine) -> None:
            self.engine = engine

        def incoming(self, message: Message, context: MessageContext) -> Message | None:
            self.engine.remove_extension(self)
            return message

    w = Wire()
    quitter = Quitter(w.engine)
    w.engine.add_extension(quitter)
    w.engine.add_extension(Recorder("after", log))
    w.send([{"channel": "/x", "data": 1}])
    # The extension after the one that removed itself still ran, both ways.
    assert [name for name, _, _ in log] == ["after.in", "after.out"]


# ------------------------------------------------------------------ incoming


class DropAll(Extension):
    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        return None if message.get("drop") else message


def test_incoming_none_drops_the_message_without_reply() -> None:
    log: list[tuple[str, str, MessageContext]] = []
    w = Wire(extensions=(DropAll(), Recorder("later", log)))
    sub = connected(w, "/x")
    log.clear()
    actions = w.send([{"channel": "/x", "data": 1, "drop": True, "id": "1"}])
    assert replies(actions) == []
    assert events(actions) == []
    assert not session(w, sub).queue
    assert log == []  # later extensions never saw it
    # Among others, only the dropped one is missing.
    actions = w.send(
        [
            {"channel": "/x", "data": 1, "drop": True, "id": "1"},
            {"channel": "/x", "data": 2, "id": "2"},
        ]
    )
    assert replies(actions) == [{"id": "2", "channel": "/x", "successful": True}]


def test_incoming_none_on_a_stream_sends_nothing() -> None:
    w = Wire(extensions=(DropAll(),))
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    assert w.send([{"channel": "/x", "data": 1, "drop": True}], conn=ws) == []


class Refuse(Extension):
    """Refuses every message on the channels it is given."""

    def __init__(self, *channels: str, error: str = "403::Access denied") -> None:
        self.channels = channels
        self.error = error

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") in self.channels:
            message["error"] = self.error
        return message


def test_incoming_error_refuses_a_publish() -> None:
    w = Wire(extensions=(Refuse("/x"),))
    sub = connected(w, "/x")
    actions = w.send([{"channel": "/x", "data": 1, "id": "1", "clientId": sub}])
    assert replies(actions) == [
        {"id": "1", "channel": "/x", "successful": False, "error": "403::Access denied"}
    ]
    assert events(actions) == []
    assert not session(w, sub).queue


def test_incoming_error_refuses_a_handshake_with_advice() -> None:
    w = Wire(extensions=(Refuse("/meta/handshake", error="Invalid auth token"),))
    actions = w.send([hs(id="1")])
    assert replies(actions) == [
        {
            "id": "1",
            "channel": "/meta/handshake",
            "successful": False,
            "error": "Invalid auth token",
            "version": "1.0",
            "supportedConnectionTypes": list(w.engine.config.connection_types),
            "advice": {"reconnect": "handshake", "interval": 1000},
        }
    ]
    assert events(actions) == []
    assert len(w.engine.store) == 0


def test_incoming_error_refuses_a_connect_with_advice() -> None:
    w = Wire(extensions=(Refuse("/meta/connect"),))
    cid = w.handshake()
    (reply,) = replies(w.send([connect(cid)]))
    assert reply == {
        "channel": "/meta/connect",
        "successful": False,
        "error": "403::Access denied",
        "advice": {"reconnect": "handshake", "interval": 1000},
    }
    assert session(w, cid).held is None


def test_incoming_can_rewrite_a_message() -> None:
    class Stamp(Extension):
        def incoming(self, message: Message, context: MessageContext) -> Message | None:
            if "data" in message:
                return message | {"data": {"stamped": message["data"]}}
            return message

    w = Wire(extensions=(Stamp(),))
    sub = connected(w, "/x")
    w.send([{"channel": "/x", "data": 1}])
    assert list(session(w, sub).queue) == [b'{"channel":"/x","data":{"stamped":1}}']


# ------------------------------------------------------------------ outgoing


def test_outgoing_sees_advice_and_can_rewrite_it() -> None:
    class Terminal(Extension):
        outgoing_deliveries = False

        def outgoing(self, message: Message, context: MessageContext) -> Message | None:
            if "advice" in message:
                message["advice"] = {"reconnect": "none", "interval": 0}
                message["ext"] = {"why": "maintenance"}
            return message

    terminal = Terminal()
    w = Wire(extensions=(terminal,))
    (reply,) = replies(w.send([hs()]))
    assert reply["advice"] == {"reconnect": "none", "interval": 0}
    assert reply["ext"] == {"why": "maintenance"}
    # The engine's own advice is not changed for the next reply.
    w.engine.remove_extension(terminal)
    (reply,) = replies(w.send([hs()]))
    assert reply["advice"] == {"reconnect": "retry", "interval": 0, "timeout": 25000}


class DropReplies(Extension):
    """Drops replies on the given channels (never deliveries)."""

    outgoing_deliveries = False

    def __init__(self, *channels: str) -> None:
        self.channels = channels

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        return None if message.get("channel") in self.channels else message


def test_outgoing_none_drops_a_reply() -> None:
    w = Wire(extensions=(DropReplies("/x"),))
    conn = w.conn()
    actions = w.send([{"channel": "/x", "data": 1}, {"channel": "/y", "data": 1}], conn=conn)
    assert replies(actions, conn) == [{"channel": "/y", "successful": True}]
    # A request always gets its one reply, if only `[]`.
    conn = w.conn()
    assert w.send([{"channel": "/x", "data": 1}], conn=conn) == [
        Published(None, "/x", 1),
        Reply(conn, b"[]"),
    ]


def test_outgoing_none_on_a_held_connect_reply_still_releases_it() -> None:
    w = Wire(extensions=(DropReplies("/meta/connect"),))
    cid = w.handshake()
    w.send([subscribe(cid, "/x"), connect(cid)])
    conn = w.conn()
    assert w.send([connect(cid)], conn=conn) == []
    w.engine.publish("/x", 1, now=w.now)
    actions = w.engine.actions_to_send()
    (reply,) = [a for a in actions if isinstance(a, Reply)]
    assert reply.conn == conn
    assert orjson.loads(reply.body) == [{"channel": "/x", "data": 1}]


def test_outgoing_none_on_a_connect_answered_at_batch_end() -> None:
    w = Wire(extensions=(DropReplies("/meta/connect"),))
    cid = connected(w, "/x")
    conn = w.conn()
    actions = w.send([connect(cid), {"channel": "/x", "data": 1, "id": "p"}], conn=conn)
    assert replies(actions, conn) == [
        {"id": "p", "channel": "/x", "successful": True},
        {"channel": "/x", "data": 1},
    ]


# --------------------------------------------------- outgoing on deliveries


class PerRecipient(Extension):
    """Tags each delivery with its recipient; drops it for ``blocked``."""

    def __init__(self) -> None:
        self.blocked: set[str] = set()
        self.seen: list[MessageContext] = []

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if not context.is_delivery:
            return message
        self.seen.append(context)
        if context.client_id in self.blocked:
            return None
        message["ext"] = {"for": context.client_id}
        return message


def test_outgoing_runs_per_recipient_and_can_drop_for_one() -> None:
    ext = PerRecipient()
    w = Wire(extensions=(ext,))
    a = connected(w, "/x")
    b = connected(w, "/x")
    c, ws = streamed(w, "/x")
    d, ws2 = streamed(w, "/x")
    ext.blocked = {b, d}
    w.now = 3.0
    actions = w.send([{"channel": "/x", "data": 1}])
    assert sorted((ctx.client_id, ctx.is_delivery, ctx.now) for ctx in ext.seen) == sorted(
        (cid, True, 3.0) for cid in (a, b, c, d)
    )
    assert all(ctx.request is None for ctx in ext.seen)
    assert [orjson.loads(m) for m in session(w, a).queue] == [
        {"channel": "/x", "data": 1, "ext": {"for": a}}
    ]
    assert not session(w, b).queue
    (deliver,) = delivers(actions)
    assert deliver.conns == (ws,)
    assert orjson.loads(deliver.payload) == {"channel": "/x", "data": 1, "ext": {"for": c}}
    assert ws2 not in deliver.conns
    assert events(actions) == [Published(None, "/x", 1)]


def test_outgoing_deliveries_false_keeps_one_shared_payload() -> None:
    class RepliesOnly(Extension):
        outgoing_deliveries = False

        def __init__(self) -> None:
            self.deliveries_seen = 0

        def outgoing(self, message: Message, context: MessageContext) -> Message | None:
            self.deliveries_seen += context.is_delivery
            message["ext"] = {"reply": True}
            return message

    ext = RepliesOnly()
    w = Wire(extensions=(ext,))
    _, ws1 = streamed(w, "/x")
    _, ws2 = streamed(w, "/x")
    a = connected(w, "/x")
    b = connected(w, "/x")
    actions = w.send([{"channel": "/x", "data": 1}])
    (deliver,) = delivers(actions)
    assert sorted(deliver.conns) == [ws1, ws2]
    assert deliver.payload == b'{"channel":"/x","data":1}'
    (qa,) = session(w, a).queue
    (qb,) = session(w, b).queue
    assert qa is deliver.payload
    assert qb is deliver.payload
    assert ext.deliveries_seen == 0
    assert replies(actions)[0]["ext"] == {"reply": True}


def test_removing_the_rewriting_extension_restores_the_shared_path() -> None:
    ext = PerRecipient()
    w = Wire(extensions=(ext,))
    _, ws1 = streamed(w, "/x")
    _, ws2 = streamed(w, "/x")
    assert len(delivers(w.send([{"channel": "/x", "data": 1}]))) == 2
    w.engine.remove_extension(ext)
    (deliver,) = delivers(w.send([{"channel": "/x", "data": 2}]))
    assert sorted(deliver.conns) == [ws1, ws2]


def test_per_recipient_deliveries_to_polling_clients_flush_held_connects() -> None:
    w = Wire(extensions=(PerRecipient(),))
    cid = connected(w, "/x")
    conn = w.conn()
    assert w.send([connect(cid)], conn=conn) == []
    w.engine.publish("/x", 1, now=w.now)
    body = replies(w.engine.actions_to_send(), conn)
    assert body[1] == {"channel": "/x", "data": 1, "ext": {"for": cid}}


def test_per_recipient_deliveries_respect_drop_oldest() -> None:
    w = Wire(EngineConfig(max_queue=1), extensions=(PerRecipient(),))
    cid = connected(w, "/x")
    for n in range(3):
        w.engine.publish("/x", n, now=w.now)
    actions = w.engine.actions_to_send()
    assert QueueOverflow(cid, 2) in actions
    assert [orjson.loads(m)["data"] for m in session(w, cid).queue] == [2]


def test_per_recipient_deliveries_respect_the_disconnect_policy() -> None:
    config = EngineConfig(max_queue=1, overflow=OverflowPolicy.DISCONNECT)
    w = Wire(config, extensions=(PerRecipient(),))
    a = connected(w, "/x")
    b = connected(w, "/x")
    w.engine.publish("/x", 1, now=w.now)
    w.engine.publish("/x", 2, now=w.now)
    actions = w.engine.actions_to_send()
    assert {e.client_id for e in actions if isinstance(e, Disconnected)} == {a, b}
    assert all(
        e.reason is DisconnectReason.OVERFLOW for e in actions if isinstance(e, Disconnected)
    )
    assert w.engine.store.get(a) is None


def test_per_recipient_path_refuses_unencodable_data_before_any_effect() -> None:
    ext = PerRecipient()
    w = Wire(extensions=(ext,))
    cid = connected(w, "/x")
    deep = orjson.loads(b"[" * 300 + b"]" * 300)
    with pytest.raises(LocalProtocolError):
        w.engine.publish("/x", deep, now=w.now)
    (reply,) = replies(w.send([{"channel": "/x", "data": deep}]))
    assert reply["error"] == "400:data:Cannot encode message"
    assert ext.seen == []
    assert not session(w, cid).queue


# ------------------------------------------------------- add and remove


def test_add_extension_refuses_what_is_not_an_extension() -> None:
    class Lookalike:
        def incoming(self, message: Message, context: MessageContext) -> Message | None:
            return message

    engine = Engine()
    with pytest.raises(LocalProtocolError):
        engine.add_extension(Lookalike())  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        Engine(extensions=[Lookalike()])  # type: ignore[list-item]


def test_remove_extension_refuses_one_never_added() -> None:
    engine = Engine(extensions=[Extension()])
    with pytest.raises(LocalProtocolError):
        engine.remove_extension(Extension())
    added = Extension()
    engine.add_extension(added)
    engine.remove_extension(added)
    with pytest.raises(LocalProtocolError):
        engine.remove_extension(added)


def test_a_removed_extension_no_longer_runs() -> None:
    log: list[tuple[str, str, MessageContext]] = []
    recorder = Recorder("r", log)
    w = Wire(extensions=(recorder,))
    w.engine.remove_extension(recorder)
    w.send([{"channel": "/x", "data": 1}])
    assert log == []


# ------------------------------------------ the private-chat auth extension


class ServerAuth(Extension):
    """Subscribing to a protected channel (or a pattern covering it) needs its
    token in ``ext.authToken``."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") != "/meta/subscribe":
            return message
        ext = message.get("ext")
        token = ext.get("authToken") if isinstance(ext, dict) else None
        subscription = message.get("subscription")
        for pattern in subscription if isinstance(subscription, list) else [subscription]:
            for channel, needed in self.tokens.items():
                if isinstance(pattern, str) and matches(pattern, channel) and token != needed:
                    message["error"] = "Invalid subscription auth token"
        return message


def test_server_auth_extension_refuses_and_accepts() -> None:
    w = Wire(extensions=(ServerAuth({"/chat/private": "s3cret"}),))
    cid = w.handshake()
    for ext in (None, {}, {"authToken": "wrong"}, "s3cret"):
        actions = w.send([subscribe(cid, "/chat/private", id="1", ext=ext)])
        assert replies(actions) == [
            {
                "id": "1",
                "channel": "/meta/subscribe",
                "successful": False,
                "error": "Invalid subscription auth token",
            }
        ]
        assert events(actions) == []
    # A list that hides the protected channel among others is refused whole.
    (reply,) = replies(w.send([subscribe(cid, ["/chat/public", "/chat/private"])]))
    assert reply["successful"] is False
    assert session(w, cid).subscriptions == set()
    # Public channels need no token; the right token opens the private one.
    actions = w.send([subscribe(cid, "/chat/public")])
    assert events(actions) == [Subscribed(cid, "/chat/public")]
    actions = w.send([subscribe(cid, "/chat/private", id="2", ext={"authToken": "s3cret"})])
    assert replies(actions) == [
        {
            "id": "2",
            "clientId": cid,
            "channel": "/meta/subscribe",
            "successful": True,
            "subscription": "/chat/private",
        }
    ]
    assert events(actions) == [Subscribed(cid, "/chat/private")]
    w.send([connect(cid)])
    w.engine.publish("/chat/private", "hello", now=w.now)
    assert list(session(w, cid).queue) == [b'{"channel":"/chat/private","data":"hello"}']


@pytest.mark.parametrize("pattern", ["/chat/*", "/chat/**", "/**"])
def test_server_auth_extension_covers_wildcards(pattern: str) -> None:
    """faye.md section 4: wildcard subscriptions must be covered by auth rules."""
    w = Wire(extensions=(ServerAuth({"/chat/private": "s3cret"}),))
    spy = connected(w)
    actions = w.send([subscribe(spy, pattern)])
    (reply,) = replies(actions)
    assert reply["error"] == "Invalid subscription auth token"
    w.engine.publish("/chat/private", "hello", now=w.now)
    assert not session(w, spy).queue


def test_replies_only_extension_stays_out_of_the_per_recipient_path() -> None:
    """With another extension rewriting deliveries, outgoing_deliveries=False still holds."""

    class RepliesOnly(Extension):
        outgoing_deliveries = False

        def __init__(self) -> None:
            self.deliveries_seen = 0

        def outgoing(self, message: Message, context: MessageContext) -> Message | None:
            self.deliveries_seen += context.is_delivery
            return message

    replies_only = RepliesOnly()
    w = Wire(extensions=(replies_only, PerRecipient()))
    _, ws1 = streamed(w, "/x")
    connected(w, "/x")
    actions = w.send([{"channel": "/x", "data": 1}])
    assert [d.conns for d in delivers(actions)] == [(ws1,)]
    assert replies_only.deliveries_seen == 0


def test_delivery_made_unencodable_by_an_extension_is_dropped_for_that_recipient() -> None:
    class Breaks(Extension):
        def outgoing(self, message: Message, context: MessageContext) -> Message | None:
            if context.is_delivery and context.client_id == victim:
                message["data"] = {1, 2}  # a set is not JSON
            return message

    w = Wire(extensions=(Breaks(),))
    victim, ws_victim = streamed(w, "/x")
    _, ws_other = streamed(w, "/x")
    actions = w.send([{"channel": "/x", "data": 1}])
    assert [d.conns for d in delivers(actions)] == [(ws_other,)]
    assert ws_victim != ws_other
    assert replies(actions) == [{"channel": "/x", "successful": True}]


# ------------------------------------------------ an extension that raises


class Broken(Extension):
    """Raises in the hook named ``where`` for messages on ``channel``."""

    def __init__(self, where: str, channel: str, *, deliveries: bool = True) -> None:
        self.where, self.channel = where, channel
        self.outgoing_deliveries = deliveries

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if self.where == "incoming" and message.get("channel") == self.channel:
            raise KeyError("bug in incoming")
        return message

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if self.where == "outgoing" and message.get("channel") == self.channel:
            raise KeyError("bug in outgoing")
        return message


def failures(actions: list[Action]) -> list[tuple[str, Any, str]]:
    return [(a.hook, a.channel, str(a.error)) for a in actions if isinstance(a, ExtensionFailed)]


def test_an_incoming_hook_that_raises_refuses_that_message_only() -> None:
    w = Wire(extensions=(Broken("incoming", "/meta/subscribe"),))
    cid = connected(w)
    batch = [
        {"channel": "/a", "clientId": cid, "data": 1, "id": "p1"},
        subscribe(cid, "/b", id="s"),
        {"channel": "/a", "clientId": cid, "data": 2, "id": "p2"},
    ]
    actions = w.send(batch)
    by_id = {r["id"]: r for r in replies(actions)}
    assert by_id["s"] == {
        "id": "s",
        "channel": "/meta/subscribe",
        "successful": False,
        "error": "500::Internal server error",
    }
    assert by_id["p1"]["successful"] is True
    assert by_id["p2"]["successful"] is True
    assert failures(actions) == [("incoming", "/meta/subscribe", "'bug in incoming'")]
    assert session(w, cid).subscriptions == set()


def test_an_incoming_hook_returning_a_non_dict_is_a_failure() -> None:
    class ReturnsList(Extension):
        def incoming(self, message: Message, context: MessageContext) -> Message | None:
            return [message]  # type: ignore[return-value]

    w = Wire(extensions=(ReturnsList(),))
    actions = w.send([{"channel": "/a", "data": 1, "id": "p"}])
    assert replies(actions) == [
        {"id": "p", "channel": "/a", "successful": False, "error": "500::Internal server error"}
    ]
    assert failures(actions) == [("incoming", "/a", "incoming() returned list, not a dict")]


def test_an_outgoing_hook_that_raises_on_a_reply_turns_it_into_an_error() -> None:
    w = Wire(extensions=(Broken("outgoing", "/meta/subscribe", deliveries=False),))
    cid = connected(w)
    actions = w.send([subscribe(cid, "/b", id="s"), {"channel": "/a", "data": 1, "id": "p"}])
    assert replies(actions) == [
        {
            "id": "s",
            "clientId": cid,
            "channel": "/meta/subscribe",
            "successful": False,
            "error": "500::Internal server error",
        },
        {"id": "p", "channel": "/a", "successful": True},
    ]
    assert failures(actions) == [("outgoing", "/meta/subscribe", "'bug in outgoing'")]


def test_an_outgoing_hook_that_makes_a_reply_unencodable_is_a_failure() -> None:
    class Unencodable(Extension):
        outgoing_deliveries = False

        def outgoing(self, message: Message, context: MessageContext) -> Message | None:
            message["ext"] = {1, 2}
            return message

    w = Wire(extensions=(Unencodable(),))
    actions = w.send([{"channel": "/a", "data": 1, "id": "p"}])
    assert replies(actions) == [
        {"id": "p", "channel": "/a", "successful": False, "error": "500::Internal server error"}
    ]
    assert [hook for hook, _, _ in failures(actions)] == ["outgoing"]


def test_an_outgoing_hook_that_raises_on_a_delivery_drops_it_for_that_recipient() -> None:
    class BrokenFor(Extension):
        def __init__(self) -> None:
            self.victim: str | None = None

        def outgoing(self, message: Message, context: MessageContext) -> Message | None:
            if context.is_delivery and context.client_id == self.victim:
                raise RuntimeError("bug")
            return message

    broken = BrokenFor()
    w = Wire(extensions=(broken,))
    victim, _ = streamed(w, "/x")
    _, ws2 = streamed(w, "/x")
    broken.victim = victim
    actions = w.send([{"channel": "/x", "data": 1, "id": "p"}])
    assert [d.conns for d in delivers(actions)] == [(ws2,)]
    assert failures(actions) == [("outgoing", "/x", "bug")]
    assert replies(actions)[-1]["successful"] is True


def test_the_docs_token_check_on_an_array_subscription_gets_a_reply() -> None:
    """docs/server.md's first version used the subscription as a dict key:
    a CometD-style array raised TypeError, and the connection was dropped."""

    tokens: dict[Any, str] = {"/private": "s3cret"}

    class NaiveAuth(Extension):
        def incoming(self, message: Message, context: MessageContext) -> Message | None:
            if message.get("channel") == "/meta/subscribe":
                token = (message.get("ext") or {}).get("authToken")
                if tokens.get(message.get("subscription")) != token:
                    message["error"] = "Invalid subscription auth token"
            return message

    w = Wire(extensions=(NaiveAuth(),))
    cid = w.handshake()
    actions = w.send([subscribe(cid, ["/a", "/private"], id="s")])
    (reply,) = replies(actions)
    assert reply["error"] == "500::Internal server error"
    assert [hook for hook, _, _ in failures(actions)] == ["incoming"]
