"""The npm faye 1.4.3 Node.js client against the ASGI application.

The interop tests' scenario script (tests/interop/js/faye_client.js), under
each ASGI server: subscribe to a channel and to ``/chat/**``, publish from a
second client, receive each message once; and a token-checking extension
refusing one subscriber and admitting another. The server's TransportProbe
extension reports where each connect arrived, so the transport is known to
have been really used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.interop._support import ServerProcess, of, run_node
from tests.interop.auth_ext import TOKENS, WRONG_TOKEN_ERROR

TRANSPORTS = ["websocket", "long-polling"]


def _options(transport: str, **extra: str) -> str:
    options = dict(extra)
    if transport == "long-polling":
        options["transport"] = "long-polling"  # client.disable('websocket')
    return json.dumps(options)


def _assert_transport(events: list[dict[str, Any]], transport: str) -> None:
    """Every client's last connect went over ``transport``, by its and the server's word.

    The faye client probes the WebSocket after the handshake, so its first
    connect may still go over HTTP; the later ones use the socket.
    """
    expected = "websocket" if transport == "websocket" else "http"
    clients = sorted({e["client"] for e in of(events, "connect_sent")})
    assert clients
    for client in clients:
        sent = [e["connectionType"] for e in of(events, "connect_sent", client=client)]
        reports = [
            (e["ext"] or {}).get("transport") for e in of(events, "connect_reply", client=client)
        ]
        assert reports, f"{client}: no successful /meta/connect reply"
        assert reports[-1] == expected, (client, reports)
        if transport == "websocket":
            assert sent[-1] == "websocket", (client, sent)
        else:
            assert set(sent) == {"long-polling"}, (client, sent)
            assert set(reports) == {"http"}, (client, reports)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_subscribe_publish_receive(
    node_modules: Path, asgi_server: ServerProcess, transport: str
) -> None:
    channel = f"/asgi/faye/{transport}"
    events = run_node(
        node_modules,
        "faye_client.js",
        ["pubsub", asgi_server.url, _options(transport, channel=channel)],
        server=asgi_server,
    )
    assert [e["subscription"] for e in of(events, "subscribed")] == [channel, "/chat/**"]
    messages = of(events, "message")
    assert sorted((m["subscription"], m["channel"], m["data"]["n"]) for m in messages) == sorted(
        [("/chat/**", "/chat/room/42", 2), (channel, channel, 1)]
    ), "each message exactly once, the wildcard one with its concrete channel"
    (chosen,) = of(events, "transport")
    assert chosen["subscriber"] == chosen["publisher"] == transport
    _assert_transport(events, transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_extension_refuses_and_admits(
    node_modules: Path, asgi_server: ServerProcess, transport: str
) -> None:
    channel = "/private/chat"
    options = _options(
        transport, channel=channel, token=TOKENS[channel], wrongToken="not-the-token"
    )
    events = run_node(
        node_modules, "faye_client.js", ["auth", asgi_server.url, options], server=asgi_server
    )
    assert [e["message"] for e in of(events, "subscribe_failed", client="intruder")] == [
        WRONG_TOKEN_ERROR
    ]
    assert [e["data"] for e in of(events, "message", client="member")] == [{"secret": 42}]
    assert not of(events, "message", client="intruder"), "a refused subscription received"
    _assert_transport(events, transport)
