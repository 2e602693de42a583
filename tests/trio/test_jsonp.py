"""Callback-polling (JSON-P GET), with Faye's Rosetta Flash defences."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import trio

from .helpers import (
    HANDSHAKE,
    LongPoller,
    fail_after,
    handshake,
    jsonp_target,
    request,
    start_server,
)

_JSONP = re.compile(rb"/\*\*/([A-Za-z_$][\w$.]*)\((.*)\);", re.DOTALL)


def _unwrap(body: bytes, callback: str) -> Any:
    match = _JSONP.fullmatch(body)
    assert match is not None, body
    assert match.group(1) == callback.encode()
    return orjson.loads(match.group(2))


@fail_after(10)
async def test_jsonp_reply_and_headers(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    response = await request(server.port, "GET", jsonp_target([HANDSHAKE], "callback"))
    assert response.status == 200
    assert response.body.startswith(b"/**/callback([")
    assert response.body.endswith(b"]);")
    assert response.header("content-type") == "text/javascript; charset=utf-8"
    assert response.header("content-disposition") == "attachment; filename=f.txt"
    assert response.header("x-content-type-options") == "nosniff"
    assert response.header("cache-control") == "no-cache, no-store"
    assert response.header("content-length") == str(len(response.body))
    (reply,) = _unwrap(response.body, "callback")
    assert reply["channel"] == "/meta/handshake"
    assert reply["successful"] is True


@fail_after(10)
async def test_jsonp_default_callback(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    response = await request(server.port, "GET", jsonp_target([HANDSHAKE]))
    assert response.status == 200
    assert response.body.startswith(b"/**/jsonpcallback([")
    assert _unwrap(response.body, "jsonpcallback")[0]["successful"] is True


@pytest.mark.parametrize("callback", ["$.jq_123.cb", "_", "a1.b2.c3", "cwsLower", "CW", "xCWS"])
@fail_after(10)
async def test_jsonp_valid_callbacks(nursery: trio.Nursery, callback: str) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    response = await request(server.port, "GET", jsonp_target([HANDSHAKE], callback))
    assert response.status == 200
    assert _unwrap(response.body, callback)[0]["successful"] is True


ROSETTA = (
    "CWSMIKI0hCD0Up0IZUnnnnnnnnnnnnnnnnnnnUU5nnnnnn3Snn7iiudIbEAt333swW0ssG03"
    "sDDtDDDt0333333Gt333swwv3wwwFPOHtoHHvwHHFhH3D0Up0IZUnnnnnnnnnnnnnnnnnnnUU5"
)


@pytest.mark.parametrize(
    "callback",
    [
        "42",
        "<script>",
        "alert(1)",
        "a-b",
        "a..b",
        ".a",
        "a.",
        "a b",
        "cb;alert(1)",
        ROSETTA,
        "CWS",
        "FWSx",
        "ZWS_payload",
    ],
)
@fail_after(10)
async def test_jsonp_invalid_callback_is_refused(nursery: trio.Nursery, callback: str) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    response = await request(server.port, "GET", jsonp_target([HANDSHAKE], callback))
    assert response.status == 400
    assert response.header("content-type") == "text/plain; charset=utf-8"
    assert response.body == b"Bad request"
    assert len(server.engine.store) == 0  # the message was not handled
    assert await handshake(server.port)  # still serving


@fail_after(10)
async def test_jsonp_get_without_message_is_refused(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    response = await request(server.port, "GET", "/faye?jsonp=cb")
    assert response.status == 400
    assert response.body == b"Bad request"


@fail_after(10)
async def test_jsonp_escapes_line_separators(nursery: trio.Nursery) -> None:
    """U+2028/2029 are valid JSON but end a line in JavaScript: escaped."""
    server = await start_server(nursery)
    assert server.port is not None
    port = server.port
    text = "a\u2028b\u2029c"

    async def jsonp(messages: Any) -> bytes:
        response = await request(port, "GET", jsonp_target(messages, "cb"))
        assert response.status == 200
        return response.body

    body = await jsonp([{**HANDSHAKE, "supportedConnectionTypes": ["callback-polling"]}])
    client_id = _unwrap(body, "cb")[0]["clientId"]
    subscribe = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/x"}
    connect = {
        "channel": "/meta/connect",
        "clientId": client_id,
        "connectionType": "callback-polling",
    }
    await jsonp([subscribe, connect])
    publisher = LongPoller(port)
    await publisher.handshake()
    assert (await publisher.publish("/x", text))["successful"] is True
    body = await jsonp([connect])  # answered at once: a message is queued
    assert "\u2028".encode() not in body
    assert "\u2029".encode() not in body
    assert b"\\u2028" in body
    assert b"\\u2029" in body
    replies = _unwrap(body, "cb")
    assert replies[-1] == {"channel": "/x", "data": text}


@fail_after(10)
async def test_jsonp_percent_encoded_message(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    client_id = await handshake(server.port)
    message = orjson.dumps([{"channel": "/a b", "clientId": client_id, "data": "x"}]).decode()
    response = await request(server.port, "GET", f"/faye?message={quote(message)}&jsonp=cb")
    assert response.status == 200
    (reply,) = _unwrap(response.body, "cb")
    assert reply["successful"] is False  # an invalid channel: a Bayeux error, not an HTTP one
