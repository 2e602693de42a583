"""The ASGI application on the wire, checked with plain HTTP and WebSocket clients.

Each test runs under every flavour (uvicorn, hypercorn on asyncio, hypercorn
on trio): callback-polling, CORS and its preflight, a form POST as ``curl -d``
sends it, an EventSource stream, the browser client script, the body and
message limits, and a held connect whose client goes away.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from pathlib import Path

import pytest
from wsproto.events import CloseConnection

from tests.interop._support import MOUNT, RawWebSocket, ServerProcess, raw_request

from ._support import Flavour, bayeux, eventsource, handshake
from .served import MAX_BODY, TIMEOUT

REPO_ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "http://page.example"


def _jsonp(messages: object, callback: str = "cb") -> str:
    query = urllib.parse.urlencode({"message": json.dumps(messages), "jsonp": callback})
    return f"{MOUNT}?{query}"


def test_callback_polling(asgi_server: ServerProcess) -> None:
    handshake_message = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["callback-polling"],
        "id": "7",
    }
    status, headers, body = raw_request(asgi_server.port, "GET", _jsonp([handshake_message]))
    assert status == 200
    assert headers["content-type"].startswith("text/javascript")
    assert body.startswith(b"/**/cb(")
    assert body.endswith(b");")
    (reply,) = json.loads(body[len(b"/**/cb(") : -2])
    assert reply["successful"] is True
    assert reply["id"] == "7"

    status, _, body = raw_request(asgi_server.port, "GET", _jsonp([handshake_message], "CWS"))
    assert status == 400, "a Flash-signature callback is refused"
    status, _, _ = raw_request(asgi_server.port, "GET", MOUNT)
    assert status == 400, "a GET without a message"


def test_cors_preflight_and_request(asgi_server: ServerProcess) -> None:
    status, headers, body = raw_request(
        asgi_server.port,
        "OPTIONS",
        MOUNT,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type",
        },
    )
    assert (status, body) == (200, b"")
    assert headers["access-control-allow-origin"] == ORIGIN
    assert headers["access-control-allow-credentials"] == "true"
    assert "POST" in headers["access-control-allow-methods"]
    assert "Content-Type" in headers["access-control-allow-headers"]

    status, headers, body = raw_request(
        asgi_server.port,
        "POST",
        MOUNT,
        body=json.dumps(
            [
                {
                    "channel": "/meta/handshake",
                    "version": "1.0",
                    "supportedConnectionTypes": ["long-polling"],
                }
            ]
        ).encode(),
        headers={"Origin": ORIGIN, "Content-Type": "application/json"},
    )
    assert status == 200
    assert headers["access-control-allow-origin"] == ORIGIN
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)[0]["successful"] is True


def test_form_post_as_curl_sends_it(asgi_server: ServerProcess) -> None:
    # curl -d 'message=[...]': the JSON unescaped, as a urlencoded form
    message = json.dumps(
        [
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
                "id": "f",
            }
        ]
    )
    status, headers, body = raw_request(
        asgi_server.port,
        "POST",
        MOUNT,
        body=b"message=" + message.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    (reply,) = json.loads(body)
    assert reply["successful"] is True
    assert reply["id"] == "f"

    client_id = reply["clientId"]
    publish = json.dumps([{"channel": "/form/x", "clientId": client_id, "data": {"a": "b&c"}}])
    form = urllib.parse.urlencode({"message": publish}).encode()
    status, _, body = raw_request(
        asgi_server.port, "POST", MOUNT, body=form, headers={"Content-Type": "text/plain"}
    )
    assert status == 200
    assert json.loads(body)[0]["successful"] is True

    status, _, _ = raw_request(
        asgi_server.port,
        "POST",
        MOUNT,
        body=b"other=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 400, "a form without a message"


def test_eventsource_stream(asgi_server: ServerProcess) -> None:
    port = asgi_server.port
    client_id = handshake(port, "eventsource")
    with eventsource(port, f"{MOUNT}/{client_id}") as stream:
        assert stream.status == 200
        assert stream.headers["content-type"] == "text/event-stream"
        assert stream.headers["access-control-allow-origin"] == ORIGIN
        assert stream.next_event() == b"retry: 5000"

        # Bound by the stream: the connect is answered on the stream, at once.
        replies = bayeux(
            port,
            [
                {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/es/x"},
                {
                    "channel": "/meta/connect",
                    "clientId": client_id,
                    "connectionType": "eventsource",
                },
            ],
        )
        assert [r["successful"] for r in replies] == [True, True]
        other = handshake(port)
        bayeux(port, [{"channel": "/es/x", "clientId": other, "data": {"n": 1}}])
        bayeux(port, [{"channel": "/es/x", "clientId": other, "data": {"n": 2}}])
        got: list[int] = []
        for _ in range(10):  # bounded: skip connect replies and pings
            for message in stream.data():
                if message.get("channel") == "/es/x":
                    got.append(message["data"]["n"])
            if len(got) >= 2:
                break
        assert got == [1, 2]

        # The session ends: the engine closes its stream, and the body ends.
        bayeux(port, [{"channel": "/meta/disconnect", "clientId": client_id}])
        for _ in range(10):
            if stream.next_event() is None:
                break
        assert stream.ended

    with eventsource(port, f"{MOUNT}/no-such-client") as stream:
        assert stream.status == 400


def test_client_script(asgi_server: ServerProcess) -> None:
    expected = (REPO_ROOT / "bayeux_trio" / "static" / "client.js").read_bytes()
    status, headers, body = raw_request(asgi_server.port, "GET", f"{MOUNT}/client.js")
    assert status == 200
    assert body == expected
    assert headers["content-type"].startswith("text/javascript")
    status, _, body = raw_request(
        asgi_server.port, "GET", f"{MOUNT}/client.js", headers={"If-None-Match": headers["etag"]}
    )
    assert (status, body) == (304, b"")
    status, _, _ = raw_request(asgi_server.port, "GET", f"{MOUNT}/nothing.js.map")
    assert status == 404


def test_pages_next_to_bayeux(asgi_server: ServerProcess, flavour: Flavour) -> None:
    status, _, body = raw_request(asgi_server.port, "GET", "/")
    if flavour.static_pages:
        assert status == 200
        assert b'<script src="/faye/client.js"></script>' in body
    else:
        assert status == 404, "outside the mount, a bare BayeuxASGI has nothing"


def test_body_limit(asgi_server: ServerProcess) -> None:
    big = json.dumps([{"channel": "/x", "data": "a" * MAX_BODY}]).encode()
    status, _, body = raw_request(
        asgi_server.port, "POST", MOUNT, body=big, headers={"Content-Type": "application/json"}
    )
    assert (status, body) == (413, b"Too large")


def _close_code(ws: RawWebSocket, timeout: float = 5.0) -> int | None:
    deadline = time.monotonic() + timeout
    for _ in range(100):
        try:
            events = ws._pump(deadline)
        except (TimeoutError, OSError):
            return None
        for event in events:
            if isinstance(event, CloseConnection):
                return event.code
        if ws.closed:
            return None
    return None


def test_websocket_limits_and_bad_messages(asgi_server: ServerProcess) -> None:
    ws = RawWebSocket(asgi_server.port)
    try:
        ws.send("not json")
        assert json.loads(ws.receive() or "null") == [
            {"successful": False, "error": "400::Bad request"}
        ]
        ws.send(
            json.dumps(
                [
                    {
                        "channel": "/meta/handshake",
                        "version": "1.0",
                        "supportedConnectionTypes": ["websocket"],
                        "id": "w",
                    }
                ]
            )
        )
        assert json.loads(ws.receive() or "null")[0]["successful"] is True
        ws.send(json.dumps([{"channel": "/x", "data": "a" * MAX_BODY}]))
        assert _close_code(ws) == 1009
    finally:
        ws.close()


def test_held_connect_whose_client_leaves(asgi_server: ServerProcess) -> None:
    """A client gone while its connect is held: its messages wait for the next connect."""
    port = asgi_server.port
    client_id = handshake(port)
    bayeux(port, [{"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/h/x"}])
    connect = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}
    bayeux(port, [connect])  # the first connect is answered at once

    held = socket.create_connection(("127.0.0.1", port), timeout=5)
    body = json.dumps([connect]).encode()
    held.sendall(
        b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    held.settimeout(0.5)
    with pytest.raises(TimeoutError):  # nothing queued: the connect is held
        held.recv(1)
    held.close()
    time.sleep(0.3)  # not a timing assertion: time for the server to see the close

    other = handshake(port)
    bayeux(port, [{"channel": "/h/x", "clientId": other, "data": "kept"}])
    replies = bayeux(port, [connect], timeout=TIMEOUT + 5)
    assert [m.get("data") for m in replies if m.get("channel") == "/h/x"] == ["kept"]
