"""Long-polling over real sockets: JSON and form POST bodies, and curl."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import trio

from bayeux_trio import BayeuxServer
from tests._support.ci import require_tool

from .helpers import (
    HANDSHAKE,
    HttpClient,
    LongPoller,
    bayeux,
    deliveries,
    fail_after,
    jsonp_target,
    request,
    start_server,
    wait_for,
)


async def _held_connect(poller: LongPoller, results: list[list[dict[str, Any]]]) -> None:
    results.append(await poller.connect())


async def _subscribed_and_held(
    nursery: trio.Nursery, server: BayeuxServer, channel: str
) -> tuple[LongPoller, list[list[dict[str, Any]]]]:
    """A subscriber whose second connect is held by the server."""
    assert server.port is not None
    poller = LongPoller(server.port)
    await poller.start(channel)
    results: list[list[dict[str, Any]]] = []
    nursery.start_soon(_held_connect, poller, results)
    session = server.engine.store.get(poller.client_id)
    assert session is not None
    await wait_for(lambda: session.held is not None)
    return poller, results


@fail_after(10)
async def test_post_json_round_trip(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    response = await request(
        server.port,
        "POST",
        "/faye",
        headers=[("content-type", "application/json; charset=utf-8")],
        body=orjson.dumps([HANDSHAKE]),
    )
    assert response.status == 200
    assert response.header("content-type") == "application/json; charset=utf-8"
    assert response.header("cache-control") == "no-cache, no-store"
    assert response.header("x-content-type-options") == "nosniff"
    assert response.header("content-length") == str(len(response.body))
    # same-origin (no Origin): no CORS headers, as Faye
    assert "access-control-allow-origin" not in response.header_names()
    (reply,) = response.json()
    assert reply["channel"] == "/meta/handshake"
    assert reply["successful"] is True
    assert server.engine.store.get(reply["clientId"]) is not None


@fail_after(10)
async def test_post_single_object_body(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    replies = await bayeux(server.port, HANDSHAKE)
    assert len(replies) == 1
    assert replies[0]["successful"] is True


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
@fail_after(10)
async def test_post_form_body(nursery: trio.Nursery, content_type: str | None) -> None:
    """Browsers' CORS posts send text/plain, old IE nothing: all are forms."""
    server = await start_server(nursery)
    assert server.port is not None
    body = urlencode({"message": orjson.dumps([HANDSHAKE]).decode()}).encode()
    headers = [("content-type", content_type)] if content_type else []
    response = await request(server.port, "POST", "/faye", headers=headers, body=body)
    assert response.status == 200, response.body
    assert response.header("content-type") == "application/json; charset=utf-8"
    (reply,) = response.json()
    assert reply["successful"] is True


@fail_after(10)
async def test_post_form_message_from_query(nursery: trio.Nursery) -> None:
    """Like Ruby Faye, a POST may carry ``message`` in its URL."""
    server = await start_server(nursery)
    assert server.port is not None
    target = "/faye?" + urlencode({"message": orjson.dumps(HANDSHAKE).decode()})
    response = await request(server.port, "POST", target, headers=[("content-type", "text/plain")])
    assert response.status == 200
    assert response.json()[0]["successful"] is True


@fail_after(10)
async def test_post_form_bad_jsonp_field_is_refused(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    body = urlencode({"message": orjson.dumps(HANDSHAKE).decode(), "jsonp": "<x>"}).encode()
    response = await request(server.port, "POST", "/faye", body=body)
    assert response.status == 400
    assert response.body == b"Bad request"


@fail_after(10)
async def test_keep_alive_serves_several_requests(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    async with await HttpClient.connect(server.port) as client:
        for _ in range(3):
            response = await client.request(
                "POST",
                "/faye",
                headers=[("content-type", "application/json")],
                body=orjson.dumps([HANDSHAKE]),
            )
            assert response.status == 200
            assert response.json()[0]["successful"] is True
    assert len(server.engine.store) == 3


@fail_after(10)
async def test_held_connect_gets_a_publish(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    _, results = await _subscribed_and_held(nursery, server, "/chat")
    publisher = LongPoller(server.port)
    await publisher.handshake()
    reply = await publisher.publish("/chat", {"text": "hi"})
    assert reply == {"channel": "/chat", "clientId": publisher.client_id, "successful": True}
    await wait_for(lambda: bool(results))
    (replies,) = results
    assert deliveries(replies) == [{"channel": "/chat", "data": {"text": "hi"}}]


@fail_after(20)
async def test_curl_seed_command(nursery: trio.Nursery) -> None:
    """The README's command, run verbatim by the real curl, reaches a subscriber."""
    require_tool("curl", "apt-get install curl")
    server = await start_server(nursery)
    assert server.port is not None
    _, results = await _subscribed_and_held(nursery, server, "/messages/new")
    command = (
        f"curl http://localhost:{server.port}/faye "
        """-d 'message={"channel":"/messages/new","data":"hello"}'"""
    )
    completed = await trio.run_process(
        command, shell=True, capture_stdout=True, capture_stderr=True, check=False
    )
    assert completed.returncode == 0, completed.stderr
    published = orjson.loads(completed.stdout)
    assert published == [{"channel": "/messages/new", "successful": True}]
    await wait_for(lambda: bool(results))
    (replies,) = results
    assert deliveries(replies) == [{"channel": "/messages/new", "data": "hello"}]


@fail_after(10)
async def test_request_pipelined_behind_a_held_connect(nursery: trio.Nursery) -> None:
    """A request sent behind a held connect on one connection waits its turn."""
    server = await start_server(nursery)
    assert server.port is not None
    poller = LongPoller(server.port)
    await poller.start("/p")
    session = server.engine.store.get(poller.client_id)
    assert session is not None
    async with await HttpClient.connect(server.port) as client:
        await client.send_request(
            "POST",
            "/faye",
            headers=[("content-type", "application/json")],
            body=orjson.dumps([poller.connect_message()]),
        )
        await wait_for(lambda: session.held is not None)
        # h11 will not let a client pipeline; write the second request by hand
        await client.stream.send_all(
            f"GET {jsonp_target([], 'next')} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        server.publish("/p", "released")
        head = await client.read_head()
        assert head.status_code == 200
        assert deliveries(orjson.loads(await client.read_body())) == [
            {"channel": "/p", "data": "released"}
        ]
        client.h11.start_next_cycle()
        # the h11 client did not send the second request itself: parse by hand
        rest = client.h11.trailing_data[0]
        for _ in range(100):
            if rest.endswith(b"/**/next([]);"):
                break
            rest += await client.stream.receive_some(65536)
        assert rest.startswith(b"HTTP/1.1 200 ")
        assert rest.endswith(b"\r\n\r\n/**/next([]);")
