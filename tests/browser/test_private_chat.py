"""The private chat demo in Chromium: the server's token check admits or refuses.

The server runs the demo's extension (examples/private_chat/auth.py) with its
registry (examples/private_chat/tokens.json): alice and bob follow each other,
alice follows carol but carol does not follow her back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bayeux_core import MessageContext
from examples.private_chat.auth import REFUSED, TOKENS_FILE, PrivateChatAuth
from tests.interop._support import raw_request

from ._support import Browsers, Server, Tab, expect

TOKENS = {user: entry["token"] for user, entry in json.loads(TOKENS_FILE.read_text()).items()}


def open_private(
    browsers: Browsers,
    server: Server,
    *,
    name: str,
    token: str,
    friend: str,
    client_script: Path | None = None,
) -> Tab:
    """Sign in and open the conversation with ``friend`` through the page's forms."""
    tab = browsers.open(f"{server.origin}/", endpoint=server.endpoint, client_script=client_script)
    page = tab.page
    page.fill("#me", name)
    page.fill("#token", token)
    page.click("#signin-button")
    expect(page.locator("#whoami")).to_have_text(f"Signed in as {name}.")
    page.fill("#friend", friend)
    page.click("#talk")
    return tab


def sign_in(
    browsers: Browsers,
    server: Server,
    *,
    name: str,
    token: str,
    client_script: Path | None = None,
) -> Tab:
    """Fill in the sign-in form and submit it (the outcome is the caller's to check)."""
    tab = browsers.open(f"{server.origin}/", endpoint=server.endpoint, client_script=client_script)
    tab.page.fill("#me", name)
    tab.page.fill("#token", token)
    tab.page.click("#signin-button")
    return tab


def expect_wrong_token(tab: Tab, name: str) -> None:
    """Sign-in refused at once: said on the page, not signed in, nothing to talk with."""
    page = tab.page
    expect(page.locator("#signin")).to_have_attribute("data-state", "refused")
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_have_text(f"Wrong token for {name}: {REFUSED}")
    expect(page.locator("#whoami")).to_be_hidden()
    expect(page.locator("#open")).to_be_hidden()
    expect(page.locator("#signin")).to_be_visible()


def expect_admitted(tab: Tab) -> None:
    expect(tab.page.locator("#conversation")).to_have_attribute("data-state", "open")
    expect(tab.page.locator("#error")).to_be_hidden()


def expect_refused(tab: Tab) -> None:
    expect(tab.page.locator("#conversation")).to_have_attribute("data-state", "refused")
    error = tab.page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_have_text(f"Refused: {REFUSED}")


def open_conversation(
    browsers: Browsers,
    server: Server,
    first: str,
    second: str,
    client_script: Path | None = None,
) -> tuple[Tab, Tab]:
    """``first`` and ``second`` (users of TOKENS) sign in and open their conversation."""
    tabs = tuple(
        open_private(
            browsers,
            server,
            name=name,
            token=TOKENS[name],
            friend=friend,
            client_script=client_script,
        )
        for name, friend in ((first, second), (second, first))
    )
    for tab in tabs:
        expect_admitted(tab)
    return tabs[0], tabs[1]


def send(sender: Tab, receiver: Tab, text: str, *, who: str) -> None:
    """``sender`` sends ``text``; it arrives at ``receiver`` once, shown as from ``who``."""
    sender.page.fill("#message", text)
    sender.page.click("#send")
    line = receiver.page.locator("#messages li:not(.system)").filter(has_text=text)
    expect(line).to_have_count(1)
    expect(line.locator(".who")).to_have_text(who)


def expect_no_token_delivered(*tabs: Tab) -> None:
    for tab in tabs:
        for message in tab.traffic.received:
            assert "authToken" not in json.dumps(message.get("ext", {})), message


#: a Faye client with ``token`` in every message's ext.authToken tries to
#: subscribe to each of ``channels`` and to publish to ``publishTo``
_EAVESDROP = """async ([token, channels, publishTo]) => {
    const client = new Faye.Client('/faye');
    client.addExtension({outgoing(message, callback) {
        message.ext = {authToken: token};
        callback(message);
    }});
    const results = {};
    for (const channel of channels) {
        results[channel] = await client.subscribe(channel, () => {}).then(
            () => 'admitted', (error) => error.message);
    }
    results.publish = await client.publish(publishTo, {text: 'x'}).then(
        () => 'published', (error) => error.message);
    return results;
}"""


def eavesdrop(
    browsers: Browsers, server: Server, user: str, channels: list[str], publish_to: str
) -> dict[str, str]:
    """What ``user``'s own Faye client gets: channel (and "publish") -> "admitted",
    "published" or the error."""
    tab = browsers.open(f"{server.origin}/", endpoint=server.endpoint)
    outcomes: dict[str, str] = tab.page.evaluate(_EAVESDROP, [TOKENS[user], channels, publish_to])
    return outcomes


def check_private_chat(browsers: Browsers, server: Server, client_script: Path | None) -> None:
    alice, bob = open_conversation(browsers, server, "alice", "bob", client_script)
    # carol's token is valid, but she does not follow alice: no conversation.
    carol = open_private(
        browsers,
        server,
        name="carol",
        token=TOKENS["carol"],
        friend="alice",
        client_script=client_script,
    )
    expect_refused(carol)
    # Someone who claims to be bob without his token is refused when signing in.
    impostor = sign_in(browsers, server, name="bob", token="guessed", client_script=client_script)
    expect_wrong_token(impostor, "bob")

    send(alice, bob, "hi bob, only you can read this", who="alice")
    send(bob, alice, "hello alice", who="bob")

    # The refused pages received nothing, and the token was not delivered to anyone.
    for tab in (carol, impostor):
        expect(tab.page.locator("#messages li:not(.system)")).to_have_count(0)
    expect_no_token_delivered(alice, bob)


