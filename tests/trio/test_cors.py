"""CORS exactly as Faye 1.3+ answers it, and the optional origin allow-list."""

from __future__ import annotations

import orjson
import pytest
import trio

from .helpers import (
    HANDSHAKE,
    WsClient,
    fail_after,
    handshake,
    jsonp_target,
    make_config,
    post_json,
    request,
    start_server,
)

ALLOW_HEADERS = "Accept, Authorization, Content-Type, Pragma, X-Requested-With"
PREFLIGHT_NAMES = {
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-max-age",
    "content-length",
}


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ([("origin", "https://app.example")], "https://app.example"),
        ([("referer", "https://page.example/x?y")], "https://page.example/x?y"),
        (
            [("origin", "https://app.example"), ("referer", "https://page.example/")],
            "https://app.example",
        ),
        ([], "*"),
    ],
)
@fail_after(10)
async def test_preflight_headers(
    nursery: trio.Nursery, headers: list[tuple[str, str]], allowed: str
) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    response = await request(
        server.port,
        "OPTIONS",
        "/faye",
        headers=[
            *headers,
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "X-Evil, Content-Type"),
        ],
    )
    assert response.status == 200
    assert response.body == b""
    assert response.header("access-control-allow-origin") == allowed
    assert response.header("access-control-allow-credentials") == "true"
    assert response.header("access-control-allow-headers") == ALLOW_HEADERS
    assert response.header("access-control-allow-methods") == "POST, GET"
    assert response.header("access-control-max-age") == "86400"
    assert response.header_names() == PREFLIGHT_NAMES
    # what the client asked for is never reflected
    assert b"X-Evil" not in b"".join(v for _, v in response.headers)


@fail_after(10)
async def test_preflight_by_request_method_header(nursery: trio.Nursery) -> None:
    """Like Faye, any method carrying Access-Control-Request-Method is a preflight."""
    server = await start_server(nursery)
    assert server.port is not None
    response = await request(
        server.port,
        "POST",
        "/faye",
        headers=[("origin", "https://a.example"), ("access-control-request-method", "POST")],
        body=orjson.dumps([HANDSHAKE]),
    )
    assert response.status == 200
    assert response.body == b""
    assert response.header("access-control-allow-methods") == "POST, GET"
    assert len(server.engine.store) == 0  # not handled as a Bayeux request


@fail_after(10)
async def test_actual_replies_with_origin(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    origin = ("origin", "https://app.example")
    post = await post_json(server.port, [HANDSHAKE], headers=[origin])
    get = await request(server.port, "GET", jsonp_target([HANDSHAKE], "cb"), headers=[origin])
    for response in (post, get):
        assert response.status == 200
        assert response.header("access-control-allow-origin") == "https://app.example"
        assert response.header("access-control-allow-credentials") == "true"
        assert "access-control-allow-methods" not in response.header_names()


@fail_after(10)
async def test_actual_replies_without_origin(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    post = await post_json(server.port, [HANDSHAKE], headers=[("referer", "https://r.example/")])
    get = await request(server.port, "GET", jsonp_target([HANDSHAKE], "cb"))
    for response in (post, get):
        assert response.status == 200
        names = response.header_names()
        assert "access-control-allow-origin" not in names
        assert "access-control-allow-credentials" not in names


ALLOWED = "https://good.example"


@fail_after(10)
async def test_allow_list_accepts_listed_and_absent_origins(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(allowed_origins=frozenset({ALLOWED})))
    assert server.port is not None
    listed = await post_json(server.port, [HANDSHAKE], headers=[("origin", ALLOWED)])
    assert listed.status == 200
    assert listed.header("access-control-allow-origin") == ALLOWED
    absent = await post_json(server.port, [HANDSHAKE])  # same-origin and non-browser clients
    assert absent.status == 200
    preflight = await request(
        server.port,
        "OPTIONS",
        "/faye",
        headers=[("origin", ALLOWED), ("access-control-request-method", "POST")],
    )
    assert preflight.status == 200
    assert preflight.header("access-control-allow-origin") == ALLOWED


@fail_after(10)
async def test_allow_list_refuses_other_origins(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(allowed_origins=frozenset({ALLOWED})))
    assert server.port is not None
    port = server.port
    evil = ("origin", "https://evil.example")
    responses = [
        await post_json(port, [HANDSHAKE], headers=[evil]),
        await request(port, "GET", jsonp_target([HANDSHAKE], "cb"), headers=[evil]),
        await request(
            port, "OPTIONS", "/faye", headers=[evil, ("access-control-request-method", "POST")]
        ),
        # a prefix or a different scheme of an allowed origin is another origin
        await post_json(port, [HANDSHAKE], headers=[("origin", ALLOWED + ".evil.example")]),
        await post_json(port, [HANDSHAKE], headers=[("origin", "http://good.example")]),
    ]
    for response in responses:
        assert response.status == 403
        assert "access-control-allow-origin" not in response.header_names()
    assert len(server.engine.store) == 0
    client_id = await handshake(port)  # the server still works
    assert server.engine.store.get(client_id) is not None


@fail_after(10)
async def test_allow_list_refuses_websocket_and_eventsource(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(allowed_origins=frozenset({ALLOWED})))
    assert server.port is not None
    with pytest.raises(ConnectionRefusedError, match="403"):
        await WsClient.connect(server.port, headers=[("origin", "https://evil.example")])
    client_id = await handshake(server.port)
    response = await request(
        server.port,
        "GET",
        f"/faye/{client_id}",
        headers=[("accept", "text/event-stream"), ("origin", "https://evil.example")],
    )
    assert response.status == 403
    session = server.engine.store.get(client_id)
    assert session is not None
    assert session.stream is None
    async with await WsClient.connect(server.port, headers=[("origin", ALLOWED)]) as ws:
        await ws.send_json([HANDSHAKE])
        (reply,) = await ws.receive_json()
        assert reply["successful"] is True
