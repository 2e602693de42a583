"""Requests wait for an unreachable Redis a bounded time, then get an error (issue 15)."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
import trio

from bayeux_core import EngineConfig
from bayeux_trio import BayeuxServer
from bayeux_trio.redis import RedisBus
from tests.trio.helpers import HANDSHAKE, bayeux, deliveries, handshake, make_config

from ._support import namespace
from .conftest import RedisProcess

pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


async def publish(port: int, client_id: str, data: Any) -> dict[str, Any]:
    (reply,) = await bayeux(port, [{"channel": "/up", "clientId": client_id, "data": data}])
    return reply


def connect(client_id: str) -> dict[str, Any]:
    return {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}


async def test_requests_get_an_error_while_redis_is_down_and_work_once_it_is_back(
    redis_server: RedisProcess, tmp_path: Path, nursery: trio.Nursery
) -> None:
    # A Redis of its own: stopping the shared one would disturb other tests.
    own = RedisProcess(tmp_path)
    own.start()
    try:
        with trio.fail_after(60):
            bus = RedisBus(own.url, namespace=namespace(), request_timeout=1.0)
            node = BayeuxServer(make_config(engine=EngineConfig(timeout=2)), bus=bus)
            await nursery.start(node.serve)
            port = node.port
            assert port is not None
            subscriber = await handshake(port)
            subscribed = await bayeux(
                port,
                [{"channel": "/meta/subscribe", "clientId": subscriber, "subscription": "/up"}],
            )
            assert subscribed[0]["successful"] is True
            await bayeux(port, [connect(subscriber)])
            publisher = await handshake(port)
            assert (await publish(port, publisher, 0))["successful"] is True

            own.stop()
            # Each request is answered within the bound (trio.fail_after above):
            # a publish that waits for the log to take it,
            refused = await publish(port, publisher, 1)
            assert refused["successful"] is False
            assert refused["error"] == "407::Redis unreachable"
            # a handshake that waits for its record,
            (failed,) = await bayeux(port, [HANDSHAKE])
            assert failed["successful"] is False
            assert failed["error"] == "503::Redis unreachable"
            assert "clientId" not in failed
            # and a connect that waits to claim its session.
            (held,) = await bayeux(port, [connect(subscriber)])
            assert held["successful"] is False
            assert held["error"] == "503::Redis unreachable"

            own.start()
            reply = refused
            for n in range(2, 400):
                reply = await publish(port, publisher, n)
                if reply["successful"]:
                    break
                await trio.sleep(0.05)
            assert reply["successful"] is True, reply
            # The session survived (AOF): what was published before the outage
            # and after it reaches the subscriber, once; the refused one never.
            received: list[Any] = []
            for _ in range(100):
                replies = await bayeux(port, [connect(subscriber)])
                if not replies[0]["successful"]:
                    await trio.sleep(0.05)
                    continue
                received += [m["data"] for m in deliveries(replies)]
                if n in received:
                    break
            assert received == [0, n]
            assert bus.healthy
            assert bus.stats["pending_writes"] == 0
    finally:
        own.stop()
    gc.collect()  # coredis' leaked streams warn now, under this module's filters


def test_request_timeout_must_be_positive() -> None:
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="request_timeout"):
            RedisBus("redis://127.0.0.1:1/0", request_timeout=bad)
