"""The npm cometd 9 client's AckExtension against our server, over a lossy path.

js/cometd_ack.mjs subscribes through :class:`tests.client.support.Proxy`.
While the server holds its connect, the proxy stalls (bytes are swallowed,
nothing is closed) and the server publishes 1, 2, 3: the reply carrying 1 is
written and never arrives. CometD gives the connect up (its hold plus
``maxNetworkDelay``) and connects again, acknowledging the last batch it got,
so the server sends that batch again. Without the extension the same loss is
silent, which is what the baseline run shows.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from bayeux_trio import BayeuxServer
from tests._support.waiting import eventually
from tests.client.support import Proxy
from tests.trio.helpers import fail_after, make_config, start_server

from ._support import JS_DIR

DONE = 20.0  # seconds for any one step the client takes


class Node:
    """js/cometd_ack.mjs as a child process; its JSON lines, as they come."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._buffer = b""

    async def until(self, kind: str, *, nth: int = 0, **match: Any) -> dict[str, Any]:
        """Read lines until the ``nth`` (from 0) event of ``kind`` with ``match`` arrives."""
        with trio.fail_after(DONE):
            while True:
                found = [
                    e
                    for e in self.events
                    if e["event"] == kind and all(e.get(k) == v for k, v in match.items())
                ]
                if len(found) > nth:
                    return found[nth]
                assert self.process.stdout is not None
                chunk = await self.process.stdout.receive_some(65536)
                if not chunk:
                    raise AssertionError(f"node exited before {kind}: {self.events}")
                self._buffer += chunk
                *lines, self._buffer = self._buffer.split(b"\n")
                for line in lines:
                    event = json.loads(line)
                    assert event["event"] != "error", event
                    self.events.append(event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]


def holding(server: BayeuxServer, client_id: str) -> bool:
    session = server.engine.store.get(client_id)
    assert session is not None, "the server lost the session"
    return session.held is not None


async def run(
    nursery: trio.Nursery, node_modules: Path, transport: str, ack: bool
) -> tuple[Node, BayeuxServer, str]:
    server = await start_server(nursery, make_config(timeout=1))
    proxy = Proxy(server.port or 0)
    await nursery.start(proxy.serve)
    options = json.dumps({"transport": transport, "ack": ack})
    env = dict(os.environ, NODE_PATH=str(node_modules))
    env.pop("http_proxy", None)
    env.pop("HTTP_PROXY", None)
    process = await trio.lowlevel.open_process(
        ["node", str(JS_DIR / "cometd_ack.mjs"), str(node_modules), proxy.url, options],
        cwd=JS_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    node = Node(process)
    try:
        ready = await node.until("ready")
        assert ready["transport"] == transport
        client_id = ready["clientId"]
        server.publish("/news", 0)
        await node.until("message", data=0)
        await eventually(lambda: holding(server, client_id))
        proxy.stall()
        for n in (1, 2, 3):
            server.publish("/news", n)
        # The path works again once a connect reply comes through.
        await node.until("connect", nth=len(node.of("connect")))
        await eventually(lambda: holding(server, client_id), seconds=DONE)
        server.publish("/news", "end")
        await node.until("done")
        with trio.fail_after(DONE):
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return node, server, client_id


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
@fail_after(60)
async def test_lost_batch_is_sent_again(
    nursery: trio.Nursery, node_modules: Path, transport: str
) -> None:
    node, _, _ = await run(nursery, node_modules, transport, ack=True)
    (handshake,) = node.of("handshake")
    assert handshake["ext"]["ack"] is True
    assert [m["data"] for m in node.of("message")] == [0, 1, 2, 3, "end"]
    batches = [c["ext"]["ack"] for c in node.of("connect") if "ack" in (c["ext"] or {})]
    assert batches == sorted(batches)  # numbers never go back
    assert len(set(batches)) >= 3  # 0; 1 (sent twice: the copy is not new); 2, 3; end


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
@fail_after(60)
async def test_without_the_extension_the_loss_is_silent(
    nursery: trio.Nursery, node_modules: Path, transport: str
) -> None:
    node, _, _ = await run(nursery, node_modules, transport, ack=False)
    (handshake,) = node.of("handshake")
    assert "ack" not in (handshake["ext"] or {})
    got = [m["data"] for m in node.of("message")]
    assert got[0] == 0
    assert got[-1] == "end"
    assert 1 not in got
