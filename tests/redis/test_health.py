"""The health endpoint: 200 while the server can work, 503 while Redis is down."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import trio

from bayeux_trio.cli._main import _config, _parser
from tests.trio.helpers import fail_after, handshake, make_config, request, start_server

from ._support import start_nodes
from .conftest import RedisProcess

pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@fail_after(10)
async def test_memory_engine_is_always_healthy(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    await handshake(server.port)
    response = await request(server.port, "GET", "/health")
    assert response.status == 200
    assert response.header("content-type") == "application/json; charset=utf-8"
    assert response.json() == {"status": "ok", "engine": "memory", "sessions": 1}
    head = await request(server.port, "HEAD", "/health")
    assert (head.status, head.body) == (200, b"")
    assert (await request(server.port, "POST", "/health")).status == 405
    # The Bayeux endpoint and other paths are untouched.
    assert (await request(server.port, "GET", "/healthz")).status == 404


@fail_after(10)
async def test_health_path_is_configurable_or_off(nursery: trio.Nursery) -> None:
    moved = await start_server(nursery, make_config(health_path="/_status"))
    off = await start_server(nursery, make_config(health_path=None))
    assert moved.port is not None
    assert off.port is not None
    assert (await request(moved.port, "GET", "/_status")).json()["status"] == "ok"
    assert (await request(moved.port, "GET", "/health")).status == 404
    assert (await request(off.port, "GET", "/health")).status == 404


def test_cli_health_path_option() -> None:
    parse = _parser().parse_args
    assert _config(parse(["serve"])).health_path == "/health"
    assert _config(parse(["serve", "--health-path", "/lb"])).health_path == "/lb"
    assert _config(parse(["serve", "--health-path", ""])).health_path is None
    for bad in ("health", "/faye"):
        with pytest.raises(ValueError, match="health_path"):
            _config(parse(["serve", "--health-path", bad]))


@fail_after(60)
async def test_redis_down_is_503_with_the_outage_and_back_is_200(
    redis_server: RedisProcess, tmp_path: Path, nursery: trio.Nursery
) -> None:
    # A Redis of its own: stopping the shared one would disturb other tests.
    own = RedisProcess(tmp_path)
    own.start()
    try:
        (node,) = await start_nodes(nursery, own.url, 1)
        assert node.port is not None
        ok = await request(node.port, "GET", "/health")
        assert ok.status == 200
        body = ok.json()
        assert body["status"] == "ok"
        assert body["engine"] == "redis"
        assert body["bus"]["healthy"] is True
        assert body["bus"]["outage"] is None

        own.stop()
        down = ok
        for _ in range(200):  # the reader notices within its next read
            down = await request(node.port, "GET", "/health")
            if down.status != 200:
                break
            await trio.sleep(0.05)
        assert down.status == 503
        body = down.json()
        assert body["status"] == "unavailable"
        assert body["bus"]["healthy"] is False
        assert body["bus"]["outage"]["seconds"] >= 0
        assert "Error" in body["bus"]["outage"]["error"]

        own.start()
        back = down
        for _ in range(200):  # retries back off to 2 s at most
            back = await request(node.port, "GET", "/health")
            if back.status == 200:
                break
            await trio.sleep(0.05)
        assert back.status == 200
        assert back.json()["bus"]["outage"] is None
    finally:
        own.stop()
    gc.collect()
