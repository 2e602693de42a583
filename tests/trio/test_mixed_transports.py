"""Clients on different transports talk to each other through one server."""

from __future__ import annotations

from typing import Any

import orjson
import trio

from .helpers import (
    EventSourceReader,
    LongPoller,
    WsClient,
    deliveries,
    fail_after,
    handshake,
    jsonp_target,
    request,
    start_server,
    wait_for,
)


async def _ws_subscriber(port: int, channel: str) -> tuple[WsClient, str]:
    client_id = await handshake(port)
    ws = await WsClient.connect(port)
    await ws.send_json(
        [
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel},
            {"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"},
        ]
    )
    replies = await ws.receive_json()
    assert [r["successful"] for r in replies] == [True, True]
    return ws, client_id


@fail_after(10)
async def test_websocket_subscriber_gets_long_polling_publish(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    ws, _ = await _ws_subscriber(server.port, "/room")
    async with ws:
        publisher = LongPoller(server.port)
        await publisher.handshake()
        reply = await publisher.publish("/room", {"from": "long-polling"})
        assert reply["successful"] is True
        assert await ws.receive_json() == [{"channel": "/room", "data": {"from": "long-polling"}}]


@fail_after(10)
async def test_long_polling_subscriber_gets_websocket_publish(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    subscriber = LongPoller(server.port)
    await subscriber.start("/room")
    results: list[list[dict[str, Any]]] = []

    async def held_connect() -> None:
        results.append(await subscriber.connect())

    nursery.start_soon(held_connect)
    session = server.engine.store.get(subscriber.client_id)
    assert session is not None
    await wait_for(lambda: session.held is not None)

    ws, ws_client_id = await _ws_subscriber(server.port, "/unrelated")
    async with ws:
        await ws.send_json(
            [
                {
                    "channel": "/room",
                    "clientId": ws_client_id,
                    "data": {"from": "websocket"},
                    "id": "7",
                }
            ]
        )
        assert await ws.receive_json() == [
            {"id": "7", "clientId": ws_client_id, "channel": "/room", "successful": True}
        ]
    await wait_for(lambda: bool(results))
    assert deliveries(results[0]) == [{"channel": "/room", "data": {"from": "websocket"}}]


@fail_after(10)
async def test_every_transport_receives_one_publish(nursery: trio.Nursery) -> None:
    """Long-polling, callback-polling, WebSocket and EventSource subscribers at once."""
    server = await start_server(nursery)
    assert server.port is not None
    port = server.port
    ws, _ = await _ws_subscriber(port, "/all")
    lp = LongPoller(port)
    await lp.start("/all")
    es_client = LongPoller(port, connection_type="eventsource")
    await es_client.handshake()
    await es_client.subscribe("/all")
    jsonp = LongPoller(port, connection_type="callback-polling")
    await jsonp.start("/all")
    stream = await EventSourceReader.open(port, f"/faye/{es_client.client_id}")
    async with ws:
        try:
            assert await stream.next_block() == "retry: 5000"
            server.publish("/all", "everyone")
            expected = [{"channel": "/all", "data": "everyone"}]
            assert await ws.receive_json() == expected
            assert await stream.next_data() == expected
            assert deliveries(await lp.connect()) == expected
            response = await request(port, "GET", jsonp_target([jsonp.connect_message()], "cb"))
            assert response.status == 200
            body = response.body.removeprefix(b"/**/cb(").removesuffix(b");")
            assert deliveries(orjson.loads(body)) == expected
        finally:
            await stream.aclose()
