"""The private chat demo from configuration alone, in Chromium.

``bayeux serve --config examples/private_chat/bayeux.toml``: no Python
extension; users and tokens from tokens.json, channel rules from the file
(docs/access.md). Any two users of the registry may talk here (who follows
whom stays in the Python version); everyone else is refused with the seed's
``Invalid subscription auth token``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.private_chat.auth import REFUSED

from ._support import EXAMPLES, Browsers, Server, expect, running, start_server
from .test_private_chat import (
    TOKENS,
    eavesdrop,
    expect_no_token_delivered,
    expect_wrong_token,
    open_conversation,
    send,
    sign_in,
)

CONFIG = EXAMPLES / "private_chat" / "bayeux.toml"


@pytest.fixture(scope="module")
def config_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The demo exactly as its docs start it: ``bayeux serve --config <the file>``."""
    with running(
        start_server(tmp_path_factory.mktemp("private-config"), ["--config", str(CONFIG)])
    ) as server:
        yield server


def test_two_users_talk_and_nobody_else_listens(browsers: Browsers, config_server: Server) -> None:
    alice, bob = open_conversation(browsers, config_server, "alice", "bob")
    # dave holds a valid token, but alice/bob is not his conversation.
    channels = [
        "/private/alice/bob",
        "/**",
        "/private/*",
        "/private/**",
        "/private/alice/*",
        "/private/bob",
    ]
    outcomes = eavesdrop(browsers, config_server, "dave", channels, "/private/alice/bob")
    assert outcomes == dict.fromkeys([*channels, "publish"], REFUSED)
    # What alice says arrives at bob, signed by the server with her name.
    send(alice, bob, "configured, not coded", who="alice")
    expect_no_token_delivered(alice, bob)


def test_a_wrong_token_is_refused_at_sign_in(browsers: Browsers, config_server: Server) -> None:
    expect_wrong_token(sign_in(browsers, config_server, name="bob", token="guessed"), "bob")
    expect_wrong_token(sign_in(browsers, config_server, name="bob", token=TOKENS["alice"]), "bob")


def test_with_fayes_own_bundle(
    browsers: Browsers, config_server: Server, faye_bundle: Path
) -> None:
    alice, carol = open_conversation(browsers, config_server, "alice", "carol", faye_bundle)
    send(carol, alice, "from faye's bundle", who="carol")


def test_the_registry_is_reloaded_when_it_changes(browsers: Browsers, tmp_path: Path) -> None:
    """A user added to tokens.json can sign in without a restart; one removed cannot."""
    folder = tmp_path / "demo"
    folder.mkdir()
    shutil.copy(EXAMPLES / "private_chat" / "tokens.json", folder / "tokens.json")
    text = CONFIG.read_text().replace(
        'static = "public"', f'static = "{EXAMPLES / "private_chat" / "public"}"'
    )
    (folder / "bayeux.toml").write_text(text)
    with running(start_server(tmp_path, ["--config", str(folder / "bayeux.toml")])) as server:
        expect_wrong_token(sign_in(browsers, server, name="erin", token="erin-5e1f"), "erin")
        registry: dict[str, Any] = json.loads((folder / "tokens.json").read_text())
        registry["erin"] = {"token": "erin-5e1f"}
        del registry["dave"]
        (folder / "tokens.json").write_text(json.dumps(registry))
        # Checked for changes at most once a second: try again until then.
        for _ in range(20):
            tab = sign_in(browsers, server, name="erin", token="erin-5e1f")
            # The final state only: "Checking the token of erin…" shows #whoami too.
            admitted = '#whoami:visible:has-text("Signed in as erin.")'
            outcome = tab.page.locator(f"{admitted}, #signin[data-state=refused]")
            expect(outcome).to_have_count(1)
            if tab.page.locator(admitted).count():
                break
            tab.page.wait_for_timeout(250)
        expect(tab.page.locator("#whoami")).to_have_text("Signed in as erin.")
        expect_wrong_token(sign_in(browsers, server, name="dave", token=TOKENS["dave"]), "dave")
