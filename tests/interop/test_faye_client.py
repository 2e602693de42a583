"""The npm faye 1.4.3 Node.js client judges our server.

Each test runs js/faye_client.js in a Node.js subprocess and asserts on the
JSON lines it prints. The same scenario also runs against a stock Faye 1.4.3
server, so that a failure can be told apart from a broken script.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ._support import ServerProcess, of, run_node
from .auth_ext import TOKENS, WRONG_TOKEN_ERROR

TRANSPORTS = ["websocket", "long-polling"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("server_name", ["ours", "faye"])
def test_subscribe_publish_receive(
    node_modules: Path, request: pytest.FixtureRequest, server_name: str, transport: str
) -> None:
    """Subscribe to a channel and to /chat/**, publish from a second client, receive."""
    fixture = "our_server_ext" if server_name == "ours" else "faye_server"
    server: ServerProcess = request.getfixturevalue(fixture)
    channel = f"/interop/faye/{transport}"
    options: dict[str, str] = {"channel": channel}
    if transport == "long-polling":
        options["transport"] = "long-polling"  # client.disable('websocket')
    events = run_node(
        node_modules, "faye_client.js", ["pubsub", server.url, json.dumps(options)], server=server
    )

    assert [e["subscription"] for e in of(events, "subscribed")] == [channel, "/chat/**"]
    assert {e["channel"] for e in of(events, "published")} == {channel, "/chat/room/42"}
    messages = of(events, "message")
    assert sorted((m["subscription"], m["channel"], m["data"]["n"]) for m in messages) == [
        ("/chat/**", "/chat/room/42", 2),
        (channel, channel, 1),
    ], "each message exactly once, the wildcard one with its concrete channel"
    assert {m["data"]["text"] for m in messages} == {"hello", "wild"}

    # The transport was really used: the client's own choice, the
    # connectionType of the connects it sent, and (on our server) the probe
    # extension's report of where each connect arrived.
    (chosen,) = of(events, "transport")
    assert chosen["subscriber"] == chosen["publisher"] == transport
    _assert_connects(events, transport, probed=server_name == "ours")


def _assert_connects(events: list[dict[str, Any]], transport: str, *, probed: bool) -> None:
    """Every client ended up connecting over ``transport``.

    The faye client selects the WebSocket asynchronously after the handshake
    (it probes the socket first), so when the probe is slow its first connect
    may still go over long-polling; every later one uses the WebSocket.
    """
    expected = "websocket" if transport == "websocket" else "http"
    for client in sorted({e["client"] for e in of(events, "connect_sent")}):
        sent = [e["connectionType"] for e in of(events, "connect_sent", client=client)]
        if transport == "websocket":
            assert sent[-1] == "websocket", (client, sent)
        else:
            assert set(sent) == {"long-polling"}, (client, sent)
        if probed:
            reports = [
                (e["ext"] or {}).get("transport")
                for e in of(events, "connect_reply", client=client)
            ]
            assert reports, f"{client}: no successful /meta/connect reply seen"
            assert reports[-1] == expected, (client, reports)
            if transport != "websocket":
                assert set(reports) == {"http"}, (client, reports)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_subscribe_auth_extension(
    node_modules: Path, our_server_ext: ServerProcess, transport: str
) -> None:
    """A client extension adds ext.authToken to /meta/subscribe; ServerAuth checks it.

    The wrong token's subscribe promise rejects with the extension's error
    string (a Faye client parses it into ``code: null`` and the whole string as
    ``message``); the right token's resolves and the subscriber receives.
    """
    channel = "/private/chat"
    options = {"channel": channel, "token": TOKENS[channel], "wrongToken": "not-the-token"}
    if transport == "long-polling":
        options["transport"] = "long-polling"
    events = run_node(
        node_modules,
        "faye_client.js",
        ["auth", our_server_ext.url, json.dumps(options)],
        server=our_server_ext,
    )

    assert of(events, "subscribe_failed", client="intruder") == [
        {
            "event": "subscribe_failed",
            "client": "intruder",
            "message": WRONG_TOKEN_ERROR,
            "code": None,
        }
    ]
    assert not of(events, "subscribed", client="intruder")
    assert of(events, "subscribed", client="member")
    assert of(events, "published", channel=channel)
    assert [e["data"] for e in of(events, "message", client="member")] == [{"secret": 42}]
    assert not of(events, "message", client="intruder"), "a refused subscription received"
    _assert_connects(events, transport, probed=True)
