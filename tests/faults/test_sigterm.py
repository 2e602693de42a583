"""``bayeux serve`` stopped by SIGTERM or SIGINT while clients are busy.

Long-pollers and WebSocket clients hold connects and publishers keep
publishing when the signal arrives. Every held connect must be answered with
``reconnect: retry``, each WebSocket closed with 1001, no publish answered
with an error, the log free of tracebacks, and the exit status 0.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import orjson
import pytest
import trio
from wsproto.events import CloseConnection, TextMessage

from bayeux_trio.cli._main import main
from tests._support.ports import free_port
from tests._support.waiting import wait_for
from tests.trio.helpers import HANDSHAKE, HttpClient, WsClient, fail_after

from ._support import JSON, ServeProcess, check_clean_log, held_long_poller, held_websocket

# Sockets the test clients drop when the server goes away mid-read.
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

LONG_POLLERS = 20
WEBSOCKETS = 10
PUBLISHERS = 4


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for process in started:
        process.stop()


async def _publisher(port: int, stop: trio.Event, results: list[int]) -> None:
    """Publish until told to stop; record each answer's status (0: no answer)."""
    n = 0
    while not stop.is_set() and n < 100_000:
        try:
            async with await HttpClient.connect(port) as client:
                while not stop.is_set() and n < 100_000:
                    message = {"channel": "/load", "data": n}
                    response = await client.request(
                        "POST", "/faye", headers=JSON, body=orjson.dumps([message])
                    )
                    results.append(response.status)
                    n += 1
        except (OSError, trio.BrokenResourceError, h11.RemoteProtocolError):
            results.append(0)
            await trio.sleep(0.01)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@fail_after(60)
async def test_signal_under_load(
    serve: list[ServeProcess], tmp_path: Path, signum: signal.Signals
) -> None:
    server = ServeProcess(tmp_path / "serve.log", "--timeout", "120", "--grace", "10")
    serve.append(server)
    await server.wait_serving()
    polled: list[dict[str, Any]] = []
    closed: list[Any] = []
    published: list[int] = []
    stop = trio.Event()
    ready = trio.Semaphore(0)
    async with trio.open_nursery() as nursery:
        for _ in range(PUBLISHERS):
            nursery.start_soon(_publisher, server.port, stop, published)
        for _ in range(LONG_POLLERS):
            nursery.start_soon(held_long_poller, server.port, ready, polled)
        for _ in range(WEBSOCKETS):
            nursery.start_soon(held_websocket, server.port, ready, closed)
        for _ in range(LONG_POLLERS + WEBSOCKETS):
            await ready.acquire()
        # Publishes are flowing: the signal arrives in the middle of them.
        await wait_for(lambda: published.count(200) >= 50, attempts=3000, delay=0.01)
        server.signal(signum)
        assert await server.wait_exit(30) == 0
        stop.set()
    assert len(polled) == LONG_POLLERS
    for reply in polled:
        assert reply["channel"] == "/meta/connect"
        assert reply["successful"] is True
        assert reply["advice"]["reconnect"] == "retry"
    assert len(closed) == WEBSOCKETS
    for reply, close in closed:
        assert reply["successful"] is True
        assert reply["advice"]["reconnect"] == "retry"
        assert isinstance(close, CloseConnection)
        assert close.code == 1001
    # Each publish got a 200 or no answer at all (refused after the listener
    # closed, or cut at the end of the grace period): never an error status.
    assert set(published) <= {200, 0}
    log = server.log
    check_clean_log(log)
    assert f"{signum.name}: shutting down" in log


@fail_after(60)
async def test_second_signal_stops_at_once(serve: list[ServeProcess], tmp_path: Path) -> None:
    """A WebSocket client that never answers the close frame holds the grace
    period open (an hour here); a second SIGTERM ends it."""
    server = ServeProcess(tmp_path / "serve.log", "--grace", "3600")
    serve.append(server)
    await server.wait_serving()
    async with await WsClient.connect(server.port) as ws:
        await ws.send_json([HANDSHAKE])
        await ws.receive_json()
        server.signal(signal.SIGTERM)
        # the close frame arrives; we do not answer it
        for _ in range(100):
            event = await ws.receive()
            if isinstance(event, CloseConnection):
                break
            assert isinstance(event, TextMessage), event
        else:
            raise AssertionError("no close frame")
        assert server.process.poll() is None  # still in its grace period
        server.signal(signal.SIGTERM)
        assert await server.wait_exit(30) == 0
    log = server.log
    check_clean_log(log)
    assert "SIGTERM: stopping now" in log


@fail_after(60)
async def test_signal_while_starting_stops_at_once(
    serve: list[ServeProcess], tmp_path: Path
) -> None:
    """Redis unreachable: the server never gets to serve; SIGTERM still ends it."""
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    server = ServeProcess(tmp_path / "serve.log", "--engine", unreachable, "--grace", "3600")
    serve.append(server)
    await wait_for(lambda: "Redis unreachable" in server.log, attempts=3000, delay=0.01)
    server.signal(signal.SIGTERM)
    assert await server.wait_exit(30) == 0
    log = server.log
    check_clean_log(log)
    assert "SIGTERM: stopping now" in log


def test_grace_must_be_a_number_of_seconds() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--grace", "-1"])
    assert exc.value.code == 2
