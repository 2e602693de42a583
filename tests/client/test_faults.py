"""Faults: connections cut, reset or stalled by a proxy, and servers restarted.

The client under test talks through :class:`Proxy` (or to a server that is
stopped and started again on the same port); its peers talk to the server
directly. The server holds connects for 1 s, so a stalled connection is
noticed 1.2 s later (the reply deadline), and the client retries after
0.05 s, doubling up to 0.2 s.

What is asserted is what docs/client.md promises:

* subscriptions survive (same session when the server kept it, renewed after
  a new handshake when it did not), and a renewal the server refuses ends the
  subscription with the server's error;
* every publish is acknowledged once the server is back, and delivered (a
  publish whose reply was lost is sent again, so it may arrive twice);
* messages published for a subscriber while its connection was down, once
  the server knew it was down, arrive after it reconnects, once each, in order.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from bayeux_core import (
    Extension,
    HandshakeSucceeded,
    Subscribed,
    TransportDown,
    TransportUp,
)
from bayeux_trio import BayeuxServer, SubscribeError
from tests.interop.auth_ext import WRONG_TOKEN_ERROR, ServerAuth
from tests.trio.helpers import fail_after, make_config, start_server

from .support import Proxy, Recorder, RestartableServer, client, eventually
from .test_client import AuthToken

FAULTS = ["cut", "reset", "stall"]


def break_link(proxy: Proxy, fault: str) -> None:
    """Break every connection through ``proxy`` and refuse new ones."""
    if fault == "stall":
        proxy.stall()  # the client notices only when a reply is overdue
        proxy.blocked = True
    elif fault == "reset":
        proxy.block()
    else:
        proxy.cut()
        proxy.blocked = True


def offline(server: BayeuxServer, client_id: str | None) -> bool:
    """The server knows the session but has no connection for it."""
    assert client_id is not None
    session = server.engine.store.get(client_id)
    assert session is not None, "the server lost the session"
    return session.held is None and session.stream is None


@pytest.mark.parametrize("fault", FAULTS)
@fail_after(30)
async def test_a_subscriber_gets_what_it_missed_once_and_in_order(
    nursery: trio.Nursery, transport: str, fault: str
) -> None:
    server = await start_server(nursery, make_config(timeout=1))
    proxy = Proxy(server.port or 0)
    await nursery.start(proxy.serve)
    async with client(proxy.url, transport) as alice:
        recorder = Recorder(alice)
        async with alice.subscribe("/news") as news:
            server.publish("/news", "before")
            assert (await news.receive()).data == "before"
            client_id = alice.client_id
            break_link(proxy, fault)
            await eventually(lambda: recorder.count(TransportDown) == 1)
            await eventually(lambda: offline(server, client_id))
            for n in range(3):
                server.publish("/news", n)  # queued by the server for alice
            proxy.blocked = False
            got = [(await news.receive()).data for _ in range(3)]
            assert got == [0, 1, 2]
            server.publish("/news", "after")
            # The next one is "after": nothing came twice.
            assert (await news.receive()).data == "after"
        assert alice.client_id == client_id  # the same session all along
        assert recorder.count(TransportUp) == 1
        assert recorder.count(HandshakeSucceeded) == 1


@pytest.mark.parametrize("fault", FAULTS)
@fail_after(30)
async def test_a_publisher_recovers_and_loses_nothing(
    nursery: trio.Nursery, transport: str, fault: str
) -> None:
    server = await start_server(nursery, make_config(timeout=1))
    proxy = Proxy(server.port or 0)
    await nursery.start(proxy.serve)
    async with client(proxy.url, transport) as alice, client(server.url, transport) as bob:
        recorder = Recorder(alice)
        async with bob.subscribe("/news") as news, alice.subscribe("/replies") as replies:
            await alice.publish("/news", "before")
            assert (await news.receive()).data == "before"
            client_id = alice.client_id
            accepted_before = proxy.accepted
            getattr(proxy, fault)()  # new connections go through at once
            async with trio.open_nursery() as publishers:
                for n in range(3):
                    publishers.start_soon(alice.publish, "/news", n)
            # All three acknowledged, so all three arrived at least once.
            got: set[Any] = set()
            for _ in range(20):
                got.add((await news.receive()).data)
                if got == {0, 1, 2}:
                    break
            assert got == {0, 1, 2}
            assert proxy.accepted > accepted_before  # it did reconnect
            # Its own subscription was kept (the session survived).
            await bob.publish("/replies", "still here")
            assert (await replies.receive()).data == "still here"
        assert alice.client_id == client_id
        assert recorder.count(TransportDown) >= 1
        assert recorder.count(TransportUp) >= 1


@pytest.mark.parametrize("graceful", [False, True], ids=["crash", "graceful"])
@fail_after(30)
async def test_a_server_restart_keeps_subscriptions_and_publishes(
    nursery: trio.Nursery, transport: str, graceful: bool
) -> None:
    servers = RestartableServer(nursery, timeout=1)
    first = await servers.start()
    proxy = Proxy(servers.port)
    await nursery.start(proxy.serve)
    async with client(servers.url, transport) as sub, client(proxy.url, transport) as pub:
        sub_events = Recorder(sub)
        pub_events = Recorder(pub)
        async with sub.subscribe("/news") as news:
            await pub.publish("/news", "before")
            assert (await news.receive()).data == "before"
            old_ids = (sub.client_id, pub.client_id)
            # The publisher stays away until the subscriber is back, so that
            # the new server routes its publishes to the renewed subscription.
            proxy.blocked = True
            await servers.stop(graceful=graceful)
            results: list[Any] = []
            async with trio.open_nursery() as publishers:

                async def publish(n: int) -> None:
                    await pub.publish("/news", n)
                    results.append(n)

                for n in range(3):
                    publishers.start_soon(publish, n)
                second = await servers.start()
                assert second is not first
                await eventually(lambda: sub_events.count(HandshakeSucceeded) == 2)
                new_id = str(sub.client_id)
                await eventually(lambda: Subscribed(new_id, "/news") in servers.events)
                proxy.blocked = False
            assert sorted(results) == [0, 1, 2]
            got: set[Any] = set()
            for _ in range(20):
                got.add((await news.receive()).data)
                if got == {0, 1, 2}:
                    break
            assert got == {0, 1, 2}
            assert news.active
        # The new server accepts publishes naming an unknown client (as Faye
        # does), so the publisher may learn only from its next connect's 401
        # that it needs a new session.
        await eventually(lambda: pub_events.count(HandshakeSucceeded) == 2)
        assert sub.client_id not in old_ids
        assert pub.client_id not in old_ids
        assert sub_events.count(TransportDown) == sub_events.count(TransportUp) == 1


@fail_after(30)
async def test_a_refused_resubscription_ends_the_subscription_with_the_error(
    nursery: trio.Nursery, transport: str
) -> None:
    tokens = {"/private/chat": "let-me-in"}

    def extensions() -> list[Extension]:
        return [ServerAuth(dict(tokens))]

    servers = RestartableServer(nursery, timeout=1, extensions=extensions)
    await servers.start()
    async with client(servers.url, transport, extensions=[AuthToken("let-me-in")]) as alice:
        private = await alice.subscribe("/private/chat")
        public = await alice.subscribe("/public")
        # The server comes back with another token: the renewal is refused.
        tokens["/private/chat"] = "another-token"
        await servers.stop()
        await servers.start()
        with pytest.raises(SubscribeError) as caught:
            async for _ in private:
                pass  # pragma: no cover - nothing is published there
        assert caught.value.error == WRONG_TOKEN_ERROR
        assert not private.active
        # The other subscription was renewed and goes on.
        new_id = str(alice.client_id)
        await eventually(lambda: Subscribed(new_id, "/public") in servers.events)
        assert servers.server is not None
        servers.server.publish("/public", "hello")
        assert (await public.receive()).data == "hello"
