"""Presence on the trio server: the API, the CLI flag, and async extensions' rules."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.lowlevel

from bayeux_core import EngineConfig, LocalProtocolError, Message
from bayeux_trio import AsyncExtension

from .helpers import HANDSHAKE, bayeux, fail_after, make_config, start_server

PRESENCE = EngineConfig(timeout=30.0, presence=("/chat/**",))


class AsyncGuard(AsyncExtension):
    """An async look-up: /chat/secret needs ext.token, or the message is dropped."""

    def __init__(self, drop: bool) -> None:
        self.drop = drop

    async def incoming(self, message: Message, request: object) -> Message | None:
        await trio.lowlevel.checkpoint()
        if message.get("subscription") in ("/chat/secret", ["/chat/secret"]):
            if (message.get("ext") or {}).get("token") != "ok":
                if self.drop:
                    return None
                message["error"] = "403::Invalid subscription auth token"
        return message


async def _subscribe(port: int, client_id: str, channel: str, **extra: Any) -> list[Any]:
    return await bayeux(
        port,
        [{"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel} | extra],
    )


async def _handshake(port: int) -> str:
    (reply,) = await bayeux(port, [HANDSHAKE])
    return str(reply["clientId"])


@fail_after(20)
async def test_server_presence_lists_the_members(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(engine=PRESENCE))
    assert server.port is not None
    al = await _handshake(server.port)
    assert server.presence("/chat/room") == []
    await _subscribe(server.port, al, "/chat/room")
    assert server.presence("/chat/room") == [{"user": al, "info": None}]
    replies = await _subscribe(server.port, await _handshake(server.port), "/presence/chat/room")
    assert replies[0]["successful"] is True
    assert replies[1] == {
        "channel": "/presence/chat/room",
        "data": {"members": [{"user": al, "info": None}]},
    }
    with pytest.raises(LocalProtocolError):
        server.presence("/news")


@pytest.mark.parametrize("drop", [False, True])
@fail_after(20)
async def test_async_extensions_guard_the_watch_as_the_channel(
    nursery: trio.Nursery, drop: bool
) -> None:
    server = await start_server(
        nursery, make_config(engine=PRESENCE), extensions=[AsyncGuard(drop)]
    )
    assert server.port is not None
    al = await _handshake(server.port)
    (reply,) = await _subscribe(server.port, al, "/presence/chat/secret")
    assert reply["successful"] is False
    expected = (
        "403:/chat/secret:Forbidden channel" if drop else "403::Invalid subscription auth token"
    )
    assert reply["error"] == expected
    replies = await _subscribe(server.port, al, "/presence/chat/secret", ext={"token": "ok"})
    assert replies[0]["successful"] is True
    assert replies[1]["data"] == {"members": []}
    # Without presence, /presence/... is just a channel the guard knows nothing of.
    plain = await start_server(nursery, extensions=[AsyncGuard(drop)])
    assert plain.port is not None
    (reply,) = await _subscribe(plain.port, await _handshake(plain.port), "/presence/chat/secret")
    assert reply["successful"] is True
