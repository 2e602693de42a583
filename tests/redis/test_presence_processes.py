"""Presence across three ``bayeux serve --presence`` processes; one killed with SIGKILL.

Users have sessions on different nodes (one user on two); watchers on the
survivors. The killed node's users leave within their records' TTL, by the
survivors, once; a user with a session on a survivor stays.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import coredis
import h11
import pytest
import trio

from tests._support.ports import HOST
from tests._support.waiting import eventually
from tests.trio.helpers import HANDSHAKE, bayeux, fail_after

from ._support import Node
from .conftest import RedisProcess

pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

ROOM = "/chat/room"
WATCH = "/presence/chat/room"
#: --timeout 1 --session-timeout 1, and the bus' 10 s margin: a record lives
#: 12 s after the last request of its session
TTL = 1 + 1 + 10
_FAILURES = (OSError, trio.BrokenResourceError, h11.RemoteProtocolError)


#: short timeouts, so that a killed node's sessions expire soon
ARGS = (
    "--timeout", "1", "--session-timeout", "1",
    "--presence", "/chat/**", "--extension", "tests._support.presence:Names",
)  # fmt: skip


@pytest.fixture
def nodes(redis_server: RedisProcess) -> Iterator[list[Node]]:
    url = redis_server.url.rsplit("/", 1)[0] + "/6"
    with socket.create_connection((HOST, redis_server.port), timeout=5) as sock:
        sock.sendall(b"SELECT 6\r\nFLUSHDB\r\n")
        assert sock.recv(64).startswith(b"+OK")
    started: list[Node] = []
    try:
        for _ in range(3):
            started.append(Node(url, *ARGS))
        for node in started:
            node.wait_listening()
        yield started
    finally:
        for node in started:
            node.stop()


class Session:
    """A long-polling session of ``user`` on one node, kept alive by connects."""

    def __init__(self, port: int, user: str | None = None) -> None:
        self.port = port
        self.user = user
        self.client_id = ""
        self.received: list[dict[str, Any]] = []
        self.alive = True

    async def start(self, nursery: trio.Nursery, *channels: str) -> Session:
        message: dict[str, Any] = dict(HANDSHAKE)
        if self.user is not None:
            message["ext"] = {"user": self.user}
        (reply,) = await bayeux(self.port, [message])
        assert reply["successful"] is True, reply
        self.client_id = reply["clientId"]
        replies = await bayeux(
            self.port,
            [
                {"channel": "/meta/subscribe", "clientId": self.client_id, "subscription": c}
                for c in channels
            ],
        )
        assert all(r.get("successful") for r in replies if r["channel"] == "/meta/subscribe")
        self.received += [r for r in replies if not r["channel"].startswith("/meta/")]
        nursery.start_soon(self._connect)
        return self

    async def _connect(self) -> None:
        """Connect until the node goes away (this test never moves a session)."""
        message = {
            "channel": "/meta/connect",
            "clientId": self.client_id,
            "connectionType": "long-polling",
        }
        while self.alive:
            try:
                replies = await bayeux(self.port, [message])
            except _FAILURES:
                self.alive = False
                return
            assert replies[0]["successful"] is True, replies
            self.received += [r for r in replies if not r["channel"].startswith("/meta/")]

    def events(self) -> list[tuple[str, str]]:
        """(kind, user) of each join and leave it got after its members list."""
        return [
            (kind, member["user"])
            for message in self.received
            if message["channel"] == WATCH
            for kind, member in message["data"].items()
            if kind != "members"
        ]

    def members(self) -> list[str]:
        first = next(m for m in self.received if m["channel"] == WATCH)
        return [m["user"] for m in first["data"]["members"]]


@fail_after(90)
async def test_a_killed_nodes_users_leave_once_by_the_survivors(
    nodes: list[Node], redis_server: RedisProcess
) -> None:
    client: coredis.Redis[bytes] = coredis.Redis.from_url(
        redis_server.url.rsplit("/", 1)[0] + "/6", decode_responses=False
    )
    doomed, steady, other = nodes
    async with trio.open_nursery() as nursery:
        watchers = [await Session(n.port).start(nursery, WATCH) for n in (steady, other)]
        await Session(doomed.port, "carol").start(nursery, ROOM)
        await Session(doomed.port, "alice").start(nursery, ROOM)
        await Session(other.port, "alice").start(nursery, ROOM)  # her second tab
        await Session(steady.port, "bob").start(nursery, ROOM)
        joined = {("join", "carol"), ("join", "alice"), ("join", "bob")}
        for watcher in watchers:
            await eventually(lambda w=watcher: set(w.events()) == joined)  # type: ignore[misc]
        doomed.kill()
        killed = trio.current_time()
        for watcher in watchers:
            await eventually(
                lambda w=watcher: ("leave", "carol") in w.events(),  # type: ignore[misc]
                seconds=TTL + 8,
            )
        took = trio.current_time() - killed
        # Her record lives TTL s after her last connect (answered within 1 s
        # of the kill), then a sweep (every 1 s) finds it gone.
        assert took < TTL + 3, took
        zed = await Session(steady.port, "zed").start(nursery, ROOM)
        for watcher in watchers:
            await eventually(lambda w=watcher: ("join", "zed") in w.events())  # type: ignore[misc]
            events = watcher.events()
            assert watcher.members() == []
            assert sorted(events[:3]) == sorted(joined)
            assert events[3:] == [("leave", "carol"), ("join", "zed")]
        late = await Session(other.port).start(nursery, WATCH)
        assert sorted(late.members()) == ["alice", "bob", "zed"]
        async with client:
            entries = await client.xrange("bayeux:{log}")
        leaves = [e for e in entries if b'"leave"' in e.field_values.get(b"p", b"")]
        assert len(leaves) == 1, leaves
        del zed
        nursery.cancel_scope.cancel()
