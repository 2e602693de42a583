"""The chat demo in Chromium: two pages talk in a room, over every transport.

Each page is the demo as a user opens it (examples/chat, served by
``bayeux serve --static examples/chat``); a page made cross-origin is loaded
from a second server and given the first one's endpoint. The transport a page
really used is read from its network traffic: which requests carried its
``/meta/connect`` messages, and the ``connectionType`` they declared.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from urllib.parse import urlencode

import pytest

from ._support import WIRE, Browsers, Server, Tab, expect

_rooms = itertools.count(1)


def fresh_room(prefix: str = "room") -> str:
    return f"{prefix}-{next(_rooms)}"


def open_chat(
    browsers: Browsers,
    server: Server,
    *,
    room: str,
    name: str,
    transport: str | None = None,
    page_origin: Server | None = None,
    client_script: Path | None = None,
) -> Tab:
    """Open the chat demo in ``room`` and wait until the room is joined."""
    query = {"room": room, "name": name}
    if page_origin is not None:
        query["endpoint"] = server.endpoint
    if transport is not None:
        query["transport"] = transport
    origin = (page_origin or server).origin
    tab = browsers.open(
        f"{origin}/?{urlencode(query)}", endpoint=server.endpoint, client_script=client_script
    )
    joined = tab.page.locator(f'#rooms li[data-room="{room}"]')
    expect(joined).to_have_attribute("data-state", "joined")
    expect(tab.page.locator("#room-title")).to_have_text(f"#{room}")
    return tab


def say(tab: Tab, text: str) -> None:
    tab.page.fill("#message", text)
    tab.page.click("#send")


def expect_line(tab: Tab, name: str, text: str) -> None:
    """``name: text`` is on screen exactly once."""
    line = tab.page.locator("#messages li:not(.system)").filter(has_text=text)
    expect(line).to_have_count(1)
    expect(line.locator(".who")).to_have_text(name)


def check_transport(tab: Tab, expected: str, *, forced: bool) -> None:
    """Every connect went where its connectionType says, and ``expected`` was used.

    A forced page used nothing else. An unforced page may send its first
    connect over long-polling while its WebSocket finishes opening (as Faye
    does); it must end up on ``expected``.
    """
    connects = tab.traffic.connects
    assert connects, "the page sent no /meta/connect"
    for transport, connection_type in connects:
        assert WIRE[connection_type] == transport, connects
    if forced:
        assert tab.traffic.connection_types() == {expected}, connects
        assert tab.traffic.transports() == {WIRE[expected]}, connects
    else:
        assert connects[-1][1] == expected, connects
    if expected == "eventsource":
        assert "eventsource-stream" in tab.traffic.kinds
    if expected != "websocket":
        assert "websocket" not in tab.traffic.kinds, tab.traffic.kinds


def chat_both_ways(alice: Tab, bob: Tab, tag: str) -> None:
    say(alice, f"hello bob {tag}")
    expect_line(bob, "alice", f"hello bob {tag}")
    expect_line(alice, "alice", f"hello bob {tag}")
    say(bob, f"hi alice {tag}")
    expect_line(alice, "bob", f"hi alice {tag}")
    expect_line(bob, "bob", f"hi alice {tag}")


def test_two_pages_chat_over_websocket(browsers: Browsers, chat_server: Server) -> None:
    room = fresh_room("ws")
    alice = open_chat(browsers, chat_server, room=room, name="alice")
    bob = open_chat(browsers, chat_server, room=room, name="bob")
    chat_both_ways(alice, bob, "over websocket")
    # Messages arrive on the socket, and the handshake went over a mandatory transport.
    for tab in (alice, bob):
        check_transport(tab, "websocket", forced=False)
        handshakes = [t for t, m in tab.traffic.messages if m.get("channel") == "/meta/handshake"]
        assert handshakes == ["http-json"]


@pytest.mark.parametrize(
    ("alice_transport", "bob_transport"),
    [
        pytest.param("long-polling", "callback-polling", id="long-polling+callback-polling"),
        pytest.param(
            "eventsource", "cross-origin-long-polling", id="eventsource+cross-origin-long-polling"
        ),
    ],
)
def test_two_pages_chat_over_http_transports(
    browsers: Browsers,
    chat_server: Server,
    other_origin: Server,
    alice_transport: str,
    bob_transport: str,
) -> None:
    """Alice's page is same-origin; Bob's is served from another port (cross-origin)."""
    room = fresh_room("http")
    alice = open_chat(browsers, chat_server, room=room, name="alice", transport=alice_transport)
    bob = open_chat(
        browsers,
        chat_server,
        room=room,
        name="bob",
        transport=bob_transport,
        page_origin=other_origin,
    )
    chat_both_ways(alice, bob, f"{alice_transport} and {bob_transport}")
    check_transport(alice, alice_transport, forced=alice_transport != "eventsource")
    check_transport(bob, bob_transport, forced=True)
    # A cross-origin page shakes hands with JSON-P: its only mandatory transport.
    handshakes = [t for t, m in bob.traffic.messages if m.get("channel") == "/meta/handshake"]
    assert handshakes == ["callback-polling"]


def test_cross_origin_page_uses_websocket_by_default(
    browsers: Browsers, chat_server: Server, other_origin: Server
) -> None:
    room = fresh_room("cross")
    alice = open_chat(browsers, chat_server, room=room, name="alice", page_origin=other_origin)
    bob = open_chat(browsers, chat_server, room=room, name="bob", transport="long-polling")
    chat_both_ways(alice, bob, "cross-origin websocket")
    check_transport(alice, "websocket", forced=False)


def test_rooms_are_separate(browsers: Browsers, chat_server: Server) -> None:
    """A page in several rooms sees each room's messages there, and counts unread ones."""
    first, second = fresh_room("first"), fresh_room("second")
    alice = open_chat(browsers, chat_server, room=first, name="alice")
    bob = open_chat(browsers, chat_server, room=second, name="bob")
    # Alice joins Bob's room too, through the form, then goes back to her first room.
    alice.page.fill("#room", second)
    alice.page.click("#join")
    expect(alice.page.locator(f'#rooms li[data-room="{second}"]')).to_have_attribute(
        "data-state", "joined"
    )
    alice.page.click(f'#rooms li[data-room="{first}"] .name')
    expect(alice.page.locator("#room-title")).to_have_text(f"#{first}")

    say(bob, "only in the second room")
    unread = alice.page.locator(f'#rooms li[data-room="{second}"] .unread')
    expect(unread).to_have_text("1")
    expect(alice.page.locator("#messages")).not_to_contain_text("only in the second room")
    alice.page.click(f'#rooms li[data-room="{second}"] .name')
    expect_line(alice, "bob", "only in the second room")
    expect(unread).to_have_text("")

    # Leaving cancels the subscription: the server hears of it, and Bob's next
    # message no longer reaches Alice.
    alice.page.click(f'#rooms li[data-room="{second}"] .leave')
    expect(alice.page.locator(f'#rooms li[data-room="{second}"]')).to_have_count(0)
    expect(alice.page.locator("#room-title")).to_have_text("#lobby")  # the first room listed
    alice.page.click(f'#rooms li[data-room="{first}"] .name')
    alice.wait_until(
        lambda: any(
            m.get("channel") == "/meta/unsubscribe"
            and m.get("subscription") == f"/chat/{second}"
            and m.get("successful") is True
            for m in alice.traffic.received
        ),
        "the server to acknowledge the unsubscribe",
    )
    say(bob, "after alice left")
    expect_line(bob, "bob", "after alice left")
    # Alice's own later message comes back on the same socket, after Bob's
    # (published first), so had Bob's reached her, it would be on screen now.
    say(alice, "still here")
    expect_line(alice, "alice", "still here")
    assert all(m.get("data", {}).get("text") != "after alice left" for m in alice.traffic.received)
