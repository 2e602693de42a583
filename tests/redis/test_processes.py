"""Three ``bayeux serve --engine redis://...`` processes on one Redis.

Long-polling clients round-robin over the nodes, WebSocket clients stay on
one; a node is killed with SIGKILL and Redis is restarted while messages flow.
Every subscriber must get every message exactly once, in publisher order.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import h11
import pytest
import trio

from tests.trio.helpers import HANDSHAKE, WsClient, fail_after

from ._support import Node, RoundRobin, check_exactly_once_in_order
from .conftest import RedisProcess

pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

_FAILURES = (OSError, trio.BrokenResourceError, h11.RemoteProtocolError, AssertionError)


@pytest.fixture
def nodes(redis_server: RedisProcess) -> Iterator[list[Node]]:
    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    started = [Node(url, "--timeout", "5") for _ in range(3)]
    try:
        for node in started:
            node.wait_listening()
        yield started
    finally:
        for node in started:
            node.stop()


class Resilient(RoundRobin):
    """Round-robin, and on to the next node when one fails."""

    async def send(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for _ in range(50):
            try:
                return await super().send([dict(m) for m in messages])
            except _FAILURES:
                await trio.sleep(0.05)
        raise AssertionError("no node answered")


async def ws_subscriber(port: int, channel: str) -> tuple[WsClient, str]:
    ws = await WsClient.connect(port)
    await ws.send_json([dict(HANDSHAKE)])
    (reply,) = await ws.receive_json()
    client_id = reply["clientId"]
    await ws.send_json(
        [
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel},
            {"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"},
        ]
    )
    return ws, client_id


@fail_after(90)
async def test_kill_a_node_and_restart_redis_while_messages_flow(
    nodes: list[Node], redis_server: RedisProcess
) -> None:
    ports = [n.port for n in nodes]
    channel = "/flow"
    publishers, per = 2, 30
    total = publishers * per
    pollers = [Resilient(ports, start=i) for i in range(3)]
    for poller in pollers:
        await poller.handshake()
        await poller.subscribe(channel)
        await poller.connect()
    # One WebSocket client on the node that will die, one on a survivor.
    doomed_ws, doomed_id = await ws_subscriber(ports[0], channel)
    steady_ws, _ = await ws_subscriber(ports[2], channel)
    ws_received: dict[str, list[dict[str, Any]]] = {"doomed": [], "steady": []}
    killed = trio.Event()

    async def read_ws(ws: WsClient, out: list[dict[str, Any]]) -> None:
        while len(out) < total:
            try:
                batch = await ws.receive_json()
            except _FAILURES:
                return
            out.extend(m for m in batch if not m["channel"].startswith("/meta/"))

    async def doomed_reconnects() -> None:
        await read_ws(doomed_ws, ws_received["doomed"])
        if len(ws_received["doomed"]) >= total:
            return
        await killed.wait()
        # Same client id, a new WebSocket on a survivor: the session moves.
        async with await WsClient.connect(ports[1]) as ws:
            await ws.send_json(
                [{"channel": "/meta/connect", "clientId": doomed_id, "connectionType": "websocket"}]
            )
            await read_ws(ws, ws_received["doomed"])

    async def publish(p: int, gate: trio.Event, paused: trio.Event) -> None:
        client = Resilient(ports, start=p)
        await client.handshake()
        for n in range(per):
            if n == per // 3:
                paused.set()
                await gate.wait()
            await client.publish(channel, {"p": p, "n": n})

    gates = [trio.Event() for _ in range(publishers)]
    pauses = [trio.Event() for _ in range(publishers)]
    async with trio.open_nursery() as inner:
        for poller in pollers:
            inner.start_soon(poller.poll_until, total)
        inner.start_soon(doomed_reconnects)
        inner.start_soon(read_ws, steady_ws, ws_received["steady"])
        for p in range(publishers):
            inner.start_soon(publish, p, gates[p], pauses[p])
        for paused in pauses:
            await paused.wait()
        await trio.sleep(0.5)  # deliveries and cursors settle
        nodes[0].kill()
        for poller in pollers:
            poller.ports.remove(ports[0])
        killed.set()
        for gate in gates:
            gate.set()
        await trio.sleep(0.3)
        redis_server.stop()
        await trio.sleep(1.0)
        redis_server.start()
    for poller in pollers:
        check_exactly_once_in_order(poller.received, publishers, per)
    for out in ws_received.values():
        check_exactly_once_in_order(out, publishers, per)
    await steady_ws.aclose()
    await doomed_ws.aclose()
    gc.collect()
