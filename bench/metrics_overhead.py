"""What the Prometheus metrics add per message (docs/operations.md, "Cost").

Times the hooks ServerMetrics runs on the hot path with ``timeit``, and, for
scale, the engine routing one publish to 50 WebSocket subscribers.

Run: ``.venv/bin/python bench/metrics_overhead.py`` (needs prometheus_client).
"""

from __future__ import annotations

import timeit

import trio

from bayeux_core import Engine, Handshaken, Published
from bayeux_trio import BayeuxServer, ServerConfig

_HANDSHAKE = {
    "channel": "/meta/handshake",
    "version": "1.0",
    "supportedConnectionTypes": ["websocket"],
}


def _engine_with_subscribers(count: int) -> tuple[Engine, list[str]]:
    engine = Engine()
    ids: list[str] = []
    for conn in range(100, 100 + count):
        engine.open_stream(conn, now=0)
        engine.receive(conn, [dict(_HANDSHAKE)], now=0)
        (event,) = [a for a in engine.actions_to_send() if isinstance(a, Handshaken)]
        engine.receive(
            conn,
            [
                {"channel": "/meta/subscribe", "clientId": event.client_id, "subscription": "/b"},
                {
                    "channel": "/meta/connect",
                    "clientId": event.client_id,
                    "connectionType": "websocket",
                },
            ],
            now=0,
        )
        ids.append(event.client_id)
    engine.actions_to_send()
    return engine, ids


async def main() -> None:
    server = BayeuxServer(ServerConfig(port=0, metrics_path="/metrics"))
    metrics = server._metrics
    assert metrics is not None
    batch = [{"channel": "/b", "clientId": "x", "data": 1, "id": "1"}]
    event = Published("x", "/b", 1)
    n = 200_000
    per = timeit.timeit(lambda: metrics.arrived(batch), number=n) / n
    print(f"counting a one-message batch: {per * 1e9:.0f} ns")

    def publish_and_flush() -> None:
        server.hub.delivered += 1  # as the hub does for a delivery
        metrics._on_event(event)
        metrics._flushed()

    per = timeit.timeit(publish_and_flush, number=n) / n
    print(f"timing one publish (event, flush, histogram observation): {per * 1e9:.0f} ns")
    per = timeit.timeit(metrics._flushed, number=n) / n
    print(f"a write pass with no publish: {per * 1e9:.0f} ns")

    engine, ids = _engine_with_subscribers(50)
    message = {"channel": "/b", "clientId": ids[0], "data": 1}

    def route() -> None:
        engine.receive(100, [dict(message)], now=0)
        engine.actions_to_send()

    k = 20_000
    per = timeit.timeit(route, number=k) / k
    print(f"for scale, the engine routing one publish to 50 streams: {per * 1e9:.0f} ns")


if __name__ == "__main__":
    trio.run(main)
