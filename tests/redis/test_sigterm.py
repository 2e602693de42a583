"""SIGTERM with the Redis engine: queues survive the process.

Node A is stopped with SIGTERM while a publisher on node B keeps publishing.
A long-poller that was on A carries on with B; a WebSocket client that was on
A comes back, long-polling, to A restarted on the same port. Both are back
within the session timeout, so both must get every acknowledged message,
once each, in order. With ``--workers 2`` the supervisor passes SIGTERM to
both workers, whose held connects are answered and whose WebSockets get
1001, and everything exits 0.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import orjson
import pytest
import trio
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, TextMessage

from tests._support.waiting import wait_for
from tests.faults._support import (
    ServeProcess,
    check_clean_log,
    held_long_poller,
    held_websocket,
)
from tests.trio.helpers import HANDSHAKE, WsClient, bayeux, deliveries, fail_after

from ._support import check_exactly_once_in_order
from .conftest import RedisProcess

pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

_DOWN = (OSError, trio.BrokenResourceError, h11.RemoteProtocolError)
_ARGS = ("--timeout", "60", "--session-timeout", "30", "--grace", "10", "--log-level", "info")


@pytest.fixture
def processes() -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for process in started:
        process.stop()


def _url(redis_server: RedisProcess, db: int) -> str:
    return redis_server.url.rsplit("/", 1)[0] + f"/{db}"


class _Subscriber:
    """A long-polling client that follows whichever port it is given."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.client_id = ""
        self.received: list[dict[str, Any]] = []
        self.advice: list[str] = []

    async def start(self, channel: str) -> None:
        (reply,) = await bayeux(self.port, [HANDSHAKE])
        self.client_id = reply["clientId"]
        await bayeux(
            self.port,
            [{"channel": "/meta/subscribe", "clientId": self.client_id, "subscription": channel}],
        )

    async def connect(self, *, hold: bool = True) -> None:
        message: dict[str, Any] = {
            "channel": "/meta/connect",
            "clientId": self.client_id,
            "connectionType": "long-polling",
        }
        if not hold:
            message["advice"] = {"timeout": 0}
        replies = await bayeux(self.port, [message])
        assert replies[0]["successful"] is True, replies
        self.advice.append(replies[0]["advice"]["reconnect"])
        self.received.extend(deliveries(replies))


async def _catch_up(subscriber: _Subscriber, total: int) -> None:
    """Connect without holds (bounded) until nothing more comes; check all arrived."""
    for _ in range(100):
        count = len(subscriber.received)
        await subscriber.connect(hold=False)
        if len(subscriber.received) >= total and len(subscriber.received) == count:
            break
        await trio.sleep(0.05)
    got = [m["data"]["n"] for m in subscriber.received]
    missing = sorted(set(range(total)) - set(got))
    assert not missing, f"missing {missing} of {total}; advice seen {set(subscriber.advice)}"
    check_exactly_once_in_order(subscriber.received, 1, total)


