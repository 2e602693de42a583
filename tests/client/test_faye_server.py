"""The client against the real Faye 1.4.3 Node.js server, over each transport.

The server is ``js/faye_auth_server.js``: a stock ``NodeAdapter`` (timeout
25 s) with the token extension from Faye's security guide on ``/private/**``.
The client reaches it through a :class:`Proxy` that records each
connection's request head, to check which transport really carried it.
Without Node.js these tests are skipped (they fail under ``CI=true``).
"""

from __future__ import annotations

import pytest
import trio

from bayeux_trio import PublishError, SubscribeError
from tests.interop._support import ServerProcess
from tests.trio.helpers import fail_after

from .support import Proxy, client
from .test_client import AuthToken

TOKEN = "let-me-in"
FAYE_ERROR = "Invalid auth token"


async def proxied(nursery: trio.Nursery, faye: ServerProcess) -> Proxy:
    proxy = Proxy(faye.port)
    await nursery.start(proxy.serve)
    return proxy


def check_transport(proxy: Proxy, transport: str) -> None:
    assert proxy.heads
    for head in proxy.heads:
        request_line = head.split(b"\r\n", 1)[0]
        if transport == "websocket":
            assert request_line == b"GET /faye HTTP/1.1"
            assert b"upgrade: websocket" in head.lower()
        else:
            assert request_line == b"POST /faye HTTP/1.1"


@fail_after(30)
async def test_subscribe_publish_and_wildcards_with_faye(
    nursery: trio.Nursery, faye_auth_server: ServerProcess, transport: str
) -> None:
    proxy = await proxied(nursery, faye_auth_server)
    async with client(proxy.url, transport) as alice, client(proxy.url, transport) as bob:
        async with alice.subscribe("/chat/**") as deep, alice.subscribe("/chat/*") as shallow:
            assert alice.transport == transport
            await bob.publish("/chat/room", {"text": "hi"})
            await bob.publish("/chat/room/side", [1, 2])
            await bob.publish("/elsewhere", 0)
            await bob.publish("/chat/end", "last")
            got = [await deep.receive() for _ in range(3)]
            assert [(m.channel, m.data) for m in got] == [
                ("/chat/room", {"text": "hi"}),
                ("/chat/room/side", [1, 2]),
                ("/chat/end", "last"),
            ]
            got = [await shallow.receive() for _ in range(2)]
            assert [(m.channel, m.data) for m in got] == [
                ("/chat/room", {"text": "hi"}),
                ("/chat/end", "last"),
            ]
        # Unsubscribed: a later publish is not delivered, the session goes on.
        async with alice.subscribe("/after") as after:
            await bob.publish("/chat/room", "nobody listens")
            await bob.publish("/after", "done")
            assert (await after.receive()).data == "done"
    check_transport(proxy, transport)
    if transport == "websocket":
        assert proxy.accepted == 2  # one WebSocket per client, nothing else


@fail_after(30)
async def test_auth_token_extension_with_faye(
    nursery: trio.Nursery, faye_auth_server: ServerProcess, transport: str
) -> None:
    proxy = await proxied(nursery, faye_auth_server)
    async with client(proxy.url, transport) as eve:
        with pytest.raises(SubscribeError) as refused:
            await eve.subscribe("/private/room")
        assert refused.value.error == FAYE_ERROR
        with pytest.raises(PublishError) as caught:
            await eve.publish("/private/room", "let me in?")
        assert caught.value.error == FAYE_ERROR
    async with (
        client(proxy.url, transport, extensions=[AuthToken(TOKEN)]) as alice,
        alice.subscribe("/private/room") as room,
    ):
        await alice.publish("/private/room", "secret", ext={"authToken": TOKEN})
        message = await room.receive()
        assert (message.channel, message.data) == ("/private/room", "secret")
        # Faye's extension removed the token before delivering.
        assert "authToken" not in (message.ext or {})
    check_transport(proxy, transport)
