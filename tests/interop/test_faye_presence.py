"""Presence seen by unchanged npm faye 1.4.3 clients, over WebSocket and long-polling.

Each "tab" is its own node process running one Faye client (js/faye_presence.js)
whose extension puts ``{"user": ..., "name": ...}`` in the ext of its
``/meta/handshake``; the server's extension (presence_ext.py) makes that the
session's user. A watcher, itself a Faye client, subscribes to
``/presence/chat/...`` and must see the members, then one join and one leave per
user: on unsubscribe, on ``client.disconnect()``, and when a tab dies (its
process killed: no ``/meta/disconnect``, a closed WebSocket or no more
long-polls) once its session expires; a second tab of the same user neither
joins nor leaves.

"No event" is never waited for with a sleep: the server's admin API says when a
session is gone, and then another user joins; the watcher's deliveries are in
order, so a leave that should not be would come before that join.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._support.waiting import wait_until

from ._support import JS_DIR, ServerProcess, raw_request, running, start_our_server

TOKEN = "interop-presence-token-0123456789"
#: seconds a connect is held, and a session lives without one: short, so that a
#: dead tab's session expires within seconds
HOLD = 2
SESSION = 3
#: bound on any wait for a client or the server (s)
WAIT = 20.0


@pytest.fixture(scope="module")
def presence_server(
    node_modules: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Our server with presence on /chat/**, users from the handshake, admin and metrics.

    Asks for ``node_modules`` first: without Node.js, nothing is started (the
    tests skip, or fail under ``CI=true``).
    """
    log = tmp_path_factory.mktemp("ours-presence") / "server.log"
    args = [
        "--presence",
        "/chat/**",
        "--timeout",
        str(HOLD),
        "--session-timeout",
        str(SESSION),
        "--extension",
        "tests.interop.presence_ext:UserFromHandshake",
        "--admin-path",
        "/admin",
        "--metrics-path",
        "/metrics",
        "--log-level",
        "debug",
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BAYEUX_ADMIN_TOKEN", TOKEN)
        server = start_our_server(log, args)
    with running(server) as started:
        yield started


class FayeTab:
    """One npm faye client in its own node process, driven through its stdin."""

    def __init__(
        self,
        node_modules: Path,
        server: ServerProcess,
        logs: Path,
        *,
        user: str,
        transport: str,
        name: str | None = None,
    ) -> None:
        self.server = server
        self.label = f"{user}-{len(list(logs.glob(f'{user}-*.stderr')))}"
        options: dict[str, Any] = {"transport": transport, "user": user}
        if name is not None:
            options["name"] = name
        env = dict(os.environ, NODE_PATH=str(node_modules))
        env.pop("http_proxy", None)
        env.pop("HTTP_PROXY", None)
        self.stderr_path = logs / f"{self.label}.stderr"
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                ["node", str(JS_DIR / "faye_presence.js"), server.url, json.dumps(options)],
                cwd=JS_DIR,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    with self._lock:
                        self._events.append(event)

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        self.process.stdin.flush()

    def wait(self, what: str, predicate: Callable[[list[dict[str, Any]]], bool]) -> None:
        """Until ``predicate(events)`` holds; fail with the story so far after WAIT s."""

        def done() -> bool:
            events = self.events
            if any(e.get("event") in ("error", "refused") for e in events):
                return True
            return predicate(events)

        try:
            wait_until(done, what, timeout=WAIT)
        except AssertionError as exc:
            pytest.fail(self._story(f"{self.label}: {exc}"), pytrace=False)
        if not predicate(self.events):
            pytest.fail(
                self._story(f"{self.label}: failed while waiting for {what}"), pytrace=False
            )

    def _story(self, headline: str) -> str:
        try:
            stderr = self.stderr_path.read_text(errors="replace")[-2000:]
        except OSError:
            stderr = "<none>"
        return (
            f"{headline}\n--- events ---\n"
            + "\n".join(json.dumps(e) for e in self.events[-40:])
            + f"\n--- stderr ---\n{stderr}\n--- server log ---\n{self.server.log_tail()}"
        )

    def subscribe(self, channel: str) -> dict[str, Any]:
        """Subscribe and wait for the server's yes; the ``subscribed`` event."""
        self.send(cmd="subscribe", channel=channel)
        self.wait(
            f"subscribed to {channel}",
            lambda events: any(
                e["event"] == "subscribed" and e["channel"] == channel for e in events
            ),
        )
        return next(
            e for e in self.events if e["event"] == "subscribed" and e["channel"] == channel
        )

    def messages(self, channel: str) -> list[Any]:
        return [
            e["data"]
            for e in self.events
            if e.get("event") == "message" and e.get("channel") == channel
        ]

    def wait_messages(self, channel: str, count: int) -> list[Any]:
        """The first ``count`` deliveries on ``channel``, once that many came."""
        self.wait(
            f"{count} deliveries on {channel}",
            lambda events: len(self.messages(channel)) >= count,
        )
        return self.messages(channel)

    def kill(self) -> None:
        """Die without a word: the connection closes, no /meta/disconnect is sent."""
        self.process.kill()
        self.process.wait(timeout=10)

    def close(self) -> None:
        """End the process (closing its stdin ends a live one) and its pipes."""
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def tabs(
    node_modules: Path, presence_server: ServerProcess, tmp_path: Path
) -> Iterator[Callable[..., FayeTab]]:
    """``tabs(user=..., transport=..., name=...)`` starts a tab; all are closed after the test."""
    opened: list[FayeTab] = []

    def open_tab(**options: Any) -> FayeTab:
        tab = FayeTab(node_modules, presence_server, tmp_path, **options)
        opened.append(tab)
        return tab

    try:
        yield open_tab
    finally:
        for tab in opened:
            tab.close()


def admin(server: ServerProcess, target: str) -> tuple[int, Any]:
    status, _, body = raw_request(
        server.port, "GET", "/admin" + target, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    return status, json.loads(body)


def sessions_ended(server: ServerProcess, reason: str) -> float:
    status, _, body = raw_request(server.port, "GET", "/metrics")
    assert status == 200
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "bayeux_sessions_ended_total" and sample.labels == {"reason": reason}:
                return sample.value
    return 0.0


def wait_session_gone(server: ServerProcess, client_id: str) -> None:
    """Until the server no longer holds ``client_id`` (it expired or ended)."""
    wait_until(
        lambda: admin(server, f"/clients/{client_id}")[0] == 404,
        f"the end of session {client_id}",
        timeout=WAIT,
    )


def join(user: str, info: Any = None) -> dict[str, Any]:
    return {"join": {"user": user, "info": info}}


def leave(user: str, info: Any = None) -> dict[str, Any]:
    return {"leave": {"user": user, "info": info}}


TRANSPORTS = ["websocket", "long-polling"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_members_then_join_and_leave_on_unsubscribe_and_disconnect(
    presence_server: ServerProcess, tabs: Callable[..., FayeTab], transport: str
) -> None:
    channel = f"/chat/room-{transport}"
    watched = "/presence" + channel
    alice = tabs(user="alice", name="Alice", transport=transport)
    assert alice.subscribe(channel)["connectionType"] == transport

    watcher = tabs(user="watcher", transport=transport)
    assert watcher.subscribe(watched)["connectionType"] == transport
    # The members first, right after the subscribe.
    alice_info = {"name": "Alice"}
    expected: list[Any] = [{"members": [{"user": "alice", "info": alice_info}]}]
    assert watcher.wait_messages(watched, 1) == expected

    bob = tabs(user="bob", transport=transport)
    bob.subscribe(channel)
    expected.append(join("bob"))
    assert watcher.wait_messages(watched, 2) == expected

    bob.send(cmd="unsubscribe", channel=channel)
    expected.append(leave("bob"))
    assert watcher.wait_messages(watched, 3) == expected

    bob.send(cmd="subscribe", channel=channel)
    expected.append(join("bob"))
    assert watcher.wait_messages(watched, 4) == expected

    by_client = sessions_ended(presence_server, "client")
    bob.send(cmd="disconnect")
    expected.append(leave("bob"))
    assert watcher.wait_messages(watched, 5) == expected
    # The leave came from the /meta/disconnect, not from a later expiry.
    assert sessions_ended(presence_server, "client") == by_client + 1

    # The admin API agrees, and counts the watcher out (it is not in the room).
    assert admin(presence_server, f"/presence?channel={channel}") == (
        200,
        {"channel": channel, "members": [{"user": "alice", "info": alice_info}], "count": 1},
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_second_tab_closing_is_no_leave_the_last_one_is(
    presence_server: ServerProcess, tabs: Callable[..., FayeTab], transport: str
) -> None:
    channel = f"/chat/tabs-{transport}"
    watched = "/presence" + channel
    watcher = tabs(user="watcher", transport=transport)
    watcher.subscribe(watched)
    expected: list[Any] = [{"members": []}]
    assert watcher.wait_messages(watched, 1) == expected

    alice_info = {"name": "Alice"}
    first = tabs(user="alice", name="Alice", transport=transport)
    first_id = first.subscribe(channel)["clientId"]
    expected.append(join("alice", alice_info))
    assert watcher.wait_messages(watched, 2) == expected

    # A second tab of alice: no join (bob's join comes next, nothing before it).
    second = tabs(user="alice", name="Alice", transport=transport)
    second_id = second.subscribe(channel)["clientId"]
    assert second_id != first_id
    tabs(user="bob", transport=transport).subscribe(channel)
    expected.append(join("bob"))
    assert watcher.wait_messages(watched, 3) == expected

    # The first tab dies without a /meta/disconnect; once its session has
    # expired, carol joins: alice did not leave in between.
    first.kill()
    wait_session_gone(presence_server, first_id)
    tabs(user="carol", transport=transport).subscribe(channel)
    expected.append(join("carol"))
    assert watcher.wait_messages(watched, 4) == expected

    # The last tab dies: alice leaves, once, when its session expires.
    expired = sessions_ended(presence_server, "expired")
    second.kill()
    expected.append(leave("alice", alice_info))
    assert watcher.wait_messages(watched, 5) == expected
    assert admin(presence_server, f"/clients/{second_id}")[0] == 404
    assert sessions_ended(presence_server, "expired") > expired
    assert admin(presence_server, f"/presence?channel={channel}")[1]["members"] == [
        {"user": "bob", "info": None},
        {"user": "carol", "info": None},
    ]
