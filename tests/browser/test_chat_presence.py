"""Presence in the chat demo, in Chromium: who is in the room, live.

The server runs as `make run` starts it (``CHAT_ARGS``: ``--presence
'/chat/**'`` and the extension ``examples.chat_presence:ChatNames``, which
names each page's user from the name in its handshake). Each page lists the
people in the room on screen (``#people``, one item per user, ``data-user``
the user id); a page's own entry says "(you)".
"""

from __future__ import annotations

from pathlib import Path

from ._support import WAIT_MS, Browsers, Server, Tab, expect
from .test_chat import expect_line, fresh_room, open_chat, say

#: how long a closed tab may take to leave. Its page sends /meta/disconnect
#: as it unloads, and the others see the leave at once; but a browser may
#: kill the page before that frame is out, and then the server ends the
#: session when it expires: 50 s without a connect, with `make run`'s 25 s
#: timeout (docs/server.md).
LEAVE_MS = 65_000


def expect_people(tab: Tab, *shown: str, timeout: int = WAIT_MS) -> None:
    """The page lists exactly these people, in this order (join order)."""
    people = tab.page.locator("#people li")
    expect(people).to_have_text(list(shown), timeout=timeout)
    expect(tab.page.locator("#people-count")).to_have_text(f"({len(shown)})")


def close(tab: Tab) -> None:
    """Close the tab as a user does: the page's unload handlers run."""
    tab.page.close(run_before_unload=True)


def test_two_pages_see_each_other_and_a_closed_one_leaves(
    browsers: Browsers, chat_server: Server
) -> None:
    room = fresh_room("presence")
    alice = open_chat(browsers, chat_server, room=room, name="Alice")
    expect_people(alice, "Alice (you)")
    bob = open_chat(browsers, chat_server, room=room, name="Bob")
    expect_people(bob, "Alice", "Bob (you)")
    expect_people(alice, "Alice (you)", "Bob")
    # The server knows them by the names the pages sent.
    expect(alice.page.locator('#people li[data-user="bob"]')).to_have_count(1)
    close(bob)
    expect_people(alice, "Alice (you)", timeout=LEAVE_MS)
    # Another room on screen lists its own people (Alice alone there).
    other = fresh_room("presence-other")
    alice.page.fill("#room", other)
    alice.page.click("#join")
    expect(alice.page.locator("#room-title")).to_have_text(f"#{other}")
    expect_people(alice, "Alice (you)")


def test_a_second_tab_of_the_same_name_counts_once(browsers: Browsers, chat_server: Server) -> None:
    room = fresh_room("presence-tabs")
    carol = open_chat(browsers, chat_server, room=room, name="Carol")
    first = open_chat(browsers, chat_server, room=room, name="Dave")
    second = open_chat(browsers, chat_server, room=room, name=" dave ")  # the same user
    expect_people(carol, "Carol (you)", "Dave")
    expect_people(second, "Carol", "Dave (you)")
    close(first)
    # Dave is still here, in his second tab.
    say(second, "still here")
    expect_line(carol, "dave", "still here")  # named as the second tab typed it
    expect_people(carol, "Carol (you)", "Dave")
    close(second)
    expect_people(carol, "Carol (you)", timeout=LEAVE_MS)


def test_the_page_asks_for_a_name_before_it_connects(
    browsers: Browsers, chat_server: Server
) -> None:
    room = fresh_room("presence-name")
    tab = browsers.open(f"{chat_server.origin}/?room={room}", endpoint=chat_server.endpoint)
    page = tab.page
    expect(page.locator("#status")).to_have_text("type your name to join")
    page.wait_for_timeout(300)
    assert tab.traffic.messages == []  # no handshake without a name
    page.fill("#name", "Erin")
    page.press("#name", "Tab")  # a change commits it
    expect(page.locator(f'#rooms li[data-room="{room}"]')).to_have_attribute("data-state", "joined")
    expect_people(tab, "Erin (you)")
    expect(page.locator("#name")).to_have_attribute("readonly", "")
    handshakes = [m for _, m in tab.traffic.messages if m.get("channel") == "/meta/handshake"]
    assert [m.get("ext") for m in handshakes] == [{"name": "Erin"}]
    # The name is remembered: the page opened again goes straight in.
    page.goto(f"{chat_server.origin}/?room={room}")
    expect(page.locator("#name")).to_have_value("Erin")
    expect_people(tab, "Erin (you)")


def test_a_page_on_fayes_own_bundle_sees_the_same_people(
    browsers: Browsers, chat_server: Server, faye_bundle: Path
) -> None:
    """The wire is plain Bayeux: Faye's client reads the members list, joins
    and leaves from a subscription to /presence/chat/<room>."""
    room = fresh_room("presence-faye")
    ours = open_chat(browsers, chat_server, room=room, name="Frank")
    faye = open_chat(browsers, chat_server, room=room, name="Grace", client_script=faye_bundle)
    expect_people(faye, "Frank", "Grace (you)")
    expect_people(ours, "Frank (you)", "Grace")
    close(ours)
    expect_people(faye, "Grace (you)", timeout=LEAVE_MS)
