"""A /meta/disconnect sent by someone else does not silence an npm faye client.

Anyone who learns a client id can send ``/meta/disconnect`` for it on a
connection of their own. When that client's ``/meta/connect`` is held at the
time, the held connect is answered with ``advice.reconnect: "retry"`` (as
Faye 1.4.3 does), so the npm faye client sends its next connect, gets
``401:<clientId>:Unknown client``, handshakes again and subscribes again: a
publish reaches it once more. Answering ``"none"`` (as the server did before)
stopped the client for good.

Each case runs a long-lived npm faye 1.4.3 client (js/faye_listen.js) over
WebSocket and over long-polling, against our server and, as the reference,
against Faye 1.4.3's own server. The disconnect is a plain HTTP POST from
Python; the publishes come from a second client that Python handshakes over
HTTP, repeated (bounded in count and time) until the node client reports the
delivery.

Faye itself differs on one path: over a WebSocket it closes the socket before
the answer to the held connect is sent, so its client sends that connect again
and gets the 401 at once. Both ways end in a new handshake and subscription.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ._support import HANDSHAKE, JS_DIR, ServerProcess, post_json

Event = dict[str, Any]

#: how long the client may take to subscribe, and to answer the foreign disconnect
STEP_TIMEOUT = 15.0
#: publishes until the client receives one again: at most this many, this long
PUBLISH_ATTEMPTS = 30
PUBLISH_TIMEOUT = 15.0
#: after the client sent its connect, the time the request takes to be held
SETTLE = 0.5


class Listener:
    """js/faye_listen.js in a subprocess; its JSON lines are read as they come."""

    def __init__(
        self, node_modules: Path, server: ServerProcess, options: dict[str, Any], stderr: Path
    ) -> None:
        self.server = server
        self.stderr_path = stderr
        self.events: list[Event] = []
        self._buffer = b""
        env = dict(os.environ, NODE_PATH=str(node_modules))
        env.pop("http_proxy", None)
        env.pop("HTTP_PROXY", None)
        with stderr.open("wb") as err:
            self.process = subprocess.Popen(
                ["node", str(JS_DIR / "faye_listen.js"), server.url, json.dumps(options)],
                cwd=JS_DIR,
                env=env,
                stdin=subprocess.PIPE,  # the script exits when this closes
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self._selector = selectors.DefaultSelector()
        assert self.process.stdout is not None
        self._selector.register(self.process.stdout, selectors.EVENT_READ)

    def read(self, timeout: float) -> None:
        """Collect the lines printed within ``timeout`` seconds (or until EOF)."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(timeout=remaining):
                return
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                return
            self._buffer += chunk
            *lines, self._buffer = self._buffer.split(b"\n")
            for line in lines:
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if isinstance(event, dict):
                        self.events.append(event)
            if any(e.get("event") == "error" for e in self.events):
                self.fail("the script reported an error")

    def wait_for(
        self, what: str, predicate: Callable[[Event], bool], *, start: int = 0
    ) -> tuple[int, Event]:
        """The first event from index ``start`` on that matches (bounded wait)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            for index in range(start, len(self.events)):
                if predicate(self.events[index]):
                    return index, self.events[index]
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                self.fail(f"no {what} within {STEP_TIMEOUT} s")
            self.read(min(remaining, 0.25))

    def wait_until(self, what: str, condition: Callable[[list[Event]], bool]) -> None:
        """Read until ``condition(events)`` holds (bounded wait)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while not condition(self.events):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                self.fail(f"no {what} within {STEP_TIMEOUT} s")
            self.read(min(remaining, 0.25))

    def fail(self, message: str) -> None:
        try:
            stderr = self.stderr_path.read_text(errors="replace")[-3000:]
        except OSError:
            stderr = "<none>"
        lines = "\n".join(json.dumps(e) for e in self.events[-80:])
        pytest.fail(
            f"{self.server.name}: {message}\n--- events ---\n{lines}\n--- stderr ---\n{stderr}"
            f"\n--- {self.server.name} log ---\n{self.server.log_tail()}",
            pytrace=False,
        )

    def close(self) -> None:
        process = self.process
        if process.poll() is None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._selector.close()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()


@contextlib.contextmanager
def listening(
    node_modules: Path, server: ServerProcess, options: dict[str, Any], stderr: Path
) -> Iterator[Listener]:
    listener = Listener(node_modules, server, options, stderr)
    try:
        yield listener
    finally:
        listener.close()


