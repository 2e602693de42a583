"""The issue-8 limits, over real sockets: JSON depth, JavaScript-safe integers,
clients and connections per remote address, and their ``bayeux serve`` options.

All clients here come from 127.0.0.1, so an address limit of N is tested with
N and N + 1 clients.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest
import trio

from bayeux_core import EngineConfig
from bayeux_trio import BayeuxServer
from bayeux_trio.cli._main import _config, _parser
from tests._support.ports import HOST
from tests._support.waiting import wait_for
from tests.trio.helpers import (
    HANDSHAKE,
    HttpClient,
    LongPoller,
    WsClient,
    bayeux,
    deliveries,
    fail_after,
    jsonp_target,
    make_config,
    request,
    start_server,
)

from .helpers import still_serving, ws_session

ROOT = Path(__file__).resolve().parents[2]
JSON = [("content-type", "application/json")]
BAD_BODY = [{"successful": False, "error": "400::Bad request"}]
TOO_MANY = "503::Too many clients from this address"


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def publish_of_depth(depth: int) -> list[dict[str, Any]]:
    """A one-publish batch ``depth`` levels deep (the batch array is level 1)."""
    return [{"channel": "/deep", "data": nested(depth - 2)}]


# ------------------------------------------------------------- JSON depth


@fail_after(10)
async def test_bodies_deeper_than_max_json_depth_are_400_over_http(
    nursery: trio.Nursery,
) -> None:
    config = make_config(engine=EngineConfig(timeout=30, max_json_depth=10))
    server = await start_server(nursery, config)
    assert server.port is not None
    port = server.port
    subscriber = LongPoller(port)
    await subscriber.start("/deep")
    deep = orjson.dumps(publish_of_depth(11))
    for response in (
        await request(port, "POST", "/faye", headers=JSON, body=deep),
        await request(port, "POST", "/faye", body=urlencode({"message": deep}).encode()),
        await request(port, "GET", f"/faye?message={quote(deep)}&jsonp=cb"),
    ):
        assert response.status == 400
        assert response.body == b"Bad request"
    (reply,) = await subscriber.send([subscriber.connect_message(advice={"timeout": 0})])
    assert reply["successful"] is True  # nothing was delivered
    # at the limit, the publish goes through
    (ack,) = await bayeux(port, publish_of_depth(10))
    assert ack["successful"] is True
    assert deliveries(await subscriber.connect()) == publish_of_depth(10)
    await still_serving(server)


@fail_after(10)
async def test_bodies_deeper_than_max_json_depth_get_an_error_frame_over_websocket(
    nursery: trio.Nursery,
) -> None:
    config = make_config(engine=EngineConfig(timeout=30, max_json_depth=10))
    server = await start_server(nursery, config)
    assert server.port is not None
    ws, _ = await ws_session(server.port, "/deep")
    async with ws:
        await ws.send_json(publish_of_depth(11))
        assert await ws.receive_json() == BAD_BODY
        await ws.send_json(publish_of_depth(10))
        got: list[dict[str, Any]] = []
        for _ in range(2):  # the reply and the delivery, in one frame or two
            got += await ws.receive_json()
            if len(got) == 2:
                break
        assert {"channel": "/deep", "data": nested(8)} in got
        assert {"channel": "/deep", "successful": True} in got
    await still_serving(server)


@fail_after(10)
async def test_default_depth_limit_is_64_on_the_wire(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    (ack,) = await bayeux(server.port, publish_of_depth(64))
    assert ack["successful"] is True
    response = await request(
        server.port, "POST", "/faye", headers=JSON, body=orjson.dumps(publish_of_depth(65))
    )
    assert response.status == 400


# ------------------------------------------------- JavaScript-safe integers


@fail_after(10)
async def test_js_safe_integers_refuse_big_integers_over_http_and_websocket(
    nursery: trio.Nursery,
) -> None:
    config = make_config(engine=EngineConfig(timeout=30, js_safe_integers=True))
    server = await start_server(nursery, config)
    assert server.port is not None
    ws, _ = await ws_session(server.port, "/n")
    big = {"channel": "/n", "data": {"id": 2**53}, "id": "1"}
    async with ws:
        (reply,) = await bayeux(server.port, [big])
        assert reply["error"] == "400:data:Cannot encode message"
        await ws.send_json([big])
        (reply,) = await ws.receive_json()
        assert reply["error"] == "400:data:Cannot encode message"
        # the largest safe integer goes through; the subscriber got nothing else
        (reply,) = await bayeux(server.port, [big | {"data": {"id": 2**53 - 1}}])
        assert reply["successful"] is True
        assert await ws.receive_json() == [{"channel": "/n", "data": {"id": 2**53 - 1}}]


@fail_after(10)
async def test_64_bit_integers_pass_by_default_on_the_wire(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    ws, _ = await ws_session(server.port, "/n")
    async with ws:
        (reply,) = await bayeux(server.port, [{"channel": "/n", "data": 2**63 - 1}])
        assert reply["successful"] is True
        assert await ws.receive_json() == [{"channel": "/n", "data": 2**63 - 1}]


# --------------------------------------------- clients per remote address


def per_address(n: int, **engine: Any) -> Any:
    return make_config(engine=EngineConfig(timeout=30, max_clients_per_address=n, **engine))


async def http_handshake(port: int) -> dict[str, Any]:
    (reply,) = await bayeux(port, [HANDSHAKE])
    return reply


@fail_after(10)
async def test_clients_per_address_n_handshakes_pass_and_the_next_is_refused(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery, per_address(3))
    assert server.port is not None
    port = server.port
    ws = await WsClient.connect(port)
    async with ws:
        await ws.send_json([HANDSHAKE])
        (first,) = await ws.receive_json()
        assert first["successful"] is True
        for _ in range(2):
            assert (await http_handshake(port))["successful"] is True
        refused = await http_handshake(port)
        assert refused["successful"] is False
        assert refused["error"] == TOO_MANY
        assert refused["advice"]["reconnect"] == "handshake"
        await ws.send_json([HANDSHAKE])
        (refused,) = await ws.receive_json()
        assert refused["error"] == TOO_MANY
    assert len(server.engine.store) == 3


@fail_after(10)
async def test_clients_per_address_disconnect_frees_a_slot(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, per_address(2))
    assert server.port is not None
    port = server.port
    first = (await http_handshake(port))["clientId"]
    assert (await http_handshake(port))["successful"] is True
    assert (await http_handshake(port))["error"] == TOO_MANY
    (reply,) = await bayeux(port, [{"channel": "/meta/disconnect", "clientId": first}])
    assert reply["successful"] is True
    assert (await http_handshake(port))["successful"] is True
    assert (await http_handshake(port))["error"] == TOO_MANY


@fail_after(10)
async def test_clients_per_address_an_expired_session_frees_its_slot(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery, per_address(1, session_timeout=0.2))
    assert server.port is not None
    first = (await http_handshake(server.port))["clientId"]
    assert (await http_handshake(server.port))["error"] == TOO_MANY
    await wait_for(lambda: server.engine.store.get(first) is None)
    assert (await http_handshake(server.port))["successful"] is True


@fail_after(10)
async def test_clients_per_address_is_off_by_default(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    for _ in range(20):
        assert (await http_handshake(server.port))["successful"] is True
    assert server.engine._address_of == {}


# ----------------------------------------- connections per remote address


async def answered(port: int) -> bool:
    """True if a fresh connection gets a response (False: closed on accept)."""
    stream = await trio.open_tcp_stream(HOST, port)
    async with stream:
        target = jsonp_target([], "cb")
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        try:
            data = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            return False
        return data.startswith(b"HTTP/1.1 200 ")


@fail_after(10)
async def test_connections_per_address_n_pass_and_the_next_is_closed(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery, make_config(max_connections_per_address=2))
    assert server.port is not None
    port = server.port
    one = await HttpClient.connect(port)
    two = await HttpClient.connect(port)
    async with one, two:
        for held in (one, two):
            assert (await held.request("GET", jsonp_target([], "cb"))).status == 200
        assert not await answered(port)
    # Closing them frees both slots.
    await wait_for(lambda: server._per_address == {})
    assert await answered(port)
    await still_serving(server)


# ------------------------------------------------------- bayeux serve options


def test_options_set_the_new_limits() -> None:
    args = _parser().parse_args(
        [
            "serve",
            "--max-clients-per-address",
            "5",
            "--max-connections-per-address",
            "50",
            "--max-json-depth",
            "32",
            "--js-safe-integers",
        ]
    )
    config = _config(args)
    assert config.engine.max_clients_per_address == 5
    assert config.max_connections_per_address == 50
    assert config.engine.max_json_depth == 32
    assert config.engine.js_safe_integers is True
    defaults = _config(_parser().parse_args(["serve"]))
    assert defaults.engine.max_clients_per_address is None
    assert defaults.max_connections_per_address is None
    assert defaults.engine.max_json_depth == 64
    assert defaults.engine.js_safe_integers is False


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-json-depth", "2", b"max_json_depth must be an int from 3 to 1024"),
        ("--max-clients-per-address", "0", b"max_clients_per_address must be None or an int"),
        ("--max-connections-per-address", "0", b"max_connections_per_address must be None"),
    ],
)
@fail_after(20)
async def test_bad_limit_values_are_usage_errors(option: str, value: str, message: bytes) -> None:
    result = await trio.run_process(
        [sys.executable, "-m", "bayeux_trio", "serve", option, value],
        cwd=ROOT,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr


@fail_after(10)
async def test_server_from_options_enforces_clients_per_address(nursery: trio.Nursery) -> None:
    args = _parser().parse_args(
        ["serve", "--host", HOST, "--port", "0", "--max-clients-per-address", "1"]
    )
    server: BayeuxServer = await start_server(nursery, _config(args))
    assert server.port is not None
    assert (await http_handshake(server.port))["successful"] is True
    assert (await http_handshake(server.port))["error"] == TOO_MANY
