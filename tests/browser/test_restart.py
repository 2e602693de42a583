"""Network failure: the server restarts under open chat pages.

Three pages (WebSocket; long-polling; callback-polling from another origin)
chat in a room. The server stops, gracefully or killed (its sessions die with
it either way), and starts again on the same port. Each page must notice
(``transport:down``), come back (``transport:up``), shake hands again,
subscribe again to its rooms without the page doing anything, and get the
messages published afterwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ._support import EXAMPLES, RECONNECT_MS, Browsers, Server, Tab, expect, running, start_server
from ._support import wait_closed as wait_port_closed
from .test_chat import expect_line, open_chat, say

#: a backend publish every PROBE_MS until every page shows one (bounded)
PROBE_MS = 500


def status(tab: Tab, state: str) -> None:
    expect(tab.page.locator("#status")).to_have_attribute("data-state", state, timeout=RECONNECT_MS)


def count(tab: Tab, channel: str, **fields: object) -> int:
    """How many messages on ``channel`` (with ``fields``) the page has sent."""
    return sum(
        1
        for _, message in tab.traffic.messages
        if message.get("channel") == channel
        and all(message.get(key) == value for key, value in fields.items())
    )


def wait_until_everyone_hears(server: Server, tabs: list[Tab], room: str) -> None:
    """Publish probes from the backend until each page has shown one.

    After a restart a page is subscribed again only once its new handshake
    and subscribe have gone through; nothing on the page says when. The
    probes measure exactly what matters: a message published now arrives.
    """
    waiting = list(tabs)
    for attempt in range(RECONNECT_MS // PROBE_MS):
        server.publish(f"/chat/{room}", {"name": "server", "text": f"probe {attempt}"})
        tabs[0].page.wait_for_timeout(PROBE_MS)
        waiting = [
            tab
            for tab in waiting
            if tab.page.locator("#messages li:not(.system)").filter(has_text="probe").count() == 0
        ]
        if not waiting:
            return
    raise AssertionError(f"{len(waiting)} page(s) never got a message after the restart")


@pytest.mark.parametrize("crash", [False, True], ids=["graceful-stop", "crash"])
def test_pages_reconnect_and_resubscribe_after_restart(
    browsers: Browsers, other_origin: Server, tmp_path: Path, crash: bool
) -> None:
    """``crash``: the server is killed, so connections drop with no answer."""
    room = "restart"
    server = start_server(tmp_path, ["--static", str(EXAMPLES / "chat")])
    with running(server):
        alice = open_chat(browsers, server, room=room, name="alice")
        bob = open_chat(browsers, server, room=room, name="bob", transport="long-polling")
        carol = open_chat(
            browsers,
            server,
            room=room,
            name="carol",
            transport="callback-polling",
            page_origin=other_origin,
        )
        tabs = [alice, bob, carol]
        for tab in tabs:
            status(tab, "online")
        say(alice, "before the restart")
        for tab in tabs:
            expect_line(tab, "alice", "before the restart")
        before = [count(tab, "/meta/handshake") for tab in tabs]

        server.stop(crash=crash)
        wait_port_closed(server.port)
        for tab in tabs:
            status(tab, "offline")
        server.start()  # same port, fresh state: every old session is unknown
        for tab in tabs:
            status(tab, "online")

        wait_until_everyone_hears(server, tabs, room)
        for tab, handshakes in zip(tabs, before, strict=True):
            assert count(tab, "/meta/handshake") > handshakes
            # subscribed again to its rooms (the test room and the three default ones)
            assert count(tab, "/meta/subscribe", subscription=f"/chat/{room}") >= 2
            assert count(tab, "/meta/subscribe", subscription="/chat/lobby") >= 2

        say(bob, "after the restart, from long-polling")
        say(carol, "after the restart, from callback-polling")
        say(alice, "after the restart, from websocket")
        for tab in tabs:
            expect_line(tab, "bob", "after the restart, from long-polling")
            expect_line(tab, "carol", "after the restart, from callback-polling")
            expect_line(tab, "alice", "after the restart, from websocket")
        assert alice.traffic.connects[-1] == ("websocket", "websocket")
        assert bob.traffic.transports() == {"http-json"}
        assert carol.traffic.transports() == {"callback-polling"}