def _is(kind: str, **match: Any) -> Callable[[Event], bool]:
    return lambda e: e.get("event") == kind and all(e.get(k) == v for k, v in match.items())


def _publisher(server: ServerProcess) -> str:
    status, replies = post_json(server.port, [HANDSHAKE])
    assert status == 200, (server.name, status, replies)
    assert replies[0]["successful"] is True, (server.name, replies)
    client_id: str = replies[0]["clientId"]
    return client_id


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
@pytest.mark.parametrize("side", ["ours", "faye"])
def test_a_foreign_disconnect_does_not_silence_a_faye_client(
    request: pytest.FixtureRequest,
    node_modules: Path,
    tmp_path: Path,
    side: str,
    transport: str,
) -> None:
    server: ServerProcess = request.getfixturevalue(
        "our_server" if side == "ours" else "faye_server"
    )
    channel = f"/foreign/{side}/{transport.replace('-', '_')}"
    options = {"transport": transport, "channel": channel}
    with listening(node_modules, server, options, tmp_path / "node.stderr") as client:
        _, subscribed = client.wait_for("subscription", _is("subscribed"))
        victim = subscribed["clientId"]
        assert isinstance(victim, str), subscribed
        assert victim, subscribed

        # Wait until the client's latest connect, on the transport under test,
        # is unanswered a while after it went out: the server holds it (for up
        # to 25 s). Faye holds even the first one; we answer the first at once.
        def holding(events: list[Event]) -> bool:
            connects = [e for e in events if e.get("channel") == "/meta/connect"]
            return bool(connects) and _is(
                "sent", channel="/meta/connect", connectionType=transport, clientId=victim
            )(connects[-1])

        for _ in range(20):
            client.wait_until(f"a {transport} connect in flight", holding)
            client.read(SETTLE)
            if holding(client.events):
                break
        else:
            client.fail(f"no {transport} connect stayed unanswered for {SETTLE} s")
        mark = len(client.events)

        # Someone else, on a connection of their own, disconnects the client.
        status, replies = post_json(
            server.port, [{"channel": "/meta/disconnect", "clientId": victim, "id": "foreign"}]
        )
        assert status == 200, (status, replies)
        assert replies[0]["successful"] is True, replies

        # Publish until the client receives again (after it handshook and
        # subscribed again), bounded in count and time.
        publisher = _publisher(server)
        deadline = time.monotonic() + PUBLISH_TIMEOUT
        received: list[Event] = []
        attempts = 0
        while not received and attempts < PUBLISH_ATTEMPTS and time.monotonic() < deadline:
            attempts += 1
            status, replies = post_json(
                server.port,
                [
                    {
                        "channel": channel,
                        "clientId": publisher,
                        "data": {"n": attempts},
                        "id": str(attempts),
                    }
                ],
            )
            assert status == 200, (status, replies)
            assert replies[0]["successful"] is True, replies
            client.read(0.5)
            received = [e for e in client.events[mark:] if _is("message")(e)]
        if not received:
            client.fail(
                f"the client received nothing in {attempts} publishes after a foreign "
                f"/meta/disconnect: it stopped for good"
            )
        after = client.events[mark:]

    connects = [e for e in after if _is("reply", channel="/meta/connect")(e)]
    assert connects, after
    if side == "faye" and transport == "websocket":
        # Faye answers the held connect, but closes the WebSocket before the
        # answer is sent (Engine.Proxy.flushConnection, then closeConnection):
        # the client sends the connect again, and that one is refused.
        refused = connects[0]
    else:
        # The held connect was answered, successfully, with reconnect: retry.
        # (Had the disconnect come before the connect was held, this reply
        # would be a 401 and prove nothing.)
        held = connects[0]
        assert held["successful"] is True, held
        assert (held["advice"] or {}).get("reconnect") == "retry", held
        assert len(connects) > 1, connects
        refused = connects[1]
    # Then the next connect was refused, and the client handshook and
    # subscribed again, under a new client id.
    assert refused["successful"] is False, connects
    assert str(refused["error"]).startswith("401:"), connects
    (handshake,) = [e for e in after if _is("reply", channel="/meta/handshake")(e)][:1]
    assert handshake["successful"] is True, handshake
    assert handshake["clientId"] not in (None, victim), handshake
    resubscribed = [e for e in after if _is("reply", channel="/meta/subscribe", successful=True)(e)]
    assert resubscribed, after
    assert received[0]["data"]["n"] >= 1, received
