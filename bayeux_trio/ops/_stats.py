"""What ``GET <admin>/stats`` and the client listings add to the engine's own state.

Counted from the hub's events, never per delivery: a publish, a handshake or
a session's end costs one integer increment or one dictionary entry, and
deliveries are the hub's own counter (``hub.delivered``). Held in ops, so
that the admin API works without ``--metrics-path`` and without
prometheus_client.

* :class:`Totals`: publishes, handshakes, overflows since the start.
* :class:`ClientLog`: when each session of this node handshook, and the
  address (``ip:port``) of the connection it last sent a batch on. The
  server sets :data:`PEER` in each connection's task; a batch that names a
  session notes it (one dictionary look-up per batch, not per message).
* :class:`History`: publishes/s and deliveries/s, one sample a second over
  the last five minutes, taken by a timer the server runs only while the
  console is enabled (from the counters above: nothing on the message path).
"""

from __future__ import annotations

import collections
import contextvars
import os
import resource
import sys
import time
from collections.abc import Callable

import trio

from bayeux_core import (
    Disconnected,
    DisconnectReason,
    Event,
    Handshaken,
    Published,
    QueueOverflow,
    SessionExpired,
)

__all__ = ["PEER", "ClientLog", "History", "Totals", "rss_bytes"]

#: the remote ``ip:port`` of the connection whose task is running (None:
#: in-process, or not known); set by the server per connection task
PEER: contextvars.ContextVar[str | None] = contextvars.ContextVar("bayeux_peer", default=None)

#: samples kept: one a second for five minutes
HISTORY_SECONDS = 300
#: the client log is checked against the store after this many new entries
_SLACK = 1024


class Totals:
    """Counters since the start, from the hub's events (an event listener)."""

    __slots__ = ("dropped", "handshakes", "overflowed", "publishes")

    def __init__(self) -> None:
        self.publishes = 0
        self.handshakes = 0
        #: sessions ended because their queue overflowed
        self.overflowed = 0
        #: deliveries dropped by the ``drop-oldest`` overflow policy
        self.dropped = 0

    def __call__(self, event: Event) -> None:
        kind = type(event)
        if kind is Published:
            self.publishes += 1
        elif kind is Handshaken:
            self.handshakes += 1
        elif kind is QueueOverflow:
            self.dropped += event.dropped  # type: ignore[attr-defined]
        elif kind is Disconnected and event.reason is DisconnectReason.OVERFLOW:  # type: ignore[attr-defined]
            self.overflowed += 1

    @property
    def overflows(self) -> int:
        """Queue overflows: sessions ended by one, plus messages dropped by one."""
        return self.overflowed + self.dropped


class ClientLog:
    """When each session handshook (trio's clock) and its last connection's address.

    ``alive`` says whether a client id still names a session (the store): the
    log drops what it no longer does when it has grown past the store, so a
    session that left without an event (moved to another node) is not kept.
    """

    __slots__ = ("_added", "_alive", "_clock", "_seen")

    def __init__(
        self, alive: Callable[[str], bool], *, clock: Callable[[], float] = trio.current_time
    ) -> None:
        self._alive = alive
        self._clock = clock
        #: client id -> [handshake time or None (adopted), address or None]
        self._seen: dict[str, list[float | str | None]] = {}
        self._added = 0

    def __call__(self, event: Event) -> None:
        kind = type(event)
        if kind is Handshaken:
            client_id: str = event.client_id  # type: ignore[attr-defined]
            self._seen[client_id] = [self._clock(), PEER.get()]
            self._added += 1
            if self._added % _SLACK == 0:
                self.prune()  # a few store look-ups per handshake, amortised
        elif kind is Disconnected or kind is SessionExpired:
            self._seen.pop(event.client_id, None)  # type: ignore[attr-defined]

    def note(self, client_id: object) -> None:
        """A batch naming ``client_id`` came on the current connection (:data:`PEER`)."""
        if type(client_id) is not str:
            return
        entry = self._seen.get(client_id)
        if entry is not None:
            entry[1] = PEER.get()
        elif self._alive(client_id):
            # A session this node took over from another: its age is unknown.
            self._seen[client_id] = [None, PEER.get()]
            self._added += 1
            if self._added % _SLACK == 0:
                self.prune()

    def address(self, client_id: str) -> str | None:
        entry = self._seen.get(client_id)
        return entry[1] if entry is not None else None  # type: ignore[return-value]

    def age(self, client_id: str) -> float | None:
        """Seconds since the handshake; None if this node did not see it."""
        entry = self._seen.get(client_id)
        if entry is None or entry[0] is None:
            return None
        return max(0.0, self._clock() - entry[0])  # type: ignore[operator]

    def prune(self) -> None:
        """Forget the client ids that no longer name a session."""
        for client_id in [c for c in self._seen if not self._alive(c)]:
            del self._seen[client_id]

    def __len__(self) -> int:
        return len(self._seen)


class History:
    """Publishes/s and deliveries/s, one ``[unix_s, publishes/s, deliveries/s]`` a second.

    :meth:`sample` is called by the server's 1 s timer with the two running
    totals; each sample is the rate since the previous one.
    """

    __slots__ = ("_last", "samples")

    def __init__(self, size: int = HISTORY_SECONDS) -> None:
        self.samples: collections.deque[list[float]] = collections.deque(maxlen=size)
        #: (monotonic time, publishes, deliveries) at the previous sample
        self._last: tuple[float, int, int] | None = None

    def sample(self, publishes: int, deliveries: int, *, now: float, wall: float) -> None:
        last = self._last
        self._last = (now, publishes, deliveries)
        if last is None:
            return
        elapsed = now - last[0]
        if elapsed <= 0:
            return
        self.samples.append(
            [
                round(wall, 3),
                round((publishes - last[1]) / elapsed, 2),
                round((deliveries - last[2]) / elapsed, 2),
            ]
        )

    def as_list(self) -> list[list[float]]:
        return [list(sample) for sample in self.samples]


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """The process's resident memory now (Linux); elsewhere its peak."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # ru_maxrss is in bytes on macOS, in KiB elsewhere.
        return int(peak if sys.platform == "darwin" else peak * 1024)


def wall_time() -> float:
    """Seconds since the epoch (a function, so that tests may replace it)."""
    return time.time()
