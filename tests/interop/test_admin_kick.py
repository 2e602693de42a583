"""The npm faye 1.4.3 client, kicked through the admin API, stays away."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._support import ServerProcess, of, run_node, running, start_our_server

TOKEN = "interop-admin-token-0123456789"


@pytest.fixture(scope="module")
def admin_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    """Our server with the admin API on /admin (token from the environment)."""
    log = tmp_path_factory.mktemp("ours-admin") / "server.log"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BAYEUX_ADMIN_TOKEN", TOKEN)
        server = start_our_server(log, ["--admin-path", "/admin"])
    with running(server) as started:
        yield started


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
def test_a_kicked_faye_client_does_not_come_back(
    node_modules: Path, admin_server: ServerProcess, transport: str
) -> None:
    options = {
        "transport": transport,
        "admin": f"http://127.0.0.1:{admin_server.port}/admin",
        "token": TOKEN,
        "watch": 2000,
    }
    events = run_node(
        node_modules, "faye_kick.js", [admin_server.url, json.dumps(options)], server=admin_server
    )
    (kicked,) = of(events, "kicked")
    assert kicked["status"] == 200, kicked
    after = events[events.index(of(events, "kick")[0]) :]
    # The held connect came back with reconnect: none ...
    assert [r["advice"]["reconnect"] for r in of(after, "reply", channel="/meta/connect")] == [
        "none"
    ], after
    # ... and the client neither handshook again nor sent another connect.
    assert of(after, "sent", channel="/meta/handshake") == []
    assert of(after, "sent", channel="/meta/connect") == []