@fail_after(120)
async def test_queued_messages_survive_sigterm(
    redis_server: RedisProcess, processes: list[ServeProcess], tmp_path: Path
) -> None:
    url = _url(redis_server, 7)
    node_a = ServeProcess(tmp_path / "a.log", "--engine", url, *_ARGS)
    node_b = ServeProcess(tmp_path / "b.log", "--engine", url, *_ARGS)
    processes += [node_a, node_b]
    await node_a.wait_serving()
    await node_b.wait_serving()

    poller = _Subscriber(node_a.port)
    await poller.start("/q")
    ws = await WsClient.connect(node_a.port)
    await ws.send_json([HANDSHAKE])
    (reply,) = await ws.receive_json()
    ws_id = reply["clientId"]
    connect = {"channel": "/meta/connect", "clientId": ws_id, "connectionType": "websocket"}
    await ws.send_json(
        [{"channel": "/meta/subscribe", "clientId": ws_id, "subscription": "/q"}, connect]
    )
    subscribed, _ = await ws.receive_json()  # before anything is published
    assert subscribed["successful"] is True, subscribed
    await ws.send_json([connect])
    ws_received: list[dict[str, Any]] = []
    ws_close: list[CloseConnection] = []
    acknowledged: list[int] = []
    stop = trio.Event()

    async def publish() -> None:
        for n in range(100_000):
            if stop.is_set():
                return
            (ack,) = await bayeux(node_b.port, [{"channel": "/q", "data": {"p": 0, "n": n}}])
            assert ack["successful"] is True, ack
            acknowledged.append(n)

    async def read_websocket() -> None:
        for _ in range(100_000):
            event = await ws.receive()
            if isinstance(event, CloseConnection):
                ws_close.append(event)
                await ws.close(1000)
                return
            assert isinstance(event, TextMessage), event
            messages = orjson.loads(event.data)
            ws_received.extend(deliveries(messages))
            if any(m["channel"] == "/meta/connect" for m in messages):
                if ws.ws.state is not ConnectionState.OPEN:
                    continue  # the close frame came in the same read
                await ws.send_json([connect])

    async def poll_a_then_b() -> None:
        for _ in range(100_000):
            try:
                await poller.connect()
            except _DOWN:
                if node_a.process.poll() is not None:
                    poller.port = node_b.port  # A is gone: on to B
                await trio.sleep(0.02)
            if stop.is_set() and len(poller.received) >= len(acknowledged):
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(publish)
        nursery.start_soon(read_websocket)
        nursery.start_soon(poll_a_then_b)
        await wait_for(lambda: len(ws_received) >= 20, attempts=3000, delay=0.01)
        node_a.signal(signal.SIGTERM)
        assert await node_a.wait_exit(30) == 0
        await wait_for(lambda: bool(ws_close), attempts=3000, delay=0.01)
        # published while the WebSocket client is away
        before = len(acknowledged)
        await wait_for(lambda: len(acknowledged) >= before + 20, attempts=3000, delay=0.01)
        stop.set()
    await ws.aclose()
    assert ws_close[0].code == 1001
    check_clean_log(node_a.log)
    assert "SIGTERM: shutting down" in node_a.log

    total = len(acknowledged)
    assert acknowledged == list(range(total))
    # The long-poller, now on B, has everything.
    await _catch_up(poller, total)

    # The WebSocket client comes back to A, restarted, long-polling.
    restarted = ServeProcess(tmp_path / "a2.log", "--engine", url, *_ARGS, port=node_a.port)
    processes.append(restarted)
    await restarted.wait_serving()
    comeback = _Subscriber(restarted.port)
    comeback.client_id = ws_id
    comeback.received = list(ws_received)
    await _catch_up(comeback, total)
    check_clean_log(node_b.log)


@fail_after(120)
async def test_workers_pass_sigterm_on(
    redis_server: RedisProcess, processes: list[ServeProcess], tmp_path: Path
) -> None:
    url = _url(redis_server, 8)
    parent = ServeProcess(tmp_path / "workers.log", "--engine", url, "--workers", "2", *_ARGS)
    processes.append(parent)
    await parent.wait_serving()
    await wait_for(lambda: parent.log.count("serving Bayeux at") == 2, attempts=6000, delay=0.01)
    pids = [int(p) for p in parent.log.split("workers: [")[1].split("]")[0].split(",")]
    ready = trio.Semaphore(0)
    polled: list[dict[str, Any]] = []
    closed: list[Any] = []
    pollers, sockets = 12, 6
    async with trio.open_nursery() as nursery:
        for _ in range(pollers):
            nursery.start_soon(held_long_poller, parent.port, ready, polled)
        for _ in range(sockets):
            nursery.start_soon(held_websocket, parent.port, ready, closed)
        for _ in range(pollers + sockets):
            await ready.acquire()
        parent.signal(signal.SIGTERM)
        assert await parent.wait_exit(60) == 0
    assert [r["advice"]["reconnect"] for r in polled] == ["retry"] * pollers
    assert [(r["advice"]["reconnect"], c.code) for r, c in closed] == [("retry", 1001)] * sockets
    log = parent.log
    check_clean_log(log)
    assert log.count("SIGTERM: shutting down") == 2  # once per worker
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