def test_private_chat_admits_mutual_followers_and_refuses_others(
    browsers: Browsers, private_server: Server
) -> None:
    check_private_chat(browsers, private_server, None)


def test_a_wrong_token_is_refused_at_sign_in(browsers: Browsers, private_server: Server) -> None:
    """Not "Signed in as bob" and a refusal at the first Talk: the token is checked at once."""
    tab = sign_in(browsers, private_server, name="bob", token="guessed")
    expect_wrong_token(tab, "bob")
    # an unknown user, or another user's (valid) token, is no better
    tab.page.fill("#me", "bob")
    tab.page.fill("#token", TOKENS["alice"])
    tab.page.click("#signin-button")
    expect_wrong_token(tab, "bob")
    # then the right one signs in
    tab.page.fill("#token", TOKENS["bob"])
    tab.page.click("#signin-button")
    expect(tab.page.locator("#whoami")).to_have_text("Signed in as bob.")
    expect(tab.page.locator("#error")).to_be_hidden()
    expect(tab.page.locator("#open")).to_be_visible()


def test_eavesdropping_patterns_are_refused(browsers: Browsers, private_server: Server) -> None:
    """Wildcards that would reach a conversation are refused, even with a valid token."""
    channels = [
        "/**",
        "/private/**",
        "/private/*",
        "/private/bob",
        "/private/alice/*",
        "/private/alice/bob",
        "/private/alice",
    ]
    outcomes = eavesdrop(browsers, private_server, "alice", channels, "/private/alice/carol")
    assert outcomes == {
        "/**": REFUSED,
        "/private/**": REFUSED,
        "/private/*": REFUSED,
        "/private/bob": REFUSED,
        "/private/alice/*": REFUSED,
        "/private/alice/bob": "admitted",
        "/private/alice": "admitted",  # her own channel: how the page checks her token
        "publish": REFUSED,
    }


def test_page_link_with_query_parameters(browsers: Browsers, private_server: Server) -> None:
    """``?name=&token=&friend=`` signs in and opens the conversation directly."""
    query = urlencode({"name": "dave", "token": TOKENS["dave"], "friend": "carol"})
    tab = browsers.open(f"{private_server.origin}/?{query}", endpoint=private_server.endpoint)
    expect_admitted(tab)
    expect(tab.page.locator("#title")).to_have_text("dave ↔ carol")


# --------------------------------------------- the extension alone (no browser)


def _incoming(message: dict[str, Any]) -> dict[str, Any] | None:
    return PrivateChatAuth().incoming(message, MessageContext(now=0.0))


def _subscribe(subscription: object, token: object = None) -> dict[str, Any] | None:
    message: dict[str, Any] = {"channel": "/meta/subscribe", "subscription": subscription}
    if token is not None:
        message["ext"] = {"authToken": token}
    return _incoming(message)


def test_extension_checks_every_pattern_of_a_subscription() -> None:
    alice = TOKENS["alice"]
    assert "error" not in (_subscribe("/private/alice/bob", alice) or {})
    assert "error" not in (_subscribe("/chat/lobby") or {})  # not private: no token needed
    assert "error" not in (_subscribe("/private/alice", alice) or {})  # her own channel
    refused = [
        _subscribe("/private/alice"),  # her own channel, without her token
        _subscribe("/private/alice", TOKENS["bob"]),
        _subscribe("/private/nobody", alice),
        _subscribe("/private/*", alice),
        _subscribe("/private/alice/bob"),  # no token
        _subscribe("/private/alice/bob", 42),  # not a string
        _subscribe("/private/bob/alice", alice),  # names out of order
        _subscribe("/private/alice/carol", alice),  # carol does not follow alice
        _subscribe("/private/alice/alice", alice),
        _subscribe("/private/alice/bob/x", alice),
        _subscribe(["/chat/lobby", "/private/bob/dave"], alice),  # not alice's conversation
        _subscribe("/**", alice),
    ]
    assert all(message is not None and message["error"] == REFUSED for message in refused)


def test_extension_stamps_the_sender_and_strips_the_token() -> None:
    message = _incoming(
        {
            "channel": "/private/alice/bob",
            "data": {"from": "alice", "text": "hi"},
            "ext": {"authToken": TOKENS["bob"], "other": 1},
        }
    )
    assert message == {
        "channel": "/private/alice/bob",
        "data": {"from": "bob", "text": "hi"},  # the token is bob's
        "ext": {"other": 1},
    }
    refused = _incoming(
        {"channel": "/private/alice/bob", "data": "x", "ext": {"authToken": "guessed"}}
    )
    assert refused == {"channel": "/private/alice/bob", "data": "x", "error": REFUSED}
    # a user's own channel is for checking the token: nobody publishes there
    own = _incoming(
        {"channel": "/private/alice", "data": "x", "ext": {"authToken": TOKENS["alice"]}}
    )
    assert own == {"channel": "/private/alice", "data": "x", "error": REFUSED}


def test_only_the_public_folder_is_served(private_server: Server) -> None:
    for path in ("/tokens.json", "/../tokens.json", "/auth.py", "/%2e%2e/tokens.json"):
        status, _, _ = raw_request(private_server.port, "GET", path)
        assert status == 404, path
    status, _, body = raw_request(private_server.port, "GET", "/")
    assert status == 200
    assert b"private.js" in body
