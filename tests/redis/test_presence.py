"""Presence across nodes on one Redis (docs/redis.md, "Presence").

Every node sees the same members; each join and leave is on the log once
(not once per node); a user with sessions on two nodes is one member; a node
that dies without a word has its users leave within the session's TTL, by
the survivors, once; Redis losing its data has the views rebuilt from the
sessions that come back, without a duplicate join.
"""

from __future__ import annotations

import gc
import shutil
from pathlib import Path
from typing import Any

import coredis
import orjson
import pytest
import trio

from bayeux_core import EngineConfig
from bayeux_trio import BayeuxServer
from bayeux_trio.redis import RedisBus
from tests._support.ci import unavailable
from tests._support.presence import Names
from tests._support.waiting import eventually
from tests.trio.helpers import HANDSHAKE, WsClient, bayeux, fail_after, make_config

from ._support import namespace
from .conftest import REDIS_SERVER, RedisProcess

pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

ROOM = "/chat/room"
WATCH = "/presence/chat/room"
PRESENCE = EngineConfig(presence=("/chat/**",), timeout=10.0)


async def start(
    nursery: trio.Nursery,
    url: str,
    ns: str,
    *,
    engine: EngineConfig = PRESENCE,
    scope: trio.CancelScope | None = None,
    **bus: Any,
) -> BayeuxServer:
    """A node with presence on ``/chat/**`` (in ``scope``: cancel it to kill the node)."""
    bus.setdefault("presence_sweep", 0.1)
    server = BayeuxServer(
        make_config(engine=engine),
        extensions=[Names()],
        bus=RedisBus(url, namespace=ns, **bus),
    )

    async def serve(
        *, task_status: trio.TaskStatus[BayeuxServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with scope if scope is not None else trio.CancelScope():
            await server.serve(task_status=task_status)

    await nursery.start(serve)
    return server


def port(server: BayeuxServer) -> int:
    assert server.port is not None
    return server.port


class User:
    """A long-polling session of ``user`` (None: anonymous) on one node."""

    def __init__(self, port: int, user: str | None = None, info: Any = None) -> None:
        self.port = port
        self.user = user
        self.info = info
        self.client_id = ""

    async def send(self, *messages: dict[str, Any]) -> list[dict[str, Any]]:
        return await bayeux(self.port, [{"clientId": self.client_id, **m} for m in messages])

    async def handshake(self) -> User:
        message: dict[str, Any] = dict(HANDSHAKE)
        if self.user is not None:
            message["ext"] = {"user": self.user, "info": self.info}
        (reply,) = await bayeux(self.port, [message])
        assert reply["successful"] is True, reply
        self.client_id = reply["clientId"]
        return self

    async def subscribe(self, channel: str = ROOM) -> None:
        (reply, *_) = await self.send({"channel": "/meta/subscribe", "subscription": channel})
        assert reply["successful"] is True, reply

    async def unsubscribe(self, channel: str = ROOM) -> None:
        (reply,) = await self.send({"channel": "/meta/unsubscribe", "subscription": channel})
        assert reply["successful"] is True, reply

    async def disconnect(self) -> None:
        (reply,) = await self.send({"channel": "/meta/disconnect"})
        assert reply["successful"] is True, reply


class Watcher:
    """A WebSocket client watching ``/presence/chat/room`` on one node."""

    def __init__(self, ws: WsClient) -> None:
        self.ws = ws
        self.got: list[Any] = []

    @classmethod
    async def open(cls, nursery: trio.Nursery, port: int) -> Watcher:
        ws = await WsClient.connect(port)
        watcher = cls(ws)
        await ws.send_json([dict(HANDSHAKE)])
        (reply,) = await ws.receive_json()
        client_id = reply["clientId"]
        await ws.send_json(
            [
                {"channel": "/meta/subscribe", "clientId": client_id, "subscription": WATCH},
                {"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"},
            ]
        )
        nursery.start_soon(watcher._read)
        await eventually(lambda: bool(watcher.got))  # the members list
        return watcher

    async def _read(self) -> None:
        while True:
            try:
                batch = await self.ws.receive_json()
            except (trio.BrokenResourceError, trio.ClosedResourceError, TypeError):
                return
            self.got.extend(m["data"] for m in batch if m.get("channel") == WATCH)

    def events(self) -> list[tuple[str, str]]:
        """(kind, user) of each join and leave after the members list."""
        return [(k, v["user"]) for data in self.got[1:] for k, v in data.items()]

    def members(self) -> list[str]:
        """The members list it got first."""
        return [m["user"] for m in self.got[0]["members"]]


async def log_changes(url: str, ns: str) -> list[tuple[str, str]]:
    """Every join and leave on the log, in order: (kind, user)."""
    client: coredis.Redis[bytes] = coredis.Redis.from_url(url, decode_responses=False)
    async with client:
        entries = await client.xrange(f"{ns}:{{log}}")
    out = []
    for entry in entries:
        fields = entry.field_values
        if fields.get(b"c") == WATCH.encode():
            ((kind, member),) = orjson.loads(fields[b"p"])["data"].items()
            out.append((kind, member["user"]))
    return out


def views(nodes: list[BayeuxServer]) -> list[list[str]]:
    return [[m["user"] for m in node.presence(ROOM)] for node in nodes]


@fail_after(30)
async def test_every_node_sees_the_same_members_and_each_change_once(
    redis_server: RedisProcess, nursery: trio.Nursery
) -> None:
    ns = namespace()
    nodes = [await start(nursery, redis_server.url, ns) for _ in range(3)]
    ports = [port(n) for n in nodes]
    watchers = [await Watcher.open(nursery, p) for p in ports]
    # Alice has a session on node 0 and one on node 1: one member.
    alice_0 = await User(ports[0], "alice", {"name": "Alice"}).handshake()
    alice_1 = await User(ports[1], "alice", {"name": "Alice"}).handshake()
    bob = await User(ports[2], "bob").handshake()
    await alice_0.subscribe()
    await alice_1.subscribe()
    await bob.subscribe()
    await eventually(lambda: views(nodes) == [["alice", "bob"]] * 3)
    assert nodes[2].presence(ROOM)[0] == {"user": "alice", "info": {"name": "Alice"}}
    # A watcher arriving now gets the members from its node's view.
    late = await Watcher.open(nursery, ports[1])
    assert late.members() == ["alice", "bob"]
    await alice_0.unsubscribe()  # her other tab is still in: no leave
    await alice_1.disconnect()  # her last one: she leaves
    await bob.unsubscribe()
    # Zed's join comes after every change above on the log: once every
    # watcher has it, they have all there is to have.
    zed = await User(ports[0], "zed").handshake()
    await zed.subscribe()
    expected = [("join", "alice"), ("join", "bob"), ("leave", "alice"), ("leave", "bob")]
    for watcher in watchers:
        await eventually(lambda w=watcher: ("join", "zed") in w.events())  # type: ignore[misc]
        assert watcher.members() == []
        assert watcher.events() == [*expected, ("join", "zed")]
    assert late.events() == [*expected[2:], ("join", "zed")]
    assert await log_changes(redis_server.url, ns) == [*expected, ("join", "zed")]
    assert views(nodes) == [["zed"]] * 3
    for watcher in [*watchers, late]:
        await watcher.ws.aclose()


@fail_after(30)
async def test_a_dead_nodes_users_leave_once_within_the_ttl(
    redis_server: RedisProcess, nursery: trio.Nursery
) -> None:
    ns = namespace()
    survivors = [await start(nursery, redis_server.url, ns) for _ in range(2)]
    doomed_scope = trio.CancelScope()
    # The doomed node's records live 0.2 + 0.3 + 1.0 s after each request.
    short = EngineConfig(presence=("/chat/**",), timeout=0.2, session_timeout=0.3)
    doomed = await start(
        nursery, redis_server.url, ns, engine=short, scope=doomed_scope, ttl_margin=1.0
    )
    watchers = [await Watcher.open(nursery, port(n)) for n in survivors]
    carol = await User(port(doomed), "carol").handshake()
    alice_here = await User(port(survivors[0]), "alice").handshake()
    alice_there = await User(port(doomed), "alice").handshake()
    dave = await User(port(doomed), "dave", "D").handshake()
    for user in (carol, alice_here, alice_there, dave):
        await user.subscribe()
    await eventually(lambda: views(survivors) == [["carol", "alice", "dave"]] * 2)
    doomed_scope.cancel()  # dies without a word: its engine ends no session
    # Dave comes back through a survivor at once: his session moves, he stays in.
    dave.port = port(survivors[1])
    await dave.subscribe("/chat/other")
    killed = trio.current_time()
    await eventually(lambda: views(survivors) == [["alice", "dave"]] * 2, seconds=10)
    took = trio.current_time() - killed
    assert took < 1.5 + 0.1 + 1.5, took  # the record's TTL, a sweep, and slack
    assert survivors[0].presence("/chat/other") == [{"user": "dave", "info": "D"}]
    zed = await User(port(survivors[0]), "zed").handshake()
    await zed.subscribe()
    for watcher in watchers:
        await eventually(lambda w=watcher: ("join", "zed") in w.events())  # type: ignore[misc]
        assert watcher.events() == [
            ("join", "carol"),
            ("join", "alice"),
            ("join", "dave"),
            ("leave", "carol"),
            ("join", "zed"),
        ]
    assert sum(n.bus.stats["presence_vanished"] for n in survivors if n.bus is not None) == 1
    assert (await log_changes(redis_server.url, ns)).count(("leave", "carol")) == 1
    for watcher in watchers:
        await watcher.ws.aclose()
    gc.collect()  # the killed node's coredis leaks warn now, under this module's filters


@fail_after(30)
async def test_a_session_that_ends_on_its_node_leaves_at_once(
    redis_server: RedisProcess, nursery: trio.Nursery
) -> None:
    ns = namespace()
    short = EngineConfig(presence=("/chat/**",), timeout=0.2, session_timeout=0.3)
    # A long TTL margin: the leave cannot be the sweeper's, it is the owner's.
    a, b = [await start(nursery, redis_server.url, ns, engine=short, ttl_margin=30) for _ in "ab"]
    quiet = await User(port(a), "quiet").handshake()
    await quiet.subscribe()
    await eventually(lambda: views([a, b]) == [["quiet"]] * 2)
    await eventually(lambda: views([a, b]) == [[]] * 2, seconds=5)  # it expired on node a
    assert await log_changes(redis_server.url, ns) == [("join", "quiet"), ("leave", "quiet")]
    assert all(n.bus.stats["presence_vanished"] == 0 for n in (a, b) if n.bus is not None)


@fail_after(60)
async def test_redis_restarted_with_its_data_changes_nobody(
    redis_server: RedisProcess, nursery: trio.Nursery
) -> None:
    ns = namespace()
    nodes = [await start(nursery, redis_server.url, ns) for _ in range(2)]
    watcher = await Watcher.open(nursery, port(nodes[1]))
    alice = await User(port(nodes[0]), "alice").handshake()
    await alice.subscribe()
    await eventually(lambda: views(nodes) == [["alice"]] * 2)
    redis_server.stop()
    await eventually(lambda: not any(n.bus.stats["healthy"] for n in nodes if n.bus is not None))
    redis_server.start()  # AOF: everything is still there
    await eventually(lambda: all(n.bus.stats["healthy"] for n in nodes if n.bus is not None))
    bob = await User(port(nodes[1]), "bob").handshake()
    await bob.subscribe()
    await eventually(lambda: views(nodes) == [["alice", "bob"]] * 2)
    await eventually(lambda: ("join", "bob") in watcher.events())
    assert watcher.events() == [("join", "alice"), ("join", "bob")]
    assert all(n.bus.stats["presence_rebuilt"] == 0 for n in nodes if n.bus is not None)
    await watcher.ws.aclose()
    gc.collect()


@fail_after(60)
async def test_redis_losing_its_data_rebuilds_presence_from_live_sessions(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    if REDIS_SERVER is None:  # fails under CI=true, as every Redis test
        unavailable("redis-server is not installed (apt-get install redis-server)")
    redis = RedisProcess(tmp_path)
    redis.start()
    try:
        await _lose_data(redis, nursery)
    finally:
        redis.stop()
    gc.collect()


async def _lose_data(redis: RedisProcess, nursery: trio.Nursery) -> None:
    ns = namespace()
    nodes = [await start(nursery, redis.url, ns) for _ in range(3)]
    ports = [port(n) for n in nodes]
    users = [await User(ports[i % 3], name).handshake() for i, name in enumerate("abc")]
    second_a = await User(ports[1], "a").handshake()
    for user in [*users, second_a]:
        await user.subscribe()
    await eventually(lambda: views(nodes) == [["a", "b", "c"]] * 3)
    redis.stop()
    shutil.rmtree(redis.directory / "appendonlydir")
    redis.start()  # empty: no log, no records, no presence
    # Sessions come back as Faye clients do (401, handshake, subscribe); c does not.
    for user in [users[1], users[0], second_a]:
        (reply,) = await user.send({"channel": "/meta/connect", "connectionType": "long-polling"})
        assert reply["error"].startswith("401:"), reply
        await user.handshake()
        await user.subscribe()
    await eventually(lambda: views(nodes) == [["b", "a"]] * 3)
    # A watcher (new, like every session now) gets the rebuilt members, then
    # only real changes: no second join for a or b.
    watcher = await Watcher.open(nursery, ports[2])
    assert watcher.members() == ["b", "a"]
    await users[1].unsubscribe()
    zed = await User(ports[0], "zed").handshake()
    await zed.subscribe()
    await eventually(lambda: ("join", "zed") in watcher.events())
    assert watcher.events() == [("leave", "b"), ("join", "zed")]
    assert await log_changes(redis.url, ns) == [
        ("join", "b"),
        ("join", "a"),
        ("leave", "b"),
        ("join", "zed"),
    ]
    assert all(n.bus.stats["presence_rebuilt"] >= 1 for n in nodes if n.bus is not None)
    await watcher.ws.aclose()


@fail_after(30)
async def test_a_retried_pipeline_makes_no_second_join_or_leave(
    redis_server: RedisProcess, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = namespace()
    node = await start(nursery, redis_server.url, ns)
    assert node.bus is not None
    write = node.bus._write  # type: ignore[attr-defined]
    lost: list[bool] = []

    async def reply_lost(*args: Any, **kwargs: Any) -> Any:
        result = await write(*args, **kwargs)
        if not lost:
            lost.append(True)  # applied, but the node never hears so: it retries
            raise coredis.exceptions.ConnectionError("reply lost")
        return result

    alice = await User(port(node), "alice").handshake()
    monkeypatch.setattr(node.bus, "_write", reply_lost)
    # In and out in one pass: the retry sends both changes again.
    replies = await alice.send(
        {"channel": "/meta/subscribe", "subscription": ROOM},
        {"channel": "/meta/unsubscribe", "subscription": ROOM},
    )
    assert [r["successful"] for r in replies] == [True, True], replies
    assert lost
    assert await log_changes(redis_server.url, ns) == [("join", "alice"), ("leave", "alice")]


@fail_after(30)
async def test_a_node_that_lost_a_session_cannot_make_its_user_leave(
    redis_server: RedisProcess, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = namespace()
    short = EngineConfig(presence=("/chat/**",), timeout=0.2, session_timeout=0.3)
    a = await start(nursery, redis_server.url, ns, engine=short)
    b = await start(nursery, redis_server.url, ns)
    assert a.bus is not None
    assert b.bus is not None
    # Node a will not read that its session moved: its engine keeps a stale
    # copy and expires it, which must not end the session's presence.
    monkeypatch.setattr(a.bus, "_on_evict", lambda fields: None)
    alice = await User(port(a), "alice").handshake()
    await alice.subscribe()
    await b.bus.claim(alice.client_id)
    assert b.hub.is_known_client(alice.client_id)
    await eventually(lambda: not a.hub.is_known_client(alice.client_id), seconds=5)
    zed = await User(port(b), "zed").handshake()
    await zed.subscribe()
    await eventually(lambda: views([a, b]) == [["alice", "zed"]] * 2)
    assert await log_changes(redis_server.url, ns) == [("join", "alice"), ("join", "zed")]
