"""The embedding API: events, server-side publish, extensions, graceful close."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from bayeux_core import (
    Disconnected,
    DisconnectReason,
    Event,
    Extension,
    Handshaken,
    LocalProtocolError,
    Message,
    MessageContext,
    Published,
    Subscribed,
    Unsubscribed,
)
from bayeux_core.wire import HttpRequest
from bayeux_trio import AsyncExtension, BayeuxServer, ServerConfig

from .helpers import (
    HANDSHAKE,
    HttpClient,
    LongPoller,
    WsClient,
    bayeux,
    deliveries,
    fail_after,
    handshake,
    make_config,
    start_server,
    wait_for,
)


@fail_after(10)
async def test_events_through_on(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    seen: list[Event] = []
    handshakes: list[Handshaken] = []
    server.on(Handshaken, handshakes.append)
    server.on(Subscribed, seen.append)
    server.on(Unsubscribed, seen.append)
    server.on(Published, seen.append)
    listener = server.on(Disconnected, seen.append)

    client = LongPoller(server.port)
    await client.start("/a/*")
    cid = client.client_id
    assert handshakes == [Handshaken(cid)]
    await client.publish("/a/b", {"x": 1})
    await client.send([{"channel": "/meta/unsubscribe", "clientId": cid, "subscription": "/a/*"}])
    await client.send([{"channel": "/meta/disconnect", "clientId": cid}])
    assert seen == [
        Subscribed(cid, "/a/*"),
        Published(cid, "/a/b", {"x": 1}, None),
        Unsubscribed(cid, "/a/*"),
        Disconnected(cid, DisconnectReason.CLIENT),
    ]
    server.remove_listener(listener)
    other = LongPoller(server.port)
    await other.handshake()
    await other.send([{"channel": "/meta/disconnect", "clientId": other.client_id}])
    assert len([e for e in seen if isinstance(e, Disconnected)]) == 1


@fail_after(10)
async def test_add_listener_sees_every_event(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    seen: list[Event] = []
    server.add_listener(seen.append)
    server.publish("/nobody/listens", 1)
    assert seen == [Published(None, "/nobody/listens", 1, None)]


@fail_after(10)
async def test_failing_listener_does_not_break_the_server(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(nursery)
    assert server.port is not None

    def broken(event: Handshaken) -> None:
        raise RuntimeError("listener bug")

    server.on(Handshaken, broken)
    await handshake(server.port)
    await handshake(server.port)
    assert len(server.engine.store) == 2
    assert "listener bug" in caplog.text


@fail_after(10)
async def test_server_publish_reaches_every_kind_of_subscriber(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    poller = LongPoller(server.port)
    await poller.start("/news/**")
    ws_id = await handshake(server.port)
    async with await WsClient.connect(server.port) as ws:
        await ws.send_json(
            [
                {"channel": "/meta/subscribe", "clientId": ws_id, "subscription": "/news/*"},
                {"channel": "/meta/connect", "clientId": ws_id, "connectionType": "websocket"},
            ]
        )
        await ws.receive_json()
        server.publish("/news/sport", {"score": [1, 0]}, ext={"from": "server"})
        expected = [
            {"channel": "/news/sport", "data": {"score": [1, 0]}, "ext": {"from": "server"}}
        ]
        assert await ws.receive_json() == expected
        assert deliveries(await poller.connect()) == expected


@pytest.mark.parametrize("channel", ["/meta/connect", "/service/x", "/a/*", "no-slash", "/a/**"])
@fail_after(10)
async def test_server_publish_refuses_bad_channels(nursery: trio.Nursery, channel: str) -> None:
    server = await start_server(nursery)
    with pytest.raises(LocalProtocolError):
        server.publish(channel, 1)


@fail_after(10)
async def test_server_publish_refuses_data_that_is_not_json(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    poller = LongPoller(server.port)
    await poller.start("/x")
    with pytest.raises(LocalProtocolError):
        server.publish("/x", object())
    session = server.engine.store.get(poller.client_id)
    assert session is not None
    assert len(session.queue) == 0


class Refuser(AsyncExtension):
    """Refuses subscriptions to /private/**, after an await when ``yields``."""

    def __init__(self, *, yields: bool) -> None:
        self.yields = yields
        self.requests: list[object] = []

    async def incoming(self, message: Message, request: object) -> Message | None:
        if self.yields:
            await trio.lowlevel.checkpoint()
        self.requests.append(request)
        subscription = message.get("subscription")
        if (
            message.get("channel") == "/meta/subscribe"
            and isinstance(subscription, str)
            and subscription.startswith("/private/")
        ):
            message["error"] = "403::Forbidden"
        return message


@pytest.mark.parametrize("yields", [False, True])
@fail_after(10)
async def test_async_extension_refuses_a_subscribe(nursery: trio.Nursery, yields: bool) -> None:
    refuser = Refuser(yields=yields)
    server = await start_server(nursery, extensions=[refuser])
    assert server.port is not None
    client = LongPoller(server.port)
    await client.handshake()
    replies = await client.send(
        [
            {"channel": "/meta/subscribe", "clientId": client.client_id, "subscription": s}
            for s in ("/private/x", "/public/x")
        ]
    )
    assert replies[0] == {
        "channel": "/meta/subscribe",
        "successful": False,
        "error": "403::Forbidden",
    }
    assert replies[1]["successful"] is True
    session = server.engine.store.get(client.client_id)
    assert session is not None
    assert session.subscriptions == {"/public/x"}
    # it saw each message with its HTTP request (handshake, then the two subscribes)
    assert len(refuser.requests) == 3
    assert all(isinstance(r, HttpRequest) and r.target == b"/faye" for r in refuser.requests)
    # and over a WebSocket too
    async with await WsClient.connect(server.port) as ws:
        await ws.send_json(
            [
                {
                    "channel": "/meta/subscribe",
                    "clientId": client.client_id,
                    "subscription": "/private/y",
                }
            ]
        )
        (reply,) = await ws.receive_json()
        assert reply["error"] == "403::Forbidden"


class Dropper(AsyncExtension):
    async def incoming(self, message: Message, request: object) -> Message | None:
        await trio.lowlevel.checkpoint()
        return None if message.get("channel") == "/drop" else message


@fail_after(10)
async def test_async_extension_drops_messages(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, extensions=[Dropper()])
    assert server.port is not None
    client = LongPoller(server.port)
    await client.handshake()
    replies = await client.send(
        [
            {"channel": "/drop", "clientId": client.client_id, "data": 1},
            {"channel": "/keep", "clientId": client.client_id, "data": 2},
        ]
    )
    assert [r["channel"] for r in replies] == ["/keep"]
    assert await client.send([{"channel": "/drop", "clientId": client.client_id, "data": 1}]) == []


class TokenCheck(Extension):
    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == "/meta/handshake" and message.get("ext") != {"token": "t"}:
            message["error"] = "401::Bad token"
        return message


@fail_after(10)
async def test_sync_extension_and_removal(nursery: trio.Nursery) -> None:
    check = TokenCheck()
    server = await start_server(nursery, extensions=[check])
    assert server.port is not None
    client = LongPoller(server.port)
    (refused,) = await bayeux(server.port, [HANDSHAKE])
    assert refused["successful"] is False
    assert refused["error"] == "401::Bad token"
    (accepted,) = await bayeux(server.port, [{**HANDSHAKE, "ext": {"token": "t"}}])
    assert accepted["successful"] is True
    server.remove_extension(check)
    assert await client.handshake()


def test_add_extension_refuses_other_objects() -> None:
    server = BayeuxServer(ServerConfig(port=0))
    with pytest.raises(TypeError):
        server.add_extension(object())  # type: ignore[arg-type]


@fail_after(10)
async def test_graceful_close_answers_held_connects(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(timeout=60))
    assert server.port is not None
    poller = LongPoller(server.port)
    await poller.start("/x")
    session = server.engine.store.get(poller.client_id)
    assert session is not None
    results: list[list[dict[str, Any]]] = []

    async def held() -> None:
        results.append(await poller.connect())

    nursery.start_soon(held)
    await wait_for(lambda: session.held is not None)
    # grace is long: close must return as soon as the output is drained, not after it
    with trio.fail_after(5):
        await server.close(grace=30)
    await wait_for(lambda: bool(results))
    (reply,) = results[0]
    assert reply["channel"] == "/meta/connect"
    assert reply["successful"] is True
    assert reply["advice"]["reconnect"] == "retry"
    # no longer listening
    with pytest.raises(OSError, match="connect"):
        await HttpClient.connect(server.port)


@fail_after(10)
async def test_serve_returns_after_close() -> None:
    server = BayeuxServer(make_config())
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        assert server.url == f"http://127.0.0.1:{server.port}/faye"
        await server.close()
    # the nursery exited on its own: serve() returned
