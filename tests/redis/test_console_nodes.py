"""The console's node list on Redis (issue 19): each node reports itself once a
second into ``<ns>:{log}:nodes``, and ``GET <admin>/stats`` lists them.

Needs redis-server (tests/_support/ci.py: fails under CI=true without it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import coredis
import orjson
import pytest
import trio

from bayeux_trio import BayeuxServer
from bayeux_trio.redis import RedisBus
from bayeux_trio.redis._nodes import MAX_AGE, NodeReporter
from bayeux_trio.server import Hub
from tests.trio.helpers import LongPoller, fail_after, make_config, request

from ._support import namespace
from .conftest import RedisProcess

pytestmark = [
    # coredis leaves anyio memory streams unclosed when a connection closes
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

TOKEN = "console-admin-token-0123456789"


def reporter(server: BayeuxServer) -> NodeReporter:
    assert isinstance(server.bus, RedisBus)
    nodes = server.bus.nodes
    assert nodes is not None
    return nodes


async def start(nursery: trio.Nursery, url: str, ns: str) -> tuple[BayeuxServer, trio.CancelScope]:
    """A node with the admin API and the console, in a cancel scope of its own."""
    server = BayeuxServer(
        make_config(admin_path="/admin", admin_token=TOKEN, console_path="/console"),
        bus=RedisBus(url, namespace=ns),
    )
    scope = trio.CancelScope()

    async def serve(task_status: trio.TaskStatus[BayeuxServer]) -> None:
        with scope:
            await server.serve(task_status=task_status)

    await nursery.start(serve)
    return server, scope


async def stats(server: BayeuxServer) -> dict[str, Any]:
    assert server.port is not None
    response = await request(
        server.port, "GET", "/admin/stats", headers=[("authorization", f"Bearer {TOKEN}")]
    )
    assert response.status == 200, response.body
    answer: dict[str, Any] = response.json()
    return answer


def node_id(server: BayeuxServer) -> str:
    assert isinstance(server.bus, RedisBus)
    return server.bus.node


@fail_after(40)
async def test_two_nodes_are_listed_by_each(
    redis_server: RedisProcess, nursery: trio.Nursery
) -> None:
    ns = namespace()
    a, _ = await start(nursery, redis_server.url, ns)
    b, _ = await start(nursery, redis_server.url, ns)
    for port, count in ((a.port, 2), (b.port, 1)):
        for _ in range(count):
            await LongPoller(port or 0).start("/x")
    ids = {node_id(a), node_id(b)}
    sessions = {node_id(a): 2, node_id(b): 1}
    seen: dict[str, list[dict[str, Any]]] = {}

    async def listed() -> bool:
        for server in (a, b):
            seen[node_id(server)] = (await stats(server))["nodes"]
        return all(
            {n["node"] for n in nodes} == ids
            and all(n["sessions"] == sessions[n["node"]] for n in nodes)
            for nodes in seen.values()
        )

    for _ in range(100):  # one report a second: a few seconds at most
        if await listed():
            break
        await trio.sleep(0.2)
    for server in (a, b):
        answer = await stats(server)
        assert answer["engine"] == "redis"
        assert answer["node"] == node_id(server)
        nodes = seen[node_id(server)]
        assert {n["node"] for n in nodes} == ids, nodes
        (mine,) = [n for n in nodes if n["self"]]
        assert mine["node"] == node_id(server)
        assert nodes[0] is mine  # this node first
        for entry in nodes:
            assert set(entry) == {
                "node", "healthy", "lag_ms", "sessions", "connections", "age_s", "self",
            }  # fmt: skip
            assert entry["healthy"] is True
            assert entry["sessions"] == sessions[entry["node"]]
            assert isinstance(entry["lag_ms"], int)
            assert entry["lag_ms"] >= 0
            assert isinstance(entry["connections"], int)
            assert 0 <= entry["age_s"] <= MAX_AGE
    # The hash holds both, as JSON with a time in ms.
    client: coredis.Redis[bytes] = coredis.Redis.from_url(redis_server.url, decode_responses=False)
    async with client:
        stored = await client.hgetall(f"{ns}:{{log}}:nodes")
    assert {k.decode() for k in stored} == ids
    for value in stored.values():
        entry = orjson.loads(value)
        assert set(entry) == {"t", "healthy", "lag_ms", "sessions", "connections"}
        assert isinstance(entry["t"], int)


@fail_after(40)
async def test_a_stopped_node_ages_out(redis_server: RedisProcess, nursery: trio.Nursery) -> None:
    ns = namespace()
    a, _ = await start(nursery, redis_server.url, ns)
    b, b_scope = await start(nursery, redis_server.url, ns)
    # 30 s in production; a test cannot wait that long.
    reporter(a).max_age = 2.0
    gone = node_id(b)

    async def names() -> set[str]:
        return {n["node"] for n in (await stats(a))["nodes"]}

    for _ in range(150):
        if gone in await names():
            break
        await trio.sleep(0.1)
    assert gone in await names()
    b_scope.cancel()
    for _ in range(100):  # its last report ages past 2 s
        if gone not in await names():
            break
        await trio.sleep(0.2)
    assert await names() == {node_id(a)}
    # ... and its entry was deleted from the hash by the node that read it.
    client: coredis.Redis[bytes] = coredis.Redis.from_url(redis_server.url, decode_responses=False)
    async with client:
        for _ in range(100):
            fields = await client.hkeys(f"{ns}:{{log}}:nodes")
            if gone.encode() not in fields:
                break
            await trio.sleep(0.1)
        assert {f.decode() for f in fields} == {node_id(a)}


@dataclass
class FakeBus:
    """What the reporter reads of a bus: a fixed log position, over a real client."""

    node: str
    log_key: str
    _client: Any
    healthy: bool = True
    _pos: tuple[int, int] = (0, 0)
    _hub: Hub | None = None


@fail_after(20)
async def test_the_report_script_measures_lag_and_drops_stale_entries(
    redis_server: RedisProcess,
) -> None:
    ns = namespace()
    log_key = f"{ns}:{{log}}"
    key = f"{log_key}:nodes"
    client: coredis.Redis[bytes] = coredis.Redis.from_url(redis_server.url, decode_responses=False)
    async with client:
        bus = FakeBus(node="me", log_key=log_key, _client=client)
        now = [1_000_000.0]
        nodes = NodeReporter(bus, clock=lambda: now[0])
        nodes.connections = lambda: 7
        # An empty log: no lag.
        assert await nodes.report() is True
        assert nodes.lag_ms == 0
        # A reader 5 s behind the log's last entry lags 5000 ms, and says so next time.
        await client.xadd(log_key, {"k": "x"}, identifier="10000-0")
        bus._pos = (5000, 3)
        await nodes.report()
        assert nodes.lag_ms == 5000
        await nodes.report()
        mine = orjson.loads((await client.hget(key, "me")) or b"{}")
        assert mine == {
            "t": 1_000_000_000,
            "healthy": True,
            "lag_ms": 5000,
            "sessions": 0,
            "connections": 7,
        }
        bus._pos = (10000, 0)
        await nodes.report()
        assert nodes.lag_ms == 0
        # Another node's fresh entry is listed; a stale one, or one that is
        # not a report, is deleted by whoever reads it.
        fresh = {"t": 999_990_000, "healthy": False, "lag_ms": 12, "sessions": 3, "connections": 4}
        stale = {**fresh, "t": 969_000_000}
        await client.hset(
            key, {"fresh": orjson.dumps(fresh), "stale": orjson.dumps(stale), "junk": b"{"}
        )
        assert await nodes.report() is True
        assert set(await client.hkeys(key)) == {b"me", b"fresh"}
        listing = nodes.listing()
        assert [(n["node"], n["self"]) for n in listing] == [("me", True), ("fresh", False)]
        assert listing[1] == {
            "node": "fresh",
            "healthy": False,
            "lag_ms": 12,
            "sessions": 3,
            "connections": 4,
            "age_s": 10.0,
            "self": False,
        }
        assert listing[0]["age_s"] == 0.0
        # Read again later without a report: entries past the age limit are left out.
        now[0] += MAX_AGE - 5
        assert [n["node"] for n in nodes.listing()] == ["me"]
        assert nodes.listing()[0]["age_s"] == MAX_AGE - 5
        # The hash expires once nobody writes to it.
        assert 0 < await client.pttl(key) <= 60_000
        # Redis unreachable: the report says so and keeps the last listing.
        unreachable: coredis.Redis[bytes] = coredis.Redis(
            host="127.0.0.1", port=1, decode_responses=False, connect_timeout=1.0
        )
        async with unreachable:
            bus._client = unreachable
            nodes._script = None
            assert await nodes.report() is False
        assert [n["node"] for n in nodes.listing()] == ["me"]
