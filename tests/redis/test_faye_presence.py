"""Presence seen by unchanged npm faye 1.4.3 clients across three ``bayeux serve`` nodes.

Each tab is a Faye client in its own node process (tests/interop's
``FayeTab``); a user has tabs on two nodes, watchers sit on two others. Every
watcher gets each join and leave once: a tab's disconnect while the user's
other tab (on another node) is in is no leave; that tab dying (killed: its
WebSocket closes, no ``/meta/disconnect``) is the leave, once its node expires
the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop._support import ServerProcess, ensure_node_modules, start_our_server
from tests.interop.test_faye_presence import FayeTab, join, leave

from .conftest import RedisProcess

ROOM = "/chat/room"
WATCH = "/presence/chat/room"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    return ensure_node_modules()


@pytest.fixture(scope="module")
def nodes(
    redis_server: RedisProcess, node_modules: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    url = redis_server.url.rsplit("/", 1)[0] + "/7"
    logs = tmp_path_factory.mktemp("faye-presence-cluster")
    args = [
        "--engine", url, "--presence", "/chat/**",
        "--timeout", "2", "--session-timeout", "3",
        "--extension", "tests.interop.presence_ext:UserFromHandshake",
        "--log-level", "warning",
    ]  # fmt: skip
    started: list[ServerProcess] = []
    try:
        for i in range(3):
            started.append(start_our_server(logs / f"node{i}.log", args))
        yield started
    finally:
        for server in started:
            server.stop()


def test_faye_watchers_on_every_node_see_each_change_once(
    nodes: list[ServerProcess], node_modules: Path, tmp_path: Path
) -> None:
    opened: list[FayeTab] = []

    def tab(node: int, user: str, transport: str = "websocket") -> FayeTab:
        opened.append(FayeTab(node_modules, nodes[node], tmp_path, user=user, transport=transport))
        return opened[-1]

    try:
        watchers = [tab(0, "w0"), tab(2, "w2", "long-polling")]
        for watcher in watchers:
            watcher.subscribe(WATCH)
            watcher.wait_messages(WATCH, 1)
        alice_ws = tab(0, "alice")
        alice_lp = tab(1, "alice", "long-polling")
        bob = tab(2, "bob", "long-polling")
        for member in (alice_ws, alice_lp, bob):
            member.subscribe(ROOM)
        for watcher in watchers:
            got = watcher.wait_messages(WATCH, 3)
            assert sorted(map(str, got[1:3])) == sorted(map(str, [join("alice"), join("bob")]))
        alice_lp.send(cmd="disconnect")  # her WebSocket tab on node 0 is still in
        alice_lp.wait(
            "the disconnect reply",
            lambda events: any(e.get("channel") == "/meta/disconnect" for e in events),
        )
        bob.send(cmd="unsubscribe", channel=ROOM)
        for watcher in watchers:
            # In log order: had her disconnect made alice leave, it would come first.
            assert watcher.wait_messages(WATCH, 4)[3] == leave("bob")
        alice_ws.kill()  # her last tab: the leave once node 0 expires the session
        for watcher in watchers:
            assert watcher.wait_messages(WATCH, 5)[4] == leave("alice")
        # Zed's join is on the log after all of the above: once a watcher has
        # it, it has everything before it, and nothing came twice.
        tab(1, "zed").subscribe(ROOM)
        for watcher in watchers:
            got = watcher.wait_messages(WATCH, 6)
            assert got[0] == {"members": []}
            assert got[5:] == [join("zed")]
    finally:
        for opened_tab in opened:
            opened_tab.close()
