"""Presence in the Prometheus metrics: totals, and a bounded set of per-channel series."""

from __future__ import annotations

import trio

from bayeux_core import EngineConfig

from .helpers import bayeux, fail_after, make_config, start_server
from .test_admin_presence import NameFromExt, session
from .test_metrics import scrape, value

#: /chat/** gives every chat room presence; /chat/lobby and /news/desk are also
#: named exactly, so they get a series each (/news/desk is covered by no other)
PRESENCE = EngineConfig(timeout=30.0, presence=("/chat/**", "/chat/lobby", "/news/desk"))


@fail_after(15)
async def test_presence_gauges(nursery: trio.Nursery) -> None:
    server = await start_server(
        nursery, make_config(engine=PRESENCE, metrics_path="/metrics"), extensions=[NameFromExt()]
    )
    assert server.port is not None
    empty = await scrape(server)
    assert ("bayeux_presence_members", ()) in empty
    assert value(empty, "bayeux_presence_members") == 0
    assert value(empty, "bayeux_presence_channels") == 0
    # The named channels have a series from the start, at zero.
    assert ("bayeux_presence_users", (("channel", "/chat/lobby"),)) in empty
    assert ("bayeux_presence_users", (("channel", "/news/desk"),)) in empty

    await session(server, "/chat/lobby", user="alice")
    await session(server, "/chat/lobby", user="alice")  # her second tab
    bob = await session(server, "/chat/lobby", "/chat/room", user="bob")
    await session(server, "/chat/room", "/news/desk", "/news/other", user="carol")
    await session(server, "/chat/*", user="dave")  # a wildcard listener is no member
    live = await scrape(server)
    assert value(live, "bayeux_presence_members") == 5  # lobby 2, room 2, desk 1
    assert value(live, "bayeux_presence_channels") == 3
    assert value(live, "bayeux_presence_users", channel="/chat/lobby") == 2
    assert value(live, "bayeux_presence_users", channel="/news/desk") == 1
    # Only the named channels have a series: /chat/room is in the totals alone.
    labelled = sorted(dict(key[1])["channel"] for key in live if key[0] == "bayeux_presence_users")
    assert labelled == ["/chat/lobby", "/news/desk"]

    await bayeux(
        server.port,
        [{"channel": "/meta/unsubscribe", "clientId": bob, "subscription": "/chat/lobby"}],
    )
    left = await scrape(server)
    assert value(left, "bayeux_presence_users", channel="/chat/lobby") == 1
    assert value(left, "bayeux_presence_members") == 4
    assert server.disconnect(bob)
    assert value(await scrape(server), "bayeux_presence_members") == 3

    # Without presence configured, there are no presence metrics at all.
    plain = await start_server(nursery, make_config(metrics_path="/metrics"))
    samples = await scrape(plain)
    assert value(samples, "bayeux_clients") == 0
    assert [key for key in samples if key[0].startswith("bayeux_presence")] == []
