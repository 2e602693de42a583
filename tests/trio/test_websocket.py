"""The WebSocket transport: frames, holds, pings, limits and closing."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio
from wsproto.events import CloseConnection, Ping, Pong, TextMessage

from .helpers import (
    HANDSHAKE,
    LongPoller,
    WsClient,
    deliveries,
    fail_after,
    handshake,
    make_config,
    parse_response,
    raw_exchange,
    start_server,
    wait_for,
)


def _connect(client_id: str) -> dict[str, Any]:
    return {"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"}


def _subscribe(client_id: str, channel: str) -> dict[str, Any]:
    return {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel}


async def _bound_client(port: int, *channels: str) -> tuple[WsClient, str]:
    """Handshake over HTTP (as Faye's client does), then subscribe and connect over WS."""
    client_id = await handshake(port)
    ws = await WsClient.connect(port)
    await ws.send_json([*(_subscribe(client_id, c) for c in channels), _connect(client_id)])
    replies = await ws.receive_json()
    assert [r["channel"] for r in replies] == ["/meta/subscribe"] * len(channels) + [
        "/meta/connect"
    ]
    assert all(r["successful"] is True for r in replies), replies
    return ws, client_id


@fail_after(10)
async def test_handshake_over_websocket(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    async with await WsClient.connect(server.port) as ws:
        await ws.send_json(HANDSHAKE)  # a single object, not an array, is accepted too
        (reply,) = await ws.receive_json()
        assert reply["channel"] == "/meta/handshake"
        assert reply["successful"] is True
        assert "websocket" in reply["supportedConnectionTypes"]


@fail_after(10)
async def test_pushed_deliveries_are_one_frame_each(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    ws, client_id = await _bound_client(server.port, "/chat/**")
    async with ws:
        server.publish("/chat/a", {"n": 1})
        server.publish("/chat/b", "two")
        server.publish("/other", "not subscribed")
        assert await ws.receive_json() == [{"channel": "/chat/a", "data": {"n": 1}}]
        assert await ws.receive_json() == [{"channel": "/chat/b", "data": "two"}]
        # the next frame answers our next message: nothing else was pushed
        await ws.send_json([])
        assert await ws.receive_json() == []
    session = server.engine.store.get(client_id)
    assert session is not None
    assert len(session.queue) == 0


@fail_after(10)
async def test_held_connect_is_answered_at_its_timeout(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(timeout=0.3))
    assert server.port is not None
    ws, client_id = await _bound_client(server.port)
    async with ws:
        await ws.send_json([_connect(client_id)])
        await ws.send_json([_subscribe(client_id, "/later")])
        # The subscribe reply comes first: the connect was held, not answered.
        (subscribed,) = await ws.receive_json()
        assert subscribed["channel"] == "/meta/subscribe"
        assert subscribed["successful"] is True
        (connected,) = await ws.receive_json()
        assert connected["channel"] == "/meta/connect"
        assert connected["successful"] is True
        assert connected["advice"]["reconnect"] == "retry"
        assert connected["advice"]["timeout"] == 300


@fail_after(10)
async def test_held_connect_does_not_delay_pushes(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    ws, client_id = await _bound_client(server.port, "/x")
    async with ws:
        await ws.send_json([_connect(client_id)])
        session = server.engine.store.get(client_id)
        assert session is not None
        await wait_for(lambda: session.held is not None)
        server.publish("/x", 1)
        assert await ws.receive_json() == [{"channel": "/x", "data": 1}]
        # On a stream, a push does not end the hold (the connect reply is not needed
        # to carry it): the connect is still held.
        assert session.held is not None


@fail_after(10)
async def test_ping_frames_when_configured(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(ping=0.05))
    assert server.port is not None
    async with await WsClient.connect(server.port) as ws:
        for _ in range(3):
            event = await ws.receive()
            assert isinstance(event, Ping)
            assert event.payload == b""


@fail_after(10)
async def test_client_ping_gets_pong(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    async with await WsClient.connect(server.port) as ws:
        await ws.send_raw(ws.ws.send(Ping(payload=b"hello")))
        event = await ws.receive()
        assert isinstance(event, Pong)
        assert event.payload == b"hello"


@fail_after(10)
async def test_clean_close(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    ws, client_id = await _bound_client(server.port, "/x")
    async with ws:
        session = server.engine.store.get(client_id)
        assert session is not None
        assert session.stream is not None
        await ws.close(1000)
        event = await ws.expect_close()
        assert event.code == 1000
        await ws.expect_eof()
    await wait_for(lambda: session.stream is None)
    # The session outlives its socket: a publish is queued for the next connect.
    server.publish("/x", "queued")
    assert len(session.queue) == 1


@fail_after(10)
async def test_over_large_message_closes_with_1009(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(max_ws_message=1000))
    assert server.port is not None
    async with await WsClient.connect(server.port) as ws:
        await ws.send_text('{"channel":"/meta/handshake","pad":"' + "x" * 2000 + '"}')
        event = await ws.expect_close()
        assert event.code == 1009
        await ws.expect_eof()
    assert len(server.engine.store) == 0
    assert await handshake(server.port)  # still serving


@fail_after(10)
async def test_over_large_fragmented_message_closes_with_1009(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(max_ws_message=1000))
    assert server.port is not None
    async with await WsClient.connect(server.port) as ws:
        for _ in range(3):
            await ws.send_raw(ws.ws.send(TextMessage(data="x" * 400, message_finished=False)))
        event = await ws.expect_close()
        assert event.code == 1009
        await ws.expect_eof()
    assert await handshake(server.port)


@fail_after(10)
async def test_message_at_the_limit_is_accepted(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(max_ws_message=1000))
    assert server.port is not None
    async with await WsClient.connect(server.port) as ws:
        text = (
            '[{"channel":"/meta/handshake","version":"1.0",'
            '"supportedConnectionTypes":["websocket"],"pad":"'
        )
        text += "x" * (1000 - len(text) - 3) + '"}]'
        assert len(text) == 1000
        await ws.send_text(text)
        (reply,) = await ws.receive_json()
        assert reply["successful"] is True


@pytest.mark.parametrize("text", ["{not json", "1", "[1]", "[null]", '"str"', "null"])
@fail_after(10)
async def test_invalid_body_gets_an_error_frame(nursery: trio.Nursery, text: str) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    async with await WsClient.connect(server.port) as ws:
        await ws.send_text(text)
        assert await ws.receive_json() == [{"successful": False, "error": "400::Bad request"}]
        # the connection is still usable
        await ws.send_json([HANDSHAKE])
        (reply,) = await ws.receive_json()
        assert reply["successful"] is True


@fail_after(10)
async def test_binary_frame_closes_with_1003(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    async with await WsClient.connect(server.port) as ws:
        await ws.send_bytes(b'[{"channel":"/meta/handshake"}]')
        event = await ws.expect_close()
        assert isinstance(event, CloseConnection)
        assert event.code == 1003
        await ws.expect_eof()
    assert len(server.engine.store) == 0
    assert await handshake(server.port)


@fail_after(10)
async def test_proto_client_id_binds_nothing(nursery: trio.Nursery) -> None:
    """Faye 1.4.2's fix: an unknown clientId such as __proto__ binds no socket."""
    server = await start_server(nursery)
    assert server.port is not None
    victim, victim_id = await _bound_client(server.port, "/secret")
    async with victim, await WsClient.connect(server.port) as attacker:
        await attacker.send_json([_connect("__proto__")])
        (reply,) = await attacker.receive_json()
        assert reply["successful"] is False
        assert reply["error"].startswith("401:")
        assert reply["advice"]["reconnect"] == "handshake"
        server.publish("/secret", "for the victim")
        assert await victim.receive_json() == [{"channel": "/secret", "data": "for the victim"}]
        await attacker.send_json([])
        assert await attacker.receive_json() == []  # nothing was pushed to the attacker
    assert all(s.client_id == victim_id for s in server.engine.store)


@fail_after(10)
async def test_upgrade_without_key_is_refused(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    data = await raw_exchange(
        server.port,
        b"GET /faye HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n",
    )
    assert parse_response(data).status == 400
    assert (await handshake(server.port)) != ""


@fail_after(20)
async def test_slow_reader_is_cut_off_and_later_messages_queue(nursery: trio.Nursery) -> None:
    """A subscriber more than max_buffer behind loses its socket, not its later messages."""
    server = await start_server(nursery, make_config(max_buffer=50_000))
    assert server.port is not None
    ws, client_id = await _bound_client(server.port, "/firehose")
    session = server.engine.store.get(client_id)
    assert session is not None
    async with ws:
        ws.stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        payload = "y" * 10_000
        for _ in range(5000):  # at most 50 MB; we never read
            server.publish("/firehose", payload)
            await trio.lowlevel.checkpoint()
            if session.stream is None:
                break
        assert session.stream is None, "never cut off"
        server.publish("/firehose", "after")
        await ws.expect_eof()  # the server closed the socket
    assert len(session.queue) == 1
    poller = LongPoller(server.port)
    poller.client_id = client_id
    assert deliveries(await poller.connect()) == [{"channel": "/firehose", "data": "after"}]
