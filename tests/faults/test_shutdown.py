"""``BayeuxServer.close`` with every kind of connection open, in-process.

A held long-poll, a held WebSocket connect, an EventSource stream and an idle
kept-alive connection are open when the server closes: each is answered or
ended as docs/reliability.md says, the sessions keep their queues, and the
process's fds and tasks go back to what they were before the server started.
"""

from __future__ import annotations

from typing import Any

import trio
from wsproto.events import CloseConnection

from bayeux_trio import BayeuxServer
from tests._support.waiting import wait_for
from tests.trio.helpers import (
    HANDSHAKE,
    EventSourceReader,
    HttpClient,
    LongPoller,
    WsClient,
    fail_after,
    make_config,
)

from ._support import fd_count, task_count


@fail_after(20)
async def test_close_answers_and_ends_every_connection() -> None:
    fds, tasks = fd_count(), task_count()
    server = BayeuxServer(make_config(timeout=60))
    results: list[Any] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        assert server.port is not None
        port = server.port

        poller = LongPoller(port)
        await poller.start("/a")
        session = server.engine.store.get(poller.client_id)
        assert session is not None

        async def held_poll() -> None:
            results.append(("poll", await poller.connect()))

        nursery.start_soon(held_poll)
        await wait_for(lambda: session.held is not None)

        ws = await WsClient.connect(port)
        await ws.send_json([HANDSHAKE])
        (reply,) = await ws.receive_json()
        ws_id = reply["clientId"]
        connect = {"channel": "/meta/connect", "clientId": ws_id, "connectionType": "websocket"}
        await ws.send_json([connect])
        await ws.receive_json()  # the first connect is not held
        await ws.send_json([connect])
        ws_session = server.engine.store.get(ws_id)
        assert ws_session is not None
        await wait_for(lambda: ws_session.held is not None)

        source_client = LongPoller(port, connection_type="eventsource")
        await source_client.start("/a")
        source = await EventSourceReader.open(port, f"/faye/{source_client.client_id}")
        await wait_for(lambda: len(server._streams) == 2)

        idle = await HttpClient.connect(port)
        await idle.request(
            "POST", "/faye", headers=[("content-type", "application/json")], body=b"[]"
        )

        async def websocket_end() -> None:
            (connect_reply,) = await ws.receive_json()
            results.append(("ws", connect_reply, await ws.receive()))
            await ws.close(1000)

        async def eventsource_end() -> None:
            for _ in range(100):
                if await source.next_block() is None:
                    results.append(("eventsource", "ended"))
                    return

        nursery.start_soon(websocket_end)
        nursery.start_soon(eventsource_end)
        with trio.fail_after(10):  # all of it well within the grace period
            await server.close(grace=30)
        assert await idle.at_eof()  # idle kept-alive connections are closed too
    for client in (ws, source, idle):
        await client.aclose()

    kinds = {result[0]: result[1:] for result in results}
    (poll_reply,) = kinds["poll"][0]
    assert poll_reply["advice"]["reconnect"] == "retry"
    ws_reply, close = kinds["ws"]
    assert ws_reply["advice"]["reconnect"] == "retry"
    assert isinstance(close, CloseConnection)
    assert close.code == 1001
    assert kinds["eventsource"] == ("ended",)
    # The sessions were not ended: with a shared store they would be served on.
    assert server.engine.store.get(poller.client_id) is not None
    assert server.engine.store.get(ws_id) is not None
    assert fd_count() <= fds
    assert task_count() <= tasks
