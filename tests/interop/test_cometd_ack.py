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

    async def until(self, kind: str, *, after: int | None = None, **match: Any) -> dict[str, Any]:
        """Read lines until an event of ``kind`` with ``match`` arrives.

        ``after``: only a connect whose message id is greater counts.
        """
        with trio.move_on_after(DONE):
            while True:
                for e in self.events:
                    if (
                        e["event"] == kind
                        and all(e.get(k) == v for k, v in match.items())
                        and (after is None or int(e["id"]) > after)
                    ):
                        return e
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
        raise AssertionError(f"no {kind} {match} (after {after}) in {DONE} s: {self.events}")

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]


def held_id(server: BayeuxServer, client_id: str) -> int | None:
    """The message id of the connect the server holds for ``client_id``, if any."""
    session = server.engine.store.get(client_id)
    assert session is not None, "the server lost the session"
    return None if session.held is None else int(session.held.reply["id"])


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
        await eventually(lambda: held_id(server, client_id) is not None)
        # No checkpoint between reading the id and the stall: the reply to
        # connect ``lost`` is the first thing the client will never see.
        lost = held_id(server, client_id)
        assert lost is not None
        proxy.stall()
        for n in (1, 2, 3):
            server.publish("/news", n)
        # The path works again once a later connect's reply comes through
        # (counting connect events instead raced with the pipe: a reply from
        # before the stall could be read after it).
        await node.until("connect", after=lost)
        await eventually(lambda: (held_id(server, client_id) or 0) > lost, seconds=DONE)
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
