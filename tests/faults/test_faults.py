"""Faults at the socket level, against an in-process server.

Clients are killed in the middle of a request head, a body, a held connect or
a WebSocket frame, with a FIN or with a reset (SO_LINGER 0); others stop
reading, or go silent as a vanished peer does. After each fault a bystander
(a WebSocket client that keeps connecting) still gets what is published, and
the process's file descriptors, its trio tasks and the server's own tables
return to what they were before the fault.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
import trio
from wsproto.events import TextMessage

from bayeux_core import EngineConfig
from bayeux_trio import BayeuxServer
from tests._support.ports import HOST
from tests._support.waiting import wait_for
from tests.trio.helpers import (
    HANDSHAKE,
    LongPoller,
    WsClient,
    deliveries,
    fail_after,
    handshake,
    make_config,
    start_server,
)

from ._support import server_state, wait_for_baseline

#: the bystander's held connects end this often, so it keeps sending
_HOLD = 0.5


class Bystander:
    """A WebSocket subscriber that keeps connecting, as a Faye client does."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[Any] = []
        self.ws: WsClient | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with await WsClient.connect(self.port) as ws:
            self.ws = ws
            await ws.send_json([HANDSHAKE])
            (reply,) = await ws.receive_json()
            connect = {
                "channel": "/meta/connect",
                "clientId": reply["clientId"],
                "connectionType": "websocket",
            }
            subscribe = {
                "channel": "/meta/subscribe",
                "clientId": reply["clientId"],
                "subscription": "/bystander",
            }
            await ws.send_json([subscribe, connect])
            await ws.receive_json()
            await ws.send_json([connect])
            task_status.started()
            for _ in range(1_000_000):
                messages = await ws.receive_json()
                self.received.extend(m["data"] for m in deliveries(messages))
                if any(m["channel"] == "/meta/connect" for m in messages):
                    assert messages[0]["successful"] is True, messages
                    await ws.send_json([connect])

    async def still_served(self, server: BayeuxServer) -> None:
        """A publish reaches it, and a fresh client can handshake."""
        marker = len(self.received)
        server.publish("/bystander", marker)
        await wait_for(lambda: marker in self.received)
        assert server.port is not None
        await handshake(server.port)


async def _setup(
    nursery: trio.Nursery, **config: Any
) -> tuple[BayeuxServer, Bystander, dict[str, int]]:
    config.setdefault("engine", EngineConfig(timeout=_HOLD))
    server = await start_server(nursery, make_config(**config))
    assert server.port is not None
    await handshake(server.port)  # the first request's one-time allocations
    bystander = Bystander(server.port)
    await nursery.start(bystander.run)
    await bystander.still_served(server)
    # The check's own handshake connection may still be closing: wait it out.
    await wait_for(lambda: server._connections == 1)
    return server, bystander, server_state(server)


async def _open(port: int, *, reset: bool) -> trio.SocketStream:
    stream = await trio.open_tcp_stream(HOST, port)
    if reset:
        # close() then sends a RST instead of a FIN
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return stream


# --------------------------------------------------- killed mid-request


