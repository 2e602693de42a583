"""The hub is never re-entered: work a listener starts runs after the pass.

A listener that publishes on :class:`Subscribed` (a welcome message, say) to
the channel just subscribed must not get its delivery to the client before the
subscribe reply: the client would see a message on a channel it does not know
it holds yet. Each test fails against a hub that pumps again from inside a
listener.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from bayeux_core import Subscribed
from bayeux_trio import BayeuxServer
from bayeux_trio.server._http import HttpConnection

from .helpers import LongPoller, WsClient, fail_after, handshake, start_server, wait_for

WELCOME = {"text": "welcome"}


def _welcome_on_subscribe(server: BayeuxServer) -> None:
    """Publish to each channel as soon as someone subscribes to it."""
    server.on(Subscribed, lambda event: server.publish(event.channel, WELCOME))


def _connect(client_id: str) -> dict[str, Any]:
    return {"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"}


def _subscribe(client_id: str, channel: str) -> dict[str, Any]:
    return {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel}


@fail_after(10)
async def test_websocket_subscribe_reply_comes_before_the_delivery(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery)
    _welcome_on_subscribe(server)
    assert server.port is not None
    client_id = await handshake(server.port)
    async with await WsClient.connect(server.port) as ws:
        await ws.send_json([_connect(client_id)])
        (first,) = await ws.receive_json()
        assert first["channel"] == "/meta/connect"
        await ws.send_json([_connect(client_id)])  # held from now on
        session = server.engine.store.get(client_id)
        assert session is not None
        await wait_for(lambda: session.held is not None)

        await ws.send_json([_subscribe(client_id, "/room")])
        frames = [await ws.receive_json(), await ws.receive_json()]
        assert [[m["channel"] for m in frame] for frame in frames] == [
            ["/meta/subscribe"],
            ["/room"],
        ], frames
        assert frames[0][0]["successful"] is True
        assert frames[1][0]["data"] == WELCOME


@fail_after(10)
async def test_websocket_subscribe_and_first_connect_in_one_batch(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery)
    _welcome_on_subscribe(server)
    assert server.port is not None
    client_id = await handshake(server.port)
    async with await WsClient.connect(server.port) as ws:
        await ws.send_json([_subscribe(client_id, "/room"), _connect(client_id)])
        replies = await ws.receive_json()
        assert [m["channel"] for m in replies] == ["/meta/subscribe", "/meta/connect"]
        assert await ws.receive_json() == [{"channel": "/room", "data": WELCOME}]


@fail_after(10)
async def test_long_polling_subscribe_reply_is_written_before_the_delivery(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The order in which the server hands bodies to its HTTP connections: two
    # requests cannot be told apart by arrival on loopback, the writes can.
    written: list[list[dict[str, Any]]] = []
    original = HttpConnection.reply

    def reply(self: HttpConnection, conn: int, body: bytes) -> bool:
        import orjson

        written.append(orjson.loads(body))
        return original(self, conn, body)

    monkeypatch.setattr(HttpConnection, "reply", reply)
    server = await start_server(nursery)
    _welcome_on_subscribe(server)
    assert server.port is not None
    poller = LongPoller(server.port)
    await poller.start()
    session = server.engine.store.get(poller.client_id)
    assert session is not None

    held: list[list[dict[str, Any]]] = []

    async def connect() -> None:
        held.append(await poller.connect())

    nursery.start_soon(connect)
    await wait_for(lambda: session.held is not None)
    written.clear()
    await poller.subscribe("/room")
    await wait_for(lambda: bool(held))

    # The held connect carries the delivery, after the subscribe reply.
    assert [m["channel"] for m in held[0]] == ["/meta/connect", "/room"]
    assert held[0][1]["data"] == WELCOME
    channels = [[m["channel"] for m in body] for body in written]
    assert channels == [["/meta/subscribe"], ["/meta/connect", "/room"]], channels


@fail_after(10)
async def test_long_polling_subscribe_and_connect_in_one_body(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    _welcome_on_subscribe(server)
    assert server.port is not None
    poller = LongPoller(server.port)
    await poller.start()
    replies = await poller.send(
        [
            {"channel": "/meta/subscribe", "clientId": poller.client_id, "subscription": "/room"},
            poller.connect_message(),
        ]
    )
    # One body: the subscribe reply, the connect reply, then the delivery.
    assert [m["channel"] for m in replies] == ["/meta/subscribe", "/meta/connect", "/room"]


@fail_after(10)
async def test_a_listener_that_kicks_on_subscribe_runs_after_the_reply(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery)
    results: list[bool] = []
    server.on(Subscribed, lambda event: results.append(server.disconnect(event.client_id)))
    assert server.port is not None
    client_id = await handshake(server.port)
    async with await WsClient.connect(server.port) as ws:
        await ws.send_json([_subscribe(client_id, "/room"), _connect(client_id)])
        replies = await ws.receive_json()
        assert [m["channel"] for m in replies] == ["/meta/subscribe", "/meta/connect"]
        assert all(m["successful"] is True for m in replies)
        await ws.expect_close()
    assert results == [True]
    assert server.engine.store.get(client_id) is None
