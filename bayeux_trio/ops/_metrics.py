"""Prometheus metrics (``ServerConfig.metrics_path``; needs ``prometheus_client``).

Most values are read when a scrape comes, from what the engine, the hub and
the server already keep (sessions, queues, connection sets, plain integer
counters): nothing is added to the path of a message but an integer
increment. Message counts by kind cost one dictionary lookup per incoming
message, and the publish-to-delivery histogram one observation per write pass
that carried a publish, not one per recipient. Presence gauges are read
from the engine's members at scrape time; a per-channel series exists only
for the channels named exactly in the presence configuration, so clients
cannot grow the label set. See docs/operations.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from bayeux_core import (
    Disconnected,
    Event,
    Handshaken,
    Message,
    MessageKind,
    Published,
    QueueOverflow,
    SessionExpired,
    is_pattern,
    message_kind,
)

from ._view import ServerView

if TYPE_CHECKING:
    from prometheus_client import Metric

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

#: the text exposition format prometheus_client writes
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: the ``kind`` label of a message, by what bayeux_core says it is (None: no message)
_KIND_LABELS: dict[MessageKind | None, str] = {
    MessageKind.HANDSHAKE: "handshake",
    MessageKind.CONNECT: "connect",
    MessageKind.SUBSCRIBE: "subscribe",
    MessageKind.UNSUBSCRIBE: "unsubscribe",
    MessageKind.DISCONNECT: "disconnect",
    MessageKind.OTHER_META: "meta",
    MessageKind.SERVICE: "service",
    MessageKind.PUBLISH: "publish",
    None: "invalid",
}
#: publish-to-delivery buckets, in seconds: a loopback fan-out takes
#: microseconds to milliseconds; a slow consumer's drain is not counted
_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)


def _kind_of(message: object) -> str:
    return _KIND_LABELS[message_kind(message)]


class ServerMetrics(Collector):
    """The metrics of one server, in a registry of their own.

    A fresh registry per server (not prometheus_client's global one), so that
    several servers in one process, as in tests, do not clash.
    """

    def __init__(self, server: ServerView) -> None:
        self.server = server
        self.registry = CollectorRegistry(auto_describe=True)
        #: incoming messages by kind (a dict, not a Counter: no lock per message)
        self.received: dict[str, int] = {}
        self.handshakes = 0
        self.ended: dict[str, int] = {}
        self.dropped = 0
        #: when the batch now being handled reached the server (perf_counter)
        self._arrival: float | None = None
        #: when the oldest publish not yet written arrived
        self._since: float | None = None
        self._delivered_mark = 0
        # Across a cluster bus a delivery is written by whichever node holds
        # the subscriber, in another pass: only measured with the memory engine.
        self.latency: Histogram | None = None
        if server.bus is None:
            self.latency = Histogram(
                "bayeux_publish_delivery_seconds",
                "From a publish reaching the server to the end of the write pass "
                "that handed its deliveries to the sockets",
                buckets=_LATENCY_BUCKETS,
                registry=self.registry,
            )
            server.hub.after_flush = self._flushed
        #: the channels with a ``bayeux_presence_users`` series of their own:
        #: those named exactly (no wildcard) in the presence configuration, so
        #: that the label set is bounded by the configuration, never by clients
        self.presence_channels = tuple(
            channel for channel in server.engine.config.presence if not is_pattern(channel)
        )
        self.registry.register(self)
        server.hub.add_listener(self._on_event)

    # ------------------------------------------------------------- recording

    def arrived(self, messages: Sequence[Message]) -> None:
        """A batch reached the server: count it by kind, note the time."""
        self._arrival = time.perf_counter()
        received = self.received
        for message in messages:
            kind = _kind_of(message)
            received[kind] = received.get(kind, 0) + 1

    def _on_event(self, event: Event) -> None:
        kind = type(event)
        if kind is Published:
            # Timed only if it went out at once: down a stream (the hub counted
            # it already) or in a held connect the engine is about to answer.
            # A publish nobody receives, or one queued for a later connect,
            # would otherwise be timed by some later, unrelated write pass.
            if self._since is None and (
                self.server.hub.delivered != self._delivered_mark or self.server.engine.answers_due
            ):
                arrival = self._arrival
                self._since = arrival if arrival is not None else time.perf_counter()
        elif kind is Handshaken:
            self.handshakes += 1
        elif kind is Disconnected:
            reason = event.reason.value  # type: ignore[attr-defined]
            self.ended[reason] = self.ended.get(reason, 0) + 1
        elif kind is SessionExpired:
            self.ended["expired"] = self.ended.get("expired", 0) + 1
        elif kind is QueueOverflow:
            self.dropped += event.dropped  # type: ignore[attr-defined]

    def _flushed(self) -> None:
        """The hub ended a write pass: observe the publish it carried, if any."""
        since = self._since
        self._since = None
        self._arrival = None
        delivered = self.server.hub.delivered
        if since is not None and delivered != self._delivered_mark and self.latency is not None:
            self.latency.observe(time.perf_counter() - since)
        self._delivered_mark = delivered

    # ---------------------------------------------------------------- scrape

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        server = self.server
        hub = server.hub
        engine = server.engine
        sessions = list(engine.store)
        subscriptions = queued = deepest = held = 0
        patterns: set[str] = set()
        for session in sessions:
            subscriptions += len(session.subscriptions)
            patterns.update(session.subscriptions)
            depth = len(session.queue)
            queued += depth
            deepest = max(deepest, depth)
            if session.held is not None:
                held += 1
        yield GaugeMetricFamily("bayeux_clients", "Live sessions on this node", len(sessions))
        yield GaugeMetricFamily(
            "bayeux_subscriptions", "Subscriptions of live sessions", subscriptions
        )
        yield GaugeMetricFamily("bayeux_channels", "Distinct subscribed patterns", len(patterns))
        yield GaugeMetricFamily("bayeux_held_connects", "/meta/connect requests held", held)
        yield GaugeMetricFamily("bayeux_queued_messages", "Deliveries waiting in queues", queued)
        yield GaugeMetricFamily(
            "bayeux_queue_depth_max", "Longest queue of a single session", deepest
        )
        connections = GaugeMetricFamily(
            "bayeux_connections", "Open TCP connections by transport", labels=["transport"]
        )
        for transport, count in server.open_connections().items():
            connections.add_metric([transport], count)
        yield connections
        incoming = CounterMetricFamily(
            "bayeux_messages_received", "Bayeux messages received, by kind", labels=["kind"]
        )
        for kind_name, count in sorted(self.received.items()):
            incoming.add_metric([kind_name], count)
        yield incoming
        outgoing = CounterMetricFamily(
            "bayeux_messages_sent",
            "Deliveries to clients, and response bodies (one per reply or frame)",
            labels=["kind"],
        )
        outgoing.add_metric(["delivery"], hub.delivered)
        outgoing.add_metric(["response"], hub.responses)
        yield outgoing
        errors = CounterMetricFamily(
            "bayeux_errors", "Error replies sent, by Bayeux error code", labels=["code"]
        )
        for code, count in sorted(engine.error_counts.items()):
            errors.add_metric([code], count)
        yield errors
        yield CounterMetricFamily("bayeux_handshakes", "Sessions created", self.handshakes)
        ended = CounterMetricFamily("bayeux_sessions_ended", "Sessions ended", labels=["reason"])
        for reason, count in sorted(self.ended.items()):
            ended.add_metric([reason], count)
        yield ended
        yield CounterMetricFamily(
            "bayeux_dropped_messages",
            "Deliveries dropped by the queue overflow policy",
            self.dropped,
        )
        if engine.config.presence:
            yield from self._presence()

    def _presence(self) -> Iterator[Metric]:
        """Presence totals, and the members of the channels named in the configuration."""
        counts = self.server.engine.presence_counts()
        yield GaugeMetricFamily(
            "bayeux_presence_members",
            "Members of the channels with presence, summed over channels",
            sum(counts.values()),
        )
        yield GaugeMetricFamily(
            "bayeux_presence_channels",
            "Channels with presence and at least one member",
            len(counts),
        )
        users = GaugeMetricFamily(
            "bayeux_presence_users",
            "Members of each channel named exactly in the presence configuration",
            labels=["channel"],
        )
        for channel in self.presence_channels:
            users.add_metric([channel], counts.get(channel, 0))
        yield users
