"""Differential tests below and around the Bayeux replies: HTTP framing,
raw WebSocket frames, what a subscriber receives, and how the first connect
is held. Same servers as test_faye_diff.py; every difference found is
either asserted as intended (with its reason in :data:`INTENDED`) or fails.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import pytest

from ._support import HANDSHAKE, MOUNT, RawWebSocket, ServerProcess, post_json, raw_request

#: Differences found by the tests below: name -> reason.
INTENDED: dict[str, str] = {
    "non-object in a batch": (
        "A body of null, or a batch holding a non-object ([null], [1]), is "
        "refused whole with HTTP 400, as is any body that is not a message or "
        "a list of messages. Faye treats null as an empty batch and drops null "
        "entries (200 []), and answers 402 for other non-objects ([1])."
    ),
    "bad JSON on a WebSocket": (
        "A WebSocket frame that is not valid Bayeux JSON gets an error reply "
        '([{"successful":false,"error":"400::Bad request"}]) so that the '
        "client learns it was refused; Faye logs it and sends nothing. A faye "
        "client ignores a reply that has no id and no channel."
    ),
    "deliveries are stripped": (
        "A delivered message carries channel, data and ext only. Faye forwards "
        "the publisher's whole message minus clientId (id, successful, advice, "
        "any extra field), which lets a publisher inject advice or fake "
        "acknowledgements into other clients, and made pre-1.3 clients confuse "
        "a delivery with the reply to their own message of the same id."
    ),
    "first connect answered at once": (
        "The first /meta/connect of a session is answered at once, with no "
        "advice.timeout from the client, so that clients that wait for it "
        "before subscribing (aiocometd) start fast. Faye holds it like any "
        "other connect, up to the timeout (25 s here)."
    ),
    "http headers": (
        "Faye (Node's http) adds Date, Connection: keep-alive and Keep-Alive, "
        "and sends 400s and preflights chunked; we send Content-Length. Only "
        "the headers below are compared."
    ),
}

COMPARED_HEADERS = (
    "content-type",
    "cache-control",
    "x-content-type-options",
    "content-disposition",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-max-age",
)


def _normalise_body(body: bytes) -> Any:
    """JSON (bare or JSON-P wrapped) with fresh client ids masked, else text."""
    text = body.decode("utf-8", "replace")
    wrapped = re.fullmatch(r"/\*\*/([\w$.]+)\((.*)\);", text, re.DOTALL)
    callback, payload = (wrapped.group(1), wrapped.group(2)) if wrapped else (None, text)
    try:
        value = json.loads(payload)
    except ValueError:
        return text
    masked = re.sub(
        r'"clientId": "[0-9a-z]{31}"', '"clientId": "<new clientId>"', json.dumps(value)
    )
    return {"jsonp": callback, "json": json.loads(masked)}


@dataclass(frozen=True)
class Http:
    name: str
    method: str
    query: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: INTENDED key when the bodies/statuses are expected to differ
    differs: str | None = None


def _q(messages: Any) -> str:
    return json.dumps(messages)


_MESSAGE = [{"channel": "/a/b", "data": {"x": 1}, "id": "9"}]
_JSON = {"Content-Type": "application/json"}

HTTP_CASES = [
    Http("json POST", "POST", body=_q(_MESSAGE).encode(), headers=_JSON),
    Http(
        "json POST with Origin",
        "POST",
        body=_q(_MESSAGE).encode(),
        headers={**_JSON, "Origin": "http://a.example"},
    ),
    Http("handshake POST", "POST", body=_q([HANDSHAKE]).encode(), headers=_JSON),
    Http("invalid JSON", "POST", body=b"{not json", headers=_JSON),
    Http("JSON number", "POST", body=b"1", headers=_JSON),
    Http("JSON string", "POST", body=b'"s"', headers=_JSON),
    Http("JSON null", "POST", body=b"null", headers=_JSON, differs="non-object in a batch"),
    Http("[null]", "POST", body=b"[null]", headers=_JSON, differs="non-object in a batch"),
    Http("[1]", "POST", body=b"[1]", headers=_JSON, differs="non-object in a batch"),
    Http(
        "form body",
        "POST",
        body=urllib.parse.urlencode({"message": _q(_MESSAGE)}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    Http(
        "CORS text/plain form body",
        "POST",
        body=urllib.parse.urlencode({"message": _q(_MESSAGE)}).encode(),
        headers={"Content-Type": "text/plain", "Origin": "http://a.example"},
    ),
    Http("form body without message", "POST", body=b"x=1", headers={"Content-Type": "text/plain"}),
    Http(
        "form body with a bad jsonp",
        "POST",
        body=urllib.parse.urlencode({"message": _q(_MESSAGE), "jsonp": "42"}).encode(),
    ),
    Http("JSON-P GET", "GET", query={"message": _q(_MESSAGE), "jsonp": "cb"}),
    Http("JSON-P GET, dotted callback", "GET", query={"message": _q(_MESSAGE), "jsonp": "a.b$c"}),
    Http("JSON-P GET, default callback", "GET", query={"message": _q(_MESSAGE)}),
    Http("JSON-P GET, bad callback", "GET", query={"message": _q(_MESSAGE), "jsonp": "42"}),
    Http(
        "JSON-P GET, script callback", "GET", query={"message": _q(_MESSAGE), "jsonp": "<script>"}
    ),
    Http("GET without message", "GET"),
    Http("PUT", "PUT", body=b"[]", headers=_JSON),
    Http("DELETE", "DELETE"),
    Http(
        "preflight",
        "OPTIONS",
        headers={
            "Origin": "http://a.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-Evil",
        },
    ),
]


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.name for c in HTTP_CASES])
def test_http_like_faye(faye_server: ServerProcess, our_server: ServerProcess, case: Http) -> None:
    target = MOUNT + ("?" + urllib.parse.urlencode(case.query) if case.query else "")
    seen = {}
    for server in (faye_server, our_server):
        status, headers, body = raw_request(
            server.port, case.method, target, case.body, case.headers
        )
        seen[server.name] = (
            status,
            {name: headers.get(name) for name in COMPARED_HEADERS},  # see INTENDED["http headers"]
            _normalise_body(body),
        )
    faye, ours = seen[faye_server.name], seen[our_server.name]
    if case.differs is None:
        assert ours[1] == faye[1], "headers"
        assert ours == faye
    else:
        assert case.differs in INTENDED
        assert ours != faye, f"{case.differs!r} no longer differs: update INTENDED"
        assert ours[0] == 400


def _ws_exchange(server: ServerProcess, frames: list[str], *, wait: float) -> list[Any]:
    """Send frames over a fresh WebSocket; the replies (decoded) within ``wait``."""
    ws = RawWebSocket(server.port)
    try:
        replies: list[Any] = []
        for frame in frames:
            ws.send(frame)
            text = ws.receive(wait)
            replies.append(None if text is None else json.loads(text))
        return replies
    finally:
        ws.close()


def _mask(value: Any) -> Any:
    return json.loads(
        re.sub(r'"clientId": "[0-9a-z]{31}"', '"clientId": "<id>"', json.dumps(value))
    )


def test_websocket_frames_like_faye(faye_server: ServerProcess, our_server: ServerProcess) -> None:
    """Handshake, the pre-1.3 keep-alive ``[]``, a publish, and hostile frames."""
    frames = [
        json.dumps([HANDSHAKE]),
        "[]",
        json.dumps(_MESSAGE),
        json.dumps(_MESSAGE[0]),  # one object, not a list
        json.dumps(
            [
                {
                    "channel": "/meta/connect",
                    "clientId": "fakeclientid",
                    "connectionType": "websocket",
                    "id": "2",
                }
            ]
        ),
    ]
    faye = _mask(_ws_exchange(faye_server, frames, wait=3.0))
    ours = _mask(_ws_exchange(our_server, frames, wait=3.0))
    assert None not in faye, faye
    for index, (theirs, mine) in enumerate(zip(faye, ours, strict=True)):
        if mine != theirs and isinstance(mine, list):
            # INTENDED error-advice-interval (test_faye_diff.GENERAL_DIFFERENCES)
            for reply in mine:
                if reply.get("successful") is False:
                    reply.get("advice", {}).pop("interval", None)
        assert mine == theirs, (index, frames[index])

    # INTENDED["bad JSON on a WebSocket"]
    bad = ["{not json", "1", "[null]"]
    assert _ws_exchange(faye_server, bad, wait=0.5) == [None, None, None]
    assert (
        _ws_exchange(our_server, bad, wait=3.0)
        == [[{"successful": False, "error": "400::Bad request"}]] * 3
    )


def test_delivery_shape(faye_server: ServerProcess, our_server: ServerProcess) -> None:
    """What a subscriber gets when a publisher adds fields of its own."""
    published = {
        "channel": "/d/e",
        "data": {"v": 1},
        "id": "p1",
        "ext": {"k": 1},
        "extra": "x",
        "successful": True,
        "advice": {"reconnect": "none"},
    }
    got = {}
    for server in (faye_server, our_server):
        status, replies = post_json(server.port, [HANDSHAKE])
        client_id = replies[0]["clientId"]
        status, replies = post_json(
            server.port,
            [
                {
                    "channel": "/meta/subscribe",
                    "clientId": client_id,
                    "subscription": "/d/*",
                    "id": "2",
                },
                {
                    "channel": "/meta/connect",
                    "clientId": client_id,
                    "connectionType": "long-polling",
                    "advice": {"timeout": 0},
                    "id": "3",
                },
            ],
        )
        assert [r["successful"] for r in replies] == [True, True]
        status, replies = post_json(server.port, [published])
        assert status == 200
        assert replies == [{"id": "p1", "channel": "/d/e", "successful": True}], server.name
        status, replies = post_json(
            server.port,
            [
                {
                    "channel": "/meta/connect",
                    "clientId": client_id,
                    "connectionType": "long-polling",
                    "advice": {"timeout": 0},
                    "id": "4",
                }
            ],
        )
        assert replies[0]["successful"] is True
        got[server.name] = replies[1:]
    (theirs,) = got[faye_server.name]
    (mine,) = got[our_server.name]
    # Faye forwards everything the publisher sent but clientId.
    assert theirs == published
    # INTENDED["deliveries are stripped"]
    assert mine == {"channel": "/d/e", "data": {"v": 1}, "ext": {"k": 1}}


def test_first_connect_hold(faye_server: ServerProcess, our_server: ServerProcess) -> None:
    """INTENDED["first connect answered at once"]; later connects are held by both."""

    def connect(server: ServerProcess, client_id: str, timeout: float) -> list[Any] | None:
        started = time.monotonic()
        try:
            status, replies = post_json(
                server.port,
                [
                    {
                        "channel": "/meta/connect",
                        "clientId": client_id,
                        "connectionType": "long-polling",
                        "id": "2",
                    }
                ],
                timeout=timeout,
            )
        except TimeoutError:
            return None
        assert time.monotonic() - started < timeout
        assert status == 200
        result: list[Any] = replies
        return result

    for server in (faye_server, our_server):
        client_id = post_json(server.port, [HANDSHAKE])[1][0]["clientId"]
        first = connect(server, client_id, 1.0)
        if server is faye_server:
            assert first is None, "Faye answered a first connect at once"
            continue
        assert first is not None
        assert first[0]["successful"] is True
        assert first[0]["advice"] == {"reconnect": "retry", "interval": 0, "timeout": 25000}
        # The second connect is held, as with Faye.
        assert connect(server, client_id, 0.5) is None
