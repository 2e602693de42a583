"""The official Faye browser bundle (npm faye 1.4.3) runs the demos against our server.

The pages are the demos unchanged; only their ``/faye/client.js`` is answered
with ``faye/client/faye-browser-min.js`` from the npm package (installed by
the interop fixture into a cache outside the tree). The same tests as with
our client.js: if Faye's own client works with the server and ours behaves as
Faye's, the pages cannot tell them apart.
"""

from __future__ import annotations

from pathlib import Path

from ._support import Browsers, Server, expect
from .test_chat import chat_both_ways, check_transport, fresh_room, open_chat
from .test_private_chat import check_private_chat


def test_bundle_is_the_official_one(
    browsers: Browsers, chat_server: Server, faye_bundle: Path
) -> None:
    room = fresh_room("faye")
    tab = open_chat(browsers, chat_server, room=room, name="alice", client_script=faye_bundle)
    assert tab.page.evaluate("[Faye.VERSION, typeof Faye.implementation]") == ["1.4.3", "undefined"]


def test_faye_pages_chat_over_websocket_and_callback_polling(
    browsers: Browsers, chat_server: Server, other_origin: Server, faye_bundle: Path
) -> None:
    room = fresh_room("faye")
    alice = open_chat(browsers, chat_server, room=room, name="alice", client_script=faye_bundle)
    bob = open_chat(
        browsers,
        chat_server,
        room=room,
        name="bob",
        transport="callback-polling",
        page_origin=other_origin,
        client_script=faye_bundle,
    )
    chat_both_ways(alice, bob, "with faye's own client")
    check_transport(alice, "websocket", forced=False)
    check_transport(bob, "callback-polling", forced=True)


def test_faye_page_chats_with_our_page(
    browsers: Browsers, chat_server: Server, faye_bundle: Path
) -> None:
    room = fresh_room("mixed")
    alice = open_chat(
        browsers,
        chat_server,
        room=room,
        name="alice",
        transport="long-polling",
        client_script=faye_bundle,
    )
    bob = open_chat(browsers, chat_server, room=room, name="bob")
    chat_both_ways(alice, bob, "faye and ours")
    check_transport(alice, "long-polling", forced=True)
    expect(bob.page.locator("#status")).to_have_attribute("data-state", "online")


def test_faye_private_chat(browsers: Browsers, private_server: Server, faye_bundle: Path) -> None:
    check_private_chat(browsers, private_server, faye_bundle)
