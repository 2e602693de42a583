"""Big batches and failing extensions get Bayeux replies, never a bare 4xx
or a dropped connection (issue 14).

Faye's clients send everything queued in one tick as one batch and treat any
HTTP error as a transport failure, resending the same batch for ever; and an
application's extension with a bug must cost one message, not the connection.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
import trio

from bayeux_core import EngineConfig, Extension, Message, MessageContext
from bayeux_trio import AsyncExtension

from .helpers import (
    HttpClient,
    WsClient,
    bayeux,
    fail_after,
    handshake,
    make_config,
    request,
    start_server,
)

TOO_MANY = "400::Too many messages in one batch"
FAILED = "500::Internal server error"


def publishes(client_id: str, count: int) -> list[dict[str, Any]]:
    return [
        {"channel": "/loop", "clientId": client_id, "data": n, "id": str(n)} for n in range(count)
    ]


@fail_after(30)
async def test_a_batch_of_2000_publishes_is_answered(nursery: trio.Nursery) -> None:
    """What a page that publishes 2,000 messages in a loop sends: one body."""
    server = await start_server(nursery)
    assert server.port is not None
    client_id = await handshake(server.port)
    answers = await bayeux(server.port, publishes(client_id, 2_000))
    assert [a["id"] for a in answers] == [str(n) for n in range(2_000)]
    assert all(a["successful"] is True for a in answers)


@fail_after(30)
async def test_past_max_batch_each_message_gets_an_error_reply(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(engine=EngineConfig(max_batch=10)))
    assert server.port is not None
    client_id = await handshake(server.port)
    answers = await bayeux(server.port, publishes(client_id, 11))
    assert [(a["id"], a["successful"], a["error"]) for a in answers] == [
        (str(n), False, TOO_MANY) for n in range(11)
    ]
    assert len(await bayeux(server.port, publishes(client_id, 10))) == 10
    # The same over a WebSocket: error replies, and the socket stays open.
    async with await WsClient.connect(server.port) as ws:
        await ws.send_json(publishes(client_id, 11))
        answers = await ws.receive_json()
        assert [a["error"] for a in answers] == [TOO_MANY] * 11
        await ws.send_json(publishes(client_id, 2))
        assert [a["successful"] for a in await ws.receive_json()] == [True, True]


@fail_after(30)
async def test_form_bodies_with_a_big_batch_are_answered(nursery: trio.Nursery) -> None:
    """The form body of `curl -d message=...`, with a long array."""
    from urllib.parse import urlencode

    server = await start_server(nursery)
    assert server.port is not None
    body = urlencode({"message": orjson.dumps(publishes("nobody", 1_500)).decode()}).encode()
    response = await request(
        server.port,
        "POST",
        "/faye",
        headers=[("content-type", "application/x-www-form-urlencoded")],
        body=body,
    )
    assert response.status == 200
    assert len(response.json()) == 1_500


class NaiveTokenCheck(Extension):
    """The first docs/server.md example: a subscription used as a dict key."""

    tokens: dict[Any, str]

    def __init__(self) -> None:
        self.tokens = {"/private": "s3cret"}

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == "/meta/subscribe":
            token = (message.get("ext") or {}).get("authToken")
            if self.tokens.get(message.get("subscription")) != token:
                message["error"] = "Invalid subscription auth token"
        return message


class BrokenAsync(AsyncExtension):
    async def incoming(self, message: Message, request: object) -> Message | None:
        if message.get("channel") == "/boom":
            raise RuntimeError("async bug")
        return message


@pytest.mark.parametrize("extension", [NaiveTokenCheck(), BrokenAsync()], ids=type)
@fail_after(30)
async def test_an_extension_that_raises_costs_one_message_not_the_connection(
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
    extension: Extension | AsyncExtension,
) -> None:
    server = await start_server(nursery, extensions=[extension])
    assert server.port is not None
    client_id = await handshake(server.port)
    poison: dict[str, Any]
    if isinstance(extension, NaiveTokenCheck):
        # A CometD-style array subscription: unhashable as a dict key.
        poison = {"channel": "/meta/subscribe", "subscription": ["/a", "/private"]}
    else:
        poison = {"channel": "/boom", "data": 1}
    batch = [
        {"channel": "/a", "clientId": client_id, "data": 1, "id": "before"},
        poison | {"clientId": client_id, "id": "poison"},
        {"channel": "/a", "clientId": client_id, "data": 2, "id": "after"},
    ]
    with caplog.at_level(logging.ERROR, logger="bayeux.server"):
        async with await HttpClient.connect(server.port) as http:
            response = await http.request(
                "POST",
                "/faye",
                headers=[("content-type", "application/json")],
                body=orjson.dumps(batch),
            )
            assert response.status == 200
            by_id = {a["id"]: a for a in response.json()}
            assert by_id["poison"]["successful"] is False
            assert by_id["poison"]["error"] == FAILED
            assert by_id["before"]["successful"] is True
            assert by_id["after"]["successful"] is True
            # The same keep-alive connection goes on serving.
            again = await http.request(
                "POST",
                "/faye",
                headers=[("content-type", "application/json")],
                body=orjson.dumps([{"channel": "/a", "data": 3, "id": "next"}]),
            )
            assert again.json()[0]["successful"] is True
    failures = [r for r in caplog.records if "raised in incoming" in r.getMessage()]
    assert len(failures) == 1  # logged once, with the traceback
    assert failures[0].exc_info is not None
