"""Remote calls, timesync and terminal refusals with the npm cometd and faye clients.

Our server runs in this process, in a thread of its own (its services and
extension are Python objects the test reads); the clients run in Node.js.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from bayeux_core import EngineConfig, Extension, Message, MessageContext, refuse
from bayeux_trio import BayeuxServer, ServerConfig, ServiceContext, ServiceError

from ._support import of, run_node


class TerminalAuth(Extension):
    """Refuses handshakes carrying ``ext.token == "bad"`` for good; counts them."""

    outgoing_deliveries = False

    def __init__(self) -> None:
        self.refused = 0

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        ext = message.get("ext")
        if message.get("channel") == "/meta/handshake" and isinstance(ext, dict):
            if ext.get("token") == "bad":
                self.refused += 1
                return refuse(message, "403::Bad token", final=True, interval=100)
        return message


def echo(data: Any, context: ServiceContext) -> Any:
    return {"echo": data, "caller": context.client_id}


def failing(data: Any, context: ServiceContext) -> Any:
    raise ServiceError("Nope")


@contextlib.contextmanager
def serving(auth: TerminalAuth) -> Iterator[str]:
    """Our server on 127.0.0.1, in a thread; yields its URL."""
    ready: queue.Queue[tuple[str, trio.lowlevel.TrioToken, trio.CancelScope]] = queue.Queue()

    async def main() -> None:
        config = ServerConfig(host="127.0.0.1", port=0, engine=EngineConfig(timeout=0.3))
        server = BayeuxServer(config, extensions=[auth])
        server.add_service("/service/echo", echo)
        server.add_service("/service/fail", failing)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            ready.put((server.url, trio.lowlevel.current_trio_token(), nursery.cancel_scope))

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    url, token, scope = ready.get(timeout=20)
    try:
        yield url
    finally:
        trio.from_thread.run_sync(scope.cancel, trio_token=token)
        thread.join(20)


def run(node_modules: Path, url: str, **options: Any) -> list[dict[str, Any]]:
    return run_node(
        node_modules, "cometd_extras.mjs", [str(node_modules), url, json.dumps(options)]
    )


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
def test_cometd_remote_call_and_timesync(node_modules: Path, transport: str) -> None:
    with serving(TerminalAuth()) as url:
        before = time.time() * 1000
        events = run(node_modules, url, mode="remote", transport=transport)
        after = time.time() * 1000
    (handshake,) = of(events, "handshake")
    assert handshake["successful"] is True
    assert before <= handshake["timesync"]["ts"] <= after
    first, failed, second = of(events, "remote")
    assert first["successful"] is True
    assert first["data"]["echo"] == {"text": "hi"}
    assert failed["successful"] is False
    assert failed["error"] == "400::Nope"
    assert second["data"]["echo"] == [1, 2]
    assert first["data"]["caller"] == second["data"]["caller"]
    (sync,) = of(events, "timesync")
    assert sync["samples"] >= 2
    assert set(sync["last"]) == {"tc", "ts", "p", "a"}
    # One clock on both sides: |offset| <= lag (see tests/client/test_call.py), +1 rounding.
    assert abs(sync["offset"]) <= sync["lag"] + 1
    assert of(events, "disconnected") == [{"event": "disconnected", "successful": True}]


@pytest.mark.parametrize("mode", ["terminal", "faye-terminal"])
def test_clients_stop_after_a_final_refusal(node_modules: Path, mode: str) -> None:
    auth = TerminalAuth()
    with serving(auth) as url:
        events = run(node_modules, url, mode=mode, transport="long-polling")
    (handshake,) = of(events, "handshake")
    assert handshake["successful"] is False
    assert handshake["advice"] == {"reconnect": "none", "interval": 100}
    (watched,) = of(events, "watched")
    assert watched["attempts"] == 1
    assert auth.refused == 1  # the server saw no second attempt either
    if mode == "terminal":
        assert watched["status"] == "disconnected"


def test_a_faye_client_gets_a_service_result_on_its_subscription(node_modules: Path) -> None:
    with serving(TerminalAuth()) as url:
        events = run(node_modules, url, mode="faye-service", transport="long-polling")
    (result,) = of(events, "result")
    (reply,) = result["results"]
    assert reply["echo"] == {"text": "from faye"}