def _json_request(body: bytes, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    head = (
        b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % size
    )
    return head + body


async def _half_head(port: int, reset: bool) -> None:
    stream = await _open(port, reset=reset)
    request = _json_request(orjson.dumps([HANDSHAKE]))
    await stream.send_all(request[: len(request) // 3])
    await trio.sleep(0.05)  # the server has read it and waits for the rest
    await stream.aclose()


async def _half_body(port: int, reset: bool) -> None:
    stream = await _open(port, reset=reset)
    body = orjson.dumps([HANDSHAKE])
    await stream.send_all(_json_request(body[: len(body) // 2], length=len(body)))
    await trio.sleep(0.05)
    await stream.aclose()


async def _held_connect(server: BayeuxServer, reset: bool) -> None:
    assert server.port is not None
    poller = LongPoller(server.port)
    await poller.start("/gone")
    stream = await _open(server.port, reset=reset)
    message = [poller.connect_message()]
    await stream.send_all(_json_request(orjson.dumps(message)))
    session = server.engine.store.get(poller.client_id)
    assert session is not None
    await wait_for(lambda: session.held is not None)  # killed while held, not before
    await stream.aclose()


async def _half_websocket_frame(port: int, reset: bool) -> None:
    ws = await WsClient.connect(port)
    if reset:
        ws.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await ws.send_json([HANDSHAKE])
    await ws.receive_json()
    frame = ws.ws.send(TextMessage(data=orjson.dumps([HANDSHAKE]).decode() * 50))
    await ws.send_raw(frame[: len(frame) // 2])
    await trio.sleep(0.05)
    await ws.aclose()


async def _half_upgrade(port: int, reset: bool) -> None:
    stream = await _open(port, reset=reset)
    await stream.send_all(b"GET /faye HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Up")
    await trio.sleep(0.05)
    await stream.aclose()


_Fault = Callable[[BayeuxServer, bool], Awaitable[None]]


def _on_port(fault: Callable[[int, bool], Awaitable[None]]) -> _Fault:
    """A fault that needs only the port."""

    async def run(server: BayeuxServer, reset: bool) -> None:
        assert server.port is not None
        await fault(server.port, reset)

    return run


FAULTS: dict[str, _Fault] = {
    "half-head": _on_port(_half_head),
    "half-body": _on_port(_half_body),
    "held-connect": _held_connect,
    "half-websocket-frame": _on_port(_half_websocket_frame),
    "half-upgrade": _on_port(_half_upgrade),
}


@pytest.mark.parametrize("close", ["fin", "reset"])
@pytest.mark.parametrize("fault", list(FAULTS))
@fail_after(20)
async def test_client_killed_mid_request(nursery: trio.Nursery, fault: str, close: str) -> None:
    server, bystander, baseline = await _setup(nursery)
    assert server.port is not None
    for _ in range(3):  # a leak would show as growth
        await FAULTS[fault](server, close == "reset")
        await bystander.still_served(server)
        await wait_for_baseline(server, baseline)


@fail_after(20)
async def test_killed_long_poller_keeps_its_messages(nursery: trio.Nursery) -> None:
    server, bystander, baseline = await _setup(nursery, engine=EngineConfig(timeout=30))
    assert server.port is not None
    poller = LongPoller(server.port)
    await poller.start("/kept")
    stream = await _open(server.port, reset=True)
    await stream.send_all(_json_request(orjson.dumps([poller.connect_message()])))
    session = server.engine.store.get(poller.client_id)
    assert session is not None
    await wait_for(lambda: session.held is not None)
    await stream.aclose()
    await wait_for(lambda: session.held is None)  # the reset was noticed
    server.publish("/kept", "while away")
    assert deliveries(await poller.connect()) == [{"channel": "/kept", "data": "while away"}]
    await bystander.still_served(server)
    await wait_for_baseline(server, baseline)


# ----------------------------------------------------------- half-open


@fail_after(30)
async def test_reader_that_stops_reading_is_cut_off(nursery: trio.Nursery) -> None:
    """The output buffer limit reclaims a WebSocket whose peer stopped reading."""
    server, bystander, baseline = await _setup(nursery, max_buffer=64 * 1024)
    assert server.port is not None
    ws = await WsClient.connect(server.port)
    ws.stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await ws.send_json([HANDSHAKE])
    (reply,) = await ws.receive_json()
    client_id = reply["clientId"]
    await ws.send_json(
        [
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/bystander"},
            {"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"},
        ]
    )
    session = server.engine.store.get(client_id)
    assert session is not None
    await wait_for(lambda: session.stream is not None)
    payload = "z" * 10_000
    sent = 0
    for _ in range(5000):  # at most 50 MB; the client never reads
        server.publish("/bystander", payload)
        sent += 1
        await trio.lowlevel.checkpoint()
        if session.stream is None:
            break
    assert session.stream is None, "never cut off"
    await ws.expect_eof()
    await ws.aclose()
    # the bystander, on the same channel, got every message
    await wait_for(lambda: bystander.received.count(payload) == sent)
    await bystander.still_served(server)
    await wait_for_baseline(server, baseline)


@fail_after(30)
async def test_slow_websocket_reader_does_not_delay_others(nursery: trio.Nursery) -> None:
    server, bystander, baseline = await _setup(nursery)
    assert server.port is not None
    slow = await WsClient.connect(server.port)
    slow.stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await slow.send_json([HANDSHAKE])
    (reply,) = await slow.receive_json()
    client_id = reply["clientId"]
    await slow.send_json(
        [
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/bystander"},
            {"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"},
        ]
    )
    session = server.engine.store.get(client_id)
    assert session is not None
    await wait_for(lambda: session.stream is not None)
    payload = "s" * 5_000
    for _ in range(300):  # 1.5 MB for a reader that takes nothing
        server.publish("/bystander", payload)
        await trio.lowlevel.checkpoint()
    # Everything reached the bystander while the slow reader's bytes wait.
    await wait_for(lambda: bystander.received.count(payload) == 300)
    assert session.stream is not None  # within max_buffer: not cut off
    await slow.aclose()
    await bystander.still_served(server)
    await wait_for_baseline(server, baseline)


@fail_after(20)
async def test_silent_http_connection_is_reclaimed_by_the_idle_timeout(
    nursery: trio.Nursery,
) -> None:
    """A peer that vanished (no FIN, nothing sent) after its response."""
    server, bystander, baseline = await _setup(nursery, idle_timeout=0.3)
    assert server.port is not None
    streams = []
    for _ in range(3):
        stream = await trio.open_tcp_stream(HOST, server.port)
        await stream.send_all(_json_request(orjson.dumps([HANDSHAKE])))
        streams.append(stream)
    await wait_for(lambda: server._connections <= baseline["connections"])
    for stream in streams:  # the server closed them: EOF after the reply
        received = b""
        while chunk := await stream.receive_some(65536):
            received += chunk
        assert received.startswith(b"HTTP/1.1 200 ")
        await stream.aclose()
    await bystander.still_served(server)
    await wait_for_baseline(server, baseline)


@fail_after(20)
async def test_silent_websocket_is_reclaimed(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A WebSocket peer that stopped sending (no connects, no pongs) is closed."""
    monkeypatch.setattr("bayeux_trio.server._server._IDLE_MARGIN", 0.0)
    server, bystander, baseline = await _setup(nursery, idle_timeout=1.0)
    assert server.port is not None
    ws = await WsClient.connect(server.port)
    await ws.send_json([HANDSHAKE])
    await ws.receive_json()
    await ws.expect_eof()  # closed by the server: the peer said nothing for 1 s
    await ws.aclose()
    # the bystander, which keeps connecting every 0.5 s, was left alone
    assert bystander.ws is not None
    assert not bystander.ws.eof
    await bystander.still_served(server)
    await wait_for_baseline(server, baseline)
