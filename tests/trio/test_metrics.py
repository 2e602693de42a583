"""The Prometheus endpoint, read with prometheus_client's own parser."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from bayeux_trio import BayeuxServer, ServerConfig

from .helpers import LongPoller, WsClient, fail_after, make_config, request, start_server

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(server: BayeuxServer) -> Samples:
    assert server.port is not None
    response = await request(server.port, "GET", "/metrics")
    assert response.status == 200
    assert (response.header("content-type") or "").startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def ws_session(ws: WsClient, *channels: str) -> str:
    """Handshake and subscribe over a WebSocket; then hold a connect."""
    await ws.send_json(
        [
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["websocket"],
            }
        ]
    )
    (reply,) = await ws.receive_json()
    client_id: str = reply["clientId"]
    connect: dict[str, Any] = {
        "channel": "/meta/connect",
        "clientId": client_id,
        "connectionType": "websocket",
    }
    subscribes = [
        {"channel": "/meta/subscribe", "clientId": client_id, "subscription": c} for c in channels
    ]
    await ws.send_json([*subscribes, connect])
    await ws.receive_json()
    await ws.send_json([connect])
    return client_id


def test_metrics_path_must_not_clash() -> None:
    with pytest.raises(ValueError, match="metrics_path"):
        ServerConfig(metrics_path="/faye")
    with pytest.raises(ValueError, match="metrics_path"):
        ServerConfig(metrics_path="/x", admin_path="/x", admin_token="t" * 20)


@fail_after(10)
async def test_metrics_are_off_by_default(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    assert (await request(server.port, "GET", "/metrics")).status == 404


@fail_after(15)
async def test_values_follow_clients(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(metrics_path="/metrics"))
    assert server.port is not None
    assert (await request(server.port, "POST", "/metrics")).status == 405
    empty = await scrape(server)
    assert value(empty, "bayeux_clients") == 0
    assert value(empty, "bayeux_connections", transport="websocket") == 0

    alice = LongPoller(server.port)
    await alice.start("/news", "/chat/*")
    async with await WsClient.connect(server.port) as ws:
        bob = await ws_session(ws, "/news")
        for _ in range(200):  # until bob's connect is held (bounded)
            if (server.client(bob) or {}).get("held"):
                break
            await trio.sleep(0.01)
        # A publish from alice reaches bob's socket (and waits in alice's queue).
        assert (await alice.publish("/news", {"n": 1}))["successful"] is True
        await ws.receive_json()
        # Two refused connects from an unknown client: 401 twice.
        for _ in range(2):
            await alice.send([{**alice.connect_message(), "clientId": "nobody"}])
        live = await scrape(server)
        assert value(live, "bayeux_clients") == 2
        assert value(live, "bayeux_subscriptions") == 3
        assert value(live, "bayeux_channels") == 2
        assert value(live, "bayeux_connections", transport="websocket") == 1
        assert value(live, "bayeux_queued_messages") == 1
        assert value(live, "bayeux_queue_depth_max") == 1
        assert value(live, "bayeux_handshakes_total") == 2
        assert value(live, "bayeux_messages_received_total", kind="handshake") == 2
        assert value(live, "bayeux_messages_received_total", kind="subscribe") == 3
        assert value(live, "bayeux_messages_received_total", kind="publish") == 1
        assert value(live, "bayeux_messages_received_total", kind="connect") >= 4
        assert value(live, "bayeux_messages_sent_total", kind="delivery") == 1
        assert value(live, "bayeux_messages_sent_total", kind="response") >= 6
        assert value(live, "bayeux_errors_total", code="401") == 2
        assert value(live, "bayeux_publish_delivery_seconds_count") == 1
        assert value(live, "bayeux_publish_delivery_seconds_sum") > 0
        await ws.send_json([{"channel": "/meta/disconnect", "clientId": bob}])
        await ws.receive_json()
    for _ in range(200):  # the server notices the closed socket (bounded)
        after = await scrape(server)
        if value(after, "bayeux_connections", transport="websocket") == 0:
            break
        await trio.sleep(0.01)
    assert value(after, "bayeux_clients") == 1
    assert value(after, "bayeux_subscriptions") == 2
    assert value(after, "bayeux_connections", transport="websocket") == 0
    assert value(after, "bayeux_sessions_ended_total", reason="client") == 1
    server.disconnect(alice.client_id)
    kicked = await scrape(server)
    assert value(kicked, "bayeux_clients") == 0
    assert value(kicked, "bayeux_sessions_ended_total", reason="server") == 1


@fail_after(10)
async def test_a_server_side_publish_is_timed_too(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(metrics_path="/metrics"))
    assert server.port is not None
    async with await WsClient.connect(server.port) as ws:
        bob = await ws_session(ws, "/news")
        for _ in range(200):
            if (server.client(bob) or {}).get("held"):
                break
            await trio.sleep(0.01)
        server.publish("/nobody", 1)  # no subscriber: not timed
        server.publish("/news", 2)
        await ws.receive_json()
        samples = await scrape(server)
    assert value(samples, "bayeux_publish_delivery_seconds_count") == 1
