"""Publish rate limiting through the server and the ``--publish-rate`` option."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from bayeux_core import EngineConfig
from bayeux_trio.cli._main import _config, _parser

from .helpers import HOST, LongPoller, deliveries, fail_after, make_config, start_server

ROOT = Path(__file__).resolve().parents[2]
LIMITED = "407::Publish rate limit exceeded"


def test_option_sets_the_engine_rate() -> None:
    args = _parser().parse_args(["serve", "--publish-rate", "2.5"])
    engine = _config(args).engine
    assert engine.publish_rate == 2.5
    assert engine.bucket_size == 5
    assert _config(_parser().parse_args(["serve"])).engine.publish_rate is None


@fail_after(20)
async def test_bad_rate_is_a_usage_error() -> None:
    result = await trio.run_process(
        [sys.executable, "-m", "bayeux_trio", "serve", "--publish-rate", "0"],
        cwd=ROOT,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 2
    assert b"publish_rate must be None or a finite number > 0" in result.stderr


@fail_after(20)
async def test_publishes_beyond_the_rate_are_refused(nursery: trio.Nursery) -> None:
    args = _parser().parse_args(["serve", "--publish-rate", "1", "--host", HOST, "--port", "0"])
    server = await start_server(nursery, _config(args))
    assert server.port is not None
    listener = LongPoller(server.port)
    await listener.start("/chat")
    publisher = LongPoller(server.port)
    await publisher.handshake()
    results = [await publisher.publish("/chat", n) for n in range(3)]
    assert [r["successful"] for r in results] == [True, True, False]
    assert results[2]["error"] == LIMITED
    got = deliveries(await listener.connect())
    assert [m["data"] for m in got] == [0, 1]
    # A backend publishing without a session is not limited.
    anonymous = LongPoller(server.port)
    assert all([(await anonymous.publish("/chat", n))["successful"] for n in range(5)])


@fail_after(20)
async def test_bucket_refills_with_time(nursery: trio.Nursery) -> None:
    config = make_config(engine=EngineConfig(timeout=30, publish_rate=2, publish_burst=1))
    server = await start_server(nursery, config)
    assert server.port is not None
    publisher = LongPoller(server.port)
    await publisher.handshake()
    assert (await publisher.publish("/chat", 1))["successful"] is True
    reply = await publisher.publish("/chat", 2)
    assert reply["successful"] is False, "published twice within 500 ms"
    await trio.sleep(0.6)
    assert (await publisher.publish("/chat", 3))["successful"] is True
