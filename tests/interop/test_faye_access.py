"""npm faye 1.4.3 clients against channel rules and backend hooks (issue 17).

Access control is for unchanged Faye clients too: their tokens travel in
``ext``, and a refusal is a Bayeux error that the faye client shows as one (a
subscribe's or publish's promise rejects with it). test_faye_jwt.py covers
JWT; here the token registry (tokens.json, ``ext.authToken`` on every
message), channel rules from the config file and backend hooks.

Each test runs a backend (tests/access/backend.py: hypercorn on trio, in the
test's own task) and a ``bayeux serve --config FILE`` subprocess whose file
points [hooks.subscribe] and [hooks.publish] at it; js/faye_access.js then
runs three faye clients (alice, bob, carol) through its scenario, over
WebSocket or long-polling. The server's start and the node run are blocking
calls: they run in worker threads, so that the backend goes on answering.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import trio

from tests._support.tokens import write_registry
from tests.access.backend import (
    Answer,
    Backend,
    allow,
    by_channel,
    refuse,
    rewrite,
    running_backend,
)
from tests.trio.helpers import fail_after

from ._support import of, run_node, start_our_server

TOKENS = {
    "alice": "alice-faye-access-4c1d",
    "bob": "bob-faye-access-82e0",
    "carol": "carol-faye-access-f9a7",
}
#: alice and bob's; its rule has its own error and stamps ``data.from``
CONVERSATION = "/talk/alice/bob"
RULE_ERROR = "403:/talk/alice/bob:Not your conversation"
#: open by the rules; the backend refuses subscribes to it
CLOSED = "/news/closed"
BACKEND_ERROR = "403:/news/closed:Closed by the backend"
#: publish = "server"
SERVER_ONLY = "/news/today"


def checked(description: Any) -> Answer:
    """The publish hook: a message in the conversation comes out in capitals, marked."""
    if description.get("channel") != CONVERSATION:
        return allow()
    data = description["data"]
    return rewrite({**data, "text": data["text"].upper(), "checked": True})


def write_config(folder: Path, backend: Backend) -> Path:
    """The server's file: the registry, the rules, and hooks to ``backend``."""
    write_registry(folder / "tokens.json", TOKENS)
    subscribe = backend.hook("/subscribe", by_channel({CLOSED: refuse(BACKEND_ERROR)}))
    publish = backend.hook("/publish", checked)
    path = folder / "bayeux.toml"
    path.write_text(
        "[access.tokens]\n"
        'file = "tokens.json"\n'
        "[[channels]]\n"
        'pattern = "/talk/{a}/{b}"\n'
        'subscribe = ["{a}", "{b}"]\n'
        'publish = ["{a}", "{b}"]\n'
        'sender = "from"\n'
        'error = "403:{channel}:Not your conversation"\n'
        "[[channels]]\n"
        'pattern = "/news/**"\n'
        'publish = "server"\n'
        "[hooks.subscribe]\n"
        f"url = {json.dumps(subscribe.url)}\n"
        "[hooks.publish]\n"
        f"url = {json.dumps(publish.url)}\n"
    )
    return path


async def run_scenario(
    node_modules: Path, folder: Path, backend: Backend, transport: str
) -> list[dict[str, Any]]:
    """Serve ``write_config``'s file, run js/faye_access.js against it; its events."""
    args = ["--config", str(write_config(folder, backend)), "--log-level", "debug"]
    server = await trio.to_thread.run_sync(start_our_server, folder / "server.log", args)
    try:
        options = {
            "transport": transport,
            "tokens": TOKENS,
            "conversation": CONVERSATION,
            "closed": CLOSED,
            "serverOnly": SERVER_ONLY,
        }
        node = functools.partial(
            run_node, node_modules, "faye_access.js", [server.url, json.dumps(options)]
        )
        return await trio.to_thread.run_sync(functools.partial(node, server=server))
    finally:
        await trio.to_thread.run_sync(server.stop)


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
@fail_after(60)
async def test_faye_clients_meet_the_rules_and_the_backend(
    node_modules: Path, tmp_path: Path, transport: str
) -> None:
    async with running_backend() as backend:
        events = await run_scenario(node_modules, tmp_path, backend, transport)
    (chosen,) = of(events, "transport")
    assert chosen == {
        "event": "transport",
        "alice": transport,
        "bob": transport,
        "carol": transport,
    }

    # Refusals reject the faye promise with the Bayeux error: the rule's own
    # text for carol, the backend's for alice.
    subscribes = {(e["user"], e["channel"]): e for e in of(events, "subscribe")}
    assert subscribes.pop(("carol", CONVERSATION)) == {
        "event": "subscribe",
        "user": "carol",
        "channel": CONVERSATION,
        "ok": False,
        "error": RULE_ERROR,
        "code": 403,
        "message": "Not your conversation",
    }
    assert subscribes.pop(("alice", CLOSED)) == {
        "event": "subscribe",
        "user": "alice",
        "channel": CLOSED,
        "ok": False,
        "error": BACKEND_ERROR,
        "code": 403,
        "message": "Closed by the backend",
    }
    assert {key: e["ok"] for key, e in subscribes.items()} == {
        ("bob", CONVERSATION): True,
        ("bob", SERVER_ONLY): True,
    }
    # Only the server publishes on /news/**; alice may in the conversation.
    publishes = {e["channel"]: e for e in of(events, "publish")}
    assert publishes[SERVER_ONLY] == {
        "event": "publish",
        "user": "alice",
        "channel": SERVER_ONLY,
        "ok": False,
        "error": f"403:{SERVER_ONLY}:Forbidden",
        "code": 403,
        "message": "Forbidden",
    }
    assert publishes[CONVERSATION]["ok"] is True

    # bob got the backend's rewrite, its "from" set to who published it; and
    # nothing else (carol nothing, nobody anything on the server's channel).
    assert [(e["user"], e["channel"], e["data"]) for e in of(events, "message")] == [
        ("bob", CONVERSATION, {"text": "HELLO BOB", "from": "alice", "checked": True})
    ]

    # The backend was asked about every subscribe and publish (before the
    # rules), and told who sent it: the user and the client's ext, token
    # included.
    asked = backend.descriptions("/subscribe") + backend.descriptions("/publish")
    assert {(d["kind"], d["user"], d["channel"]) for d in asked} == {
        ("subscribe", "bob", CONVERSATION),
        ("subscribe", "bob", SERVER_ONLY),
        ("subscribe", "carol", CONVERSATION),
        ("subscribe", "alice", CLOSED),
        ("publish", "alice", SERVER_ONLY),
        ("publish", "alice", CONVERSATION),
    }
    for description in asked:
        assert description["ext"] == {"authToken": TOKENS[description["user"]]}, description
    (told,) = [d for d in backend.descriptions("/publish") if d["channel"] == CONVERSATION]
    assert told["data"] == {"text": "hello bob", "from": "mallory"}
