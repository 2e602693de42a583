"""Network failure: the server restarts under open chat pages.

Three pages (WebSocket; long-polling; callback-polling from another origin)
chat in a room. The server stops, gracefully or killed (its sessions die with
it either way), and starts again on the same port. Each page must notice
(``transport:down``), come back (``transport:up``), shake hands again,
subscribe again to its rooms without the page doing anything, and get the
messages published afterwards.

The server runs as `make run` starts it, with history for the rooms
(``CHAT_ARGS``). A page says "online" only once it is subscribed again, and a
message sent while another page is still subscribing again reaches that page
too, recovered from the history.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ._support import CHAT_ARGS, RECONNECT_MS, Browsers, Server, Tab, expect, running, start_server
from ._support import wait_closed as wait_port_closed
from .test_chat import expect_line, open_chat, say

if TYPE_CHECKING:
    from playwright.sync_api import Route

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
    server = start_server(tmp_path, CHAT_ARGS)
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


@contextmanager
def subscribes_held(tab: Tab, server: Server) -> Iterator[list[Route]]:
    """Hold the page's HTTP requests that carry a ``/meta/subscribe`` until the block ends.

    For a long-polling page: its re-subscription after a restart stays on
    the way for as long as the test needs, then goes through unchanged.
    """
    held: list[Route] = []
    holding = True

    def handle(route: Route) -> None:
        if holding and "/meta/subscribe" in (route.request.post_data or ""):
            held.append(route)
        else:
            route.fallback()

    def ours(url: str) -> bool:
        return url.startswith(server.endpoint)

    tab.page.route(ours, handle)
    try:
        yield held
    finally:
        holding = False
        for route in held:
            route.fallback()
        tab.page.unroute(ours, handle)


def restart(server: Server, tabs: list[Tab]) -> None:
    server.stop()
    wait_port_closed(server.port)
    for tab in tabs:
        status(tab, "offline")
    server.start()


def test_online_only_once_subscribed_again(browsers: Browsers, tmp_path: Path) -> None:
    """After a restart the badge stays off "online" while the page subscribes again."""
    room = "badge"
    server = start_server(tmp_path, CHAT_ARGS)
    with running(server):
        tab = open_chat(browsers, server, room=room, name="dora", transport="long-polling")
        status(tab, "online")
        with subscribes_held(tab, server) as held:
            restart(server, [tab])
            # The link works again (the server has answered, and the page
            # shook hands again), but its subscribes are on hold.
            tab.wait_until(lambda: bool(held), "the page to subscribe again", RECONNECT_MS)
            badge = tab.page.locator("#status")
            assert badge.get_attribute("data-state") != "online", badge.text_content()
        status(tab, "online")
        say(tab, "back")
        expect_line(tab, "dora", "back")


def test_a_message_sent_once_online_reaches_a_page_still_subscribing(
    browsers: Browsers, tmp_path: Path
) -> None:
    """alice is back and talks while bob's page is still subscribing again: bob gets it."""
    room = "recover"
    server = start_server(tmp_path, CHAT_ARGS)
    with running(server):
        alice = open_chat(browsers, server, room=room, name="alice")
        bob = open_chat(browsers, server, room=room, name="bob", transport="long-polling")
        say(alice, "before the restart")
        for tab in (alice, bob):
            expect_line(tab, "alice", "before the restart")
        with subscribes_held(bob, server) as held:
            restart(server, [alice, bob])
            status(alice, "online")
            bob.wait_until(lambda: bool(held), "bob's page to subscribe again", RECONNECT_MS)
            say(alice, "while bob is still subscribing")
            # on alice's page: the server took it, and alice was subscribed again
            expect_line(alice, "alice", "while bob is still subscribing")
        status(bob, "online")
        expect_line(bob, "alice", "while bob is still subscribing")
        say(bob, "got it")
        for tab in (alice, bob):
            expect_line(tab, "bob", "got it")
            expect_line(tab, "alice", "before the restart")
