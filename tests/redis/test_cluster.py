"""The bus on a real Redis Cluster: three masters started here, no replicas.

The log key (``<ns>:{log}``) lives in one slot and each session record
(``<ns>:s:{<clientId>}``) in its client's slot, so the records spread over
the three masters while every Lua script touches one key. Two server
processes (``bayeux serve --engine redis+cluster://...``) and two in-process
servers run pub/sub across nodes, with long-polling sessions moving between
them at every request.
"""

from __future__ import annotations

import gc
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from bayeux_core import EngineConfig
from bayeux_trio.redis._bus import _connect
from tests._support.ci import unavailable
from tests._support.waiting import eventually
from tests.interop._support import ServerProcess, start_our_server
from tests.trio.helpers import HANDSHAKE, WsClient, fail_after

from . import test_presence as presence
from ._cluster import REDIS_CLI, LocalCluster
from ._support import RoundRobin, check_exactly_once_in_order, namespace, start_nodes
from .conftest import REDIS_SERVER

pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    if REDIS_SERVER is None or REDIS_CLI is None:
        unavailable("redis-server and redis-cli are needed (apt-get install redis-server)")
    local = LocalCluster(REDIS_SERVER, tmp_path_factory.mktemp("cluster"))
    try:
        local.start()
        yield local
    finally:
        local.stop()


def _dbsize(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"DBSIZE\r\n")
        reply = sock.recv(64)
    assert reply.startswith(b":"), reply
    return int(reply[1:].strip())


@fail_after(60)
async def test_pubsub_and_moving_sessions_on_a_cluster(
    cluster: LocalCluster, nursery: trio.Nursery
) -> None:
    nodes = await start_nodes(nursery, cluster.url, 2, ns=namespace())
    ports = [n.port for n in nodes if n.port is not None]
    # Long-polling subscribers whose every request goes to the other node.
    pollers = [RoundRobin(ports, start=i) for i in range(2)]
    for poller in pollers:
        await poller.handshake()
        await poller.subscribe("/c/**")
        await poller.connect()
    ws = await WsClient.connect(ports[1])
    await ws.send_json([dict(HANDSHAKE)])
    (reply,) = await ws.receive_json()
    ws_id = reply["clientId"]
    await ws.send_json(
        [
            {"channel": "/meta/subscribe", "clientId": ws_id, "subscription": "/c/**"},
            {"channel": "/meta/connect", "clientId": ws_id, "connectionType": "websocket"},
        ]
    )
    # More sessions, so that records land on every master: with 35 records,
    # one master is left out with probability below 3 * (2/3)**35, about 1e-6.
    for i in range(30):
        await RoundRobin(ports, start=i).handshake()
    publishers, per = 2, 20
    ws_received: list[dict[str, Any]] = []

    async def publish(p: int) -> None:
        client = RoundRobin(ports, start=p)
        await client.handshake()
        for n in range(per):
            await client.publish(f"/c/{p}", {"p": p, "n": n})

    async def read_ws() -> None:
        while len(ws_received) < publishers * per:
            batch = await ws.receive_json()
            ws_received.extend(m for m in batch if not m["channel"].startswith("/meta/"))

    async with trio.open_nursery() as inner:
        for poller in pollers:
            inner.start_soon(poller.poll_until, publishers * per)
        inner.start_soon(read_ws)
        for p in range(publishers):
            inner.start_soon(publish, p)
    for received in [*(p.received for p in pollers), ws_received]:
        check_exactly_once_in_order(received, publishers, per)
    assert all(n.bus is not None and n.bus.stats["adoptions"] > 0 for n in nodes)
    assert all(_dbsize(port) > 0 for port in cluster.ports)
    await ws.aclose()
    gc.collect()


def test_cluster_url_makes_a_cluster_client() -> None:
    import coredis

    assert isinstance(_connect("redis+cluster://127.0.0.1:7000"), coredis.RedisCluster)
    assert isinstance(_connect("redis://127.0.0.1:6379/0"), coredis.Redis)
    gc.collect()  # the unused clients' streams warn now, under this module's filters


@pytest.fixture
def processes(cluster: LocalCluster, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        for i in range(2):
            started.append(
                start_our_server(
                    tmp_path / f"node{i}.log", ["--engine", cluster.url, "--log-level", "warning"]
                )
            )
        yield started
    finally:
        for server in started:
            server.stop()


@fail_after(60)
async def test_two_serve_processes_on_a_cluster(processes: list[ServerProcess]) -> None:
    ports = [server.port for server in processes]
    subscriber = RoundRobin(ports)
    await subscriber.handshake()
    await subscriber.subscribe("/p")
    await subscriber.connect()
    per = 15

    async def publish(p: int) -> None:
        client = RoundRobin([ports[p]])  # publisher p on node p
        await client.handshake()
        for n in range(per):
            await client.publish("/p", {"p": p, "n": n})

    async with trio.open_nursery() as inner:
        inner.start_soon(subscriber.poll_until, 2 * per)
        for p in range(2):
            inner.start_soon(publish, p)
    check_exactly_once_in_order(subscriber.received, 2, per)


@fail_after(60)
async def test_presence_on_a_cluster(cluster: LocalCluster) -> None:
    # The presence keys share the log's slot ({log}); the records spread.
    async with trio.open_nursery() as nursery:
        await _presence_on_a_cluster(cluster, nursery)
        nursery.cancel_scope.cancel()
    # Every node has stopped: coredis' leaked streams warn now, under this
    # module's filters.
    gc.collect()


async def _presence_on_a_cluster(cluster: LocalCluster, nursery: trio.Nursery) -> None:
    ns = namespace()
    nodes = [await presence.start(nursery, cluster.url, ns) for _ in range(2)]
    doomed_scope = trio.CancelScope()
    doomed = await presence.start(
        nursery,
        cluster.url,
        ns,
        engine=EngineConfig(presence=("/chat/**",), timeout=0.2, session_timeout=0.3),
        scope=doomed_scope,
        ttl_margin=1.0,
    )
    ports = [presence.port(n) for n in nodes]
    watcher = await presence.Watcher.open(nursery, ports[1])
    alice = [await presence.User(p, "alice").handshake() for p in ports]
    carol = await presence.User(presence.port(doomed), "carol").handshake()
    for user in [*alice, carol]:
        await user.subscribe()
    await eventually(lambda: presence.views(nodes) == [["alice", "carol"]] * 2)
    doomed_scope.cancel()
    await eventually(lambda: presence.views(nodes) == [["alice"]] * 2, seconds=10)
    await alice[0].unsubscribe()
    await alice[1].disconnect()
    await eventually(lambda: presence.views(nodes) == [[]] * 2)
    client = _connect(cluster.url)
    async with client:
        entries = await client.xrange(f"{ns}:{{log}}")
    changes = [
        next(iter(orjson.loads(e.field_values[b"p"])["data"].items()))
        for e in entries
        if e.field_values.get(b"c") == presence.WATCH.encode()
    ]
    expected = [("join", "alice"), ("join", "carol"), ("leave", "carol"), ("leave", "alice")]
    assert [(kind, member["user"]) for kind, member in changes] == expected
    await eventually(lambda: ("leave", "alice") in watcher.events())
    assert watcher.events() == expected
    await watcher.ws.aclose()
