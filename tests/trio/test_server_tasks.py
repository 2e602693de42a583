"""BayeuxServer.add_task, and async extensions that want the peer's address."""

from __future__ import annotations

import trio

from bayeux_core import Message
from bayeux_trio import AsyncExtension, BayeuxServer

from .helpers import (
    HANDSHAKE,
    LongPoller,
    WsClient,
    fail_after,
    make_config,
    start_server,
    wait_for,
)


@fail_after(10)
async def test_tasks_run_while_serving_and_stop_with_the_server() -> None:
    server = BayeuxServer(make_config())
    ran: list[str] = []
    stopped = trio.Event()

    async def before() -> None:
        ran.append("before")
        try:
            await trio.sleep_forever()
        finally:
            stopped.set()

    async def after() -> None:
        ran.append("after")

    server.add_task(before)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        await wait_for(lambda: ran == ["before"])
        server.add_task(after)  # serving: starts at once
        await wait_for(lambda: ran == ["before", "after"])
        await server.close(grace=0.1)
    assert stopped.is_set()


class Addresses(AsyncExtension):
    wants_address = True

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    async def incoming(
        self, message: Message, request: object, address: str | None = None
    ) -> Message | None:
        self.seen.append(address)
        return message


class Plain(AsyncExtension):
    def __init__(self) -> None:
        self.calls = 0

    async def incoming(self, message: Message, request: object) -> Message | None:
        self.calls += 1
        return message


@fail_after(10)
async def test_an_extension_that_wants_addresses_gets_the_peers(nursery: trio.Nursery) -> None:
    addresses, plain = Addresses(), Plain()
    server = await start_server(nursery, extensions=[plain, addresses])
    assert server.port is not None
    poller = LongPoller(server.port)
    await poller.handshake()
    async with await WsClient.connect(server.port) as ws:
        await ws.send_json(HANDSHAKE)
        (reply,) = await ws.receive_json()
        assert reply["successful"] is True
    assert addresses.seen == ["127.0.0.1", "127.0.0.1"]
    assert plain.calls == 2  # called as before, without the address
