"""The npm faye 1.4.3 client against three ``bayeux serve --engine redis://`` nodes.

Subscribers and publishers are spread over the nodes: some point at one node,
others go through a round-robin TCP proxy (no stickiness; with keep-alive off
every long-polling request lands on the next node, and a WebSocket client's
HTTP handshake and its socket land on different nodes). Every subscriber must
get every message exactly once, in each publisher's order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.interop._support import (
    MOUNT,
    ServerProcess,
    ensure_node_modules,
    of,
    run_node,
    start_our_server,
)

from ._proxy import RoundRobinProxy
from ._support import check_exactly_once_in_order
from .conftest import RedisProcess

SCRIPT = Path(__file__).resolve().parent / "js" / "faye_cluster.js"
MESSAGES = 20


@pytest.fixture(scope="module")
def node_modules() -> Path:
    return ensure_node_modules()


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisProcess, node_modules: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    url = redis_server.url.rsplit("/", 1)[0] + "/5"
    logs = tmp_path_factory.mktemp("faye-cluster")
    started: list[ServerProcess] = []
    try:
        for i in range(3):
            started.append(
                start_our_server(logs / f"node{i}.log", ["--engine", url, "--log-level", "warning"])
            )
        yield started
    finally:
        for server in started:
            server.stop()


def endpoint(port: int) -> str:
    return f"http://127.0.0.1:{port}{MOUNT}"


@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
def test_faye_clients_across_nodes_get_each_message_once_in_order(
    cluster: list[ServerProcess], node_modules: Path, transport: str
) -> None:
    ports = [server.port for server in cluster]
    with RoundRobinProxy(ports) as proxy:
        options: dict[str, Any] = {
            "channel": f"/cluster/{transport}",
            "messages": MESSAGES,
            "seconds": 40,
            "subscribers": [
                {"name": "direct0", "endpoint": endpoint(ports[0]), "transport": transport},
                {"name": "proxied1", "endpoint": endpoint(proxy.port), "transport": transport},
                {"name": "proxied2", "endpoint": endpoint(proxy.port), "transport": transport},
            ],
            "publishers": [
                {"endpoint": endpoint(ports[1]), "transport": transport},
                {"endpoint": endpoint(proxy.port), "transport": transport},
            ],
        }
        events = run_node(node_modules, str(SCRIPT), [json.dumps(options)], timeout=90)
        counts = dict(proxy.counts)
    assert of(events, "complete"), events[-3:]
    for spec in options["subscribers"]:
        received = [e for e in events if e["event"] == "message" and e["client"] == spec["name"]]
        check_exactly_once_in_order(received, len(options["publishers"]), MESSAGES)
    # The proxy really spread the clients' connections over every node.
    assert all(counts[port] > 0 for port in ports), counts
