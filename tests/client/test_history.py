"""History and recovery end to end: the Python client against the trio server.

The client under test talks through the fault :class:`Proxy`. The server keeps
history for ``/news`` (docs/delivery.md); its sessions expire 1 s after their
last connect, so a client cut off for longer loses its session and must
handshake again, and only history can give it what was published meanwhile.
"""

from __future__ import annotations

import trio

from bayeux_core import EngineConfig, HandshakeSucceeded, HistoryPolicy, SubscriptionRecovered
from bayeux_trio import BayeuxServer, ServerConfig
from tests.trio.helpers import fail_after, make_config, start_server

from .support import HOST, Proxy, Recorder, RestartableServer, client, eventually

HISTORY = {"/news": HistoryPolicy(size=100, ttl=60)}


def engine() -> EngineConfig:
    return EngineConfig(timeout=1, session_timeout=1, error_interval=0.2, history=HISTORY)


@fail_after(30)
async def test_a_client_that_lost_its_session_recovers_what_it_missed(
    nursery: trio.Nursery, transport: str
) -> None:
    server = await start_server(nursery, make_config(engine=engine()))
    proxy = Proxy(server.port or 0)
    await nursery.start(proxy.serve)
    async with client(proxy.url, transport) as alice:
        recorder = Recorder(alice)
        async with alice.subscribe("/news") as news:
            server.publish("/news", "before")
            assert (await news.receive()).data == "before"
            first = alice.client_id
            proxy.cut()
            proxy.blocked = True
            # Published once the server has forgotten alice: only history has them.
            await eventually(lambda: server.engine.store.get(first or "") is None)
            for n in range(3):
                server.publish("/news", n)
            proxy.blocked = False
            got = [(await news.receive()).data for _ in range(3)]
            assert got == [0, 1, 2]
            assert alice.client_id != first
            assert recorder.count(HandshakeSucceeded) == 2
            assert news.recovered is True
            assert recorder.of(SubscriptionRecovered) == [SubscriptionRecovered("/news", True)]
            server.publish("/news", "after")
            assert (await news.receive()).data == "after"  # nothing twice
            assert news.position is not None
            assert news.position.endswith(":5")


@fail_after(30)
async def test_a_later_subscriber_picks_up_from_a_saved_position(
    nursery: trio.Nursery, transport: str
) -> None:
    server = await start_server(nursery, make_config(engine=engine()))
    async with client(server.url, transport) as alice:
        async with alice.subscribe("/news") as news:
            server.publish("/news", "seen")
            assert (await news.receive()).data == "seen"
            saved = news.position
        assert saved is not None
        server.publish("/news", "missed")
        async with alice.subscribe("/news", since=saved) as again:
            assert (await again.receive()).data == "missed"
            assert again.recovered is True


class _HistoryServer(RestartableServer):
    """RestartableServer with history on ``/news``."""

    async def start(self) -> BayeuxServer:
        config = ServerConfig(host=HOST, port=self.port, engine=engine())
        server = BayeuxServer(config)
        await self._nursery.start(self._run, server)
        assert server.port is not None
        self.port = server.port
        self.server = server
        return server


@fail_after(30)
async def test_a_restart_is_reported_as_unrecoverable(
    nursery: trio.Nursery, transport: str
) -> None:
    restartable = _HistoryServer(nursery)
    await restartable.start()
    async with client(restartable.url, transport) as alice:
        recorder = Recorder(alice)
        async with alice.subscribe("/news") as news:
            assert restartable.server is not None
            restartable.server.publish("/news", "before")
            assert (await news.receive()).data == "before"
            await restartable.stop()
            server = await restartable.start()
            await eventually(lambda: bool(recorder.of(SubscriptionRecovered)))
            (event,) = recorder.of(SubscriptionRecovered)
            assert event == SubscriptionRecovered("/news", False, "epoch changed")
            assert news.recovered is False
            assert news.recovery_reason == "epoch changed"
            server.publish("/news", "after")
            assert (await news.receive()).data == "after"
