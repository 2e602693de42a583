"""History and recovery on a Redis cluster (real redis-server).

Every node numbers the publishes it reads from the shared log with the log's
ids, under one epoch kept beside the log (docs/delivery.md, "On a Redis
cluster"): a message has the same position on every node, so a client can
recover through any node that was reading when the message was published.
"""

from __future__ import annotations

from typing import Any

import trio

from bayeux_core import EngineConfig, HistoryPolicy, SubscriptionRecovered
from tests._support.waiting import eventually
from tests.client.support import Proxy, Recorder, client
from tests.trio.helpers import fail_after

from ._support import RoundRobin, namespace, start_nodes
from .conftest import RedisProcess

ENGINE = EngineConfig(timeout=10, history={"/news": HistoryPolicy(size=50)})


async def subscribe(node: int, since: str | None) -> list[dict[str, Any]]:
    client = RoundRobin([node])
    await client.handshake()
    message: dict[str, Any] = {"channel": "/meta/subscribe", "subscription": "/news"}
    if since is not None:
        message["ext"] = {"history": {"since": since}}
    return await client.send([message])


@fail_after(30)
async def test_positions_are_the_same_on_every_node_and_recover_anywhere(
    redis_server: RedisProcess, nursery: trio.Nursery
) -> None:
    ns = namespace()
    nodes = await start_nodes(nursery, redis_server.url, 2, ns=ns, engine=ENGINE)
    a, b = (n.port or 0 for n in nodes)
    reader = RoundRobin([a])
    await reader.handshake()
    (reply,) = await reader.send([{"channel": "/meta/subscribe", "subscription": "/news"}])
    epoch = reply["ext"]["history"]["position"].rpartition(":")[0]
    await reader.connect()
    publisher = RoundRobin([b])  # published through the other node
    await publisher.handshake()
    for n in range(3):
        await publisher.publish("/news", n)
    await reader.poll_until(3, limit=50)
    assert [m["data"] for m in reader.received] == [0, 1, 2]
    positions = [m["ext"]["history"]["position"] for m in reader.received]
    assert all(p.rpartition(":")[0] == epoch for p in positions)
    offsets = [int(p.rpartition(":")[2]) for p in positions]
    assert offsets == sorted(set(offsets))

    # Through either node: exactly what followed, in order, same positions.
    for node in (a, b):
        head, *missed = await subscribe(node, positions[0])
        assert head["ext"]["history"] == {"position": positions[-1], "recovered": True}
        assert [m["data"] for m in missed] == [1, 2]
        assert [m["ext"]["history"]["position"] for m in missed] == positions[1:]
    (head,) = await subscribe(b, "other-epoch:1")
    assert head["ext"]["history"]["reason"] == "epoch changed"

    # A node started later knows the log from its start only: a clear no.
    (late,) = await start_nodes(nursery, redis_server.url, 1, ns=ns, engine=ENGINE)
    (head,) = await subscribe(late.port or 0, positions[0])
    assert head["ext"]["history"]["recovered"] is False
    assert head["ext"]["history"]["reason"] == "too old"
    # The log's last entry when it started was message 2: it knows all after.
    await publisher.publish("/news", 3)
    for node in (late.port or 0, a):
        head, *missed = await subscribe(node, positions[-1])
        assert head["ext"]["history"]["recovered"] is True
        assert [m["data"] for m in missed] == [3]


@fail_after(40)
async def test_the_python_client_recovers_through_another_node(
    redis_server: RedisProcess, nursery: trio.Nursery
) -> None:
    """Its session expires on node A; it comes back through node B and recovers."""
    engine = EngineConfig(
        timeout=1, session_timeout=1, error_interval=0.2, history={"/news": HistoryPolicy(size=50)}
    )
    node_a, node_b = await start_nodes(nursery, redis_server.url, 2, engine=engine)
    proxy = Proxy(node_a.port or 0)
    await nursery.start(proxy.serve)
    async with client(proxy.url, "long-polling") as alice:
        recorder = Recorder(alice)
        async with alice.subscribe("/news") as news:
            node_b.publish("/news", "before")
            assert (await news.receive()).data == "before"
            first = alice.client_id
            proxy.cut()
            proxy.blocked = True
            await eventually(lambda: node_a.engine.store.get(first or "") is None)
            for n in range(3):
                node_b.publish("/news", n)
            proxy.target_port = node_b.port or 0
            proxy.blocked = False
            assert [(await news.receive()).data for _ in range(3)] == [0, 1, 2]
            assert alice.client_id != first
            assert recorder.of(SubscriptionRecovered) == [SubscriptionRecovered("/news", True)]
            node_a.publish("/news", "after")
            assert (await news.receive()).data == "after"
