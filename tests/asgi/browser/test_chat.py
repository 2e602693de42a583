"""The chat demo in Chromium, served by the ASGI example (Starlette + BayeuxASGI).

The pages are examples/chat unchanged, on our client.js (served by
BayeuxASGI at /faye/client.js) and on the official Faye browser bundle; two
pages chat in one room over each transport the server offers a browser.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser._support import Browsers, Server
from tests.browser.test_chat import chat_both_ways, check_transport, fresh_room, open_chat


@pytest.mark.parametrize("transport", ["websocket", "eventsource", "long-polling"])
def test_pages_chat(browsers: Browsers, asgi_chat: Server, transport: str) -> None:
    room = fresh_room(f"asgi-{transport}")
    forced = None if transport == "websocket" else transport
    alice = open_chat(browsers, asgi_chat, room=room, name="alice", transport=forced)
    bob = open_chat(browsers, asgi_chat, room=room, name="bob", transport=forced)
    chat_both_ways(alice, bob, f"over {transport}")
    for tab in (alice, bob):
        check_transport(tab, transport, forced=forced is not None)


@pytest.mark.parametrize("transport", ["websocket", "callback-polling"])
def test_faye_bundle_chats_with_our_client(
    browsers: Browsers, asgi_chat: Server, faye_bundle: Path, transport: str
) -> None:
    room = fresh_room(f"asgi-faye-{transport}")
    forced = None if transport == "websocket" else transport
    alice = open_chat(
        browsers, asgi_chat, room=room, name="alice", transport=forced, client_script=faye_bundle
    )
    bob = open_chat(browsers, asgi_chat, room=room, name="bob")
    chat_both_ways(alice, bob, f"faye over {transport}")
    check_transport(alice, transport, forced=forced is not None)
