"""Per-channel history, and recovery of what a client missed.

A channel whose name matches a pattern in ``EngineConfig.history`` keeps its
latest publishes, bounded in count (``HistoryPolicy.size``) and, optionally,
in age (``HistoryPolicy.ttl``, measured on the engine's ``now``). Each publish
to such a channel gets a *position*, ``"<epoch>:<offset>"``, carried in the
delivery as ``ext.history.position``. Offsets count up from 1 within one
channel's stream; the epoch names the stream: it changes when the server
restarts (history lives in memory) or when the stream was dropped to keep
within ``EngineConfig.history_channels``. A client that names a position when
it subscribes gets every later message of the stream, in order, or is told
why it cannot (see :data:`REASONS`).

Only publishes to channels with history pay for this: one dict lookup per
pattern the channel name expands to, and one more encoding of the delivery.
"""

from __future__ import annotations

import math
import secrets
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ._channels import expand, is_valid_pattern

__all__ = ["REASONS", "History", "HistoryPolicy", "Recovery", "parse_position", "requested_since"]

#: Why a subscribe could not recover, as sent in ``ext.history.reason``.
REASONS = {
    "no history": "the channel keeps no history",
    "wildcard": "the subscription is a wildcard pattern; positions are per channel",
    "several channels": "recovery needs a subscribe naming one channel",
    "bad position": "the position is malformed, or ahead of the channel's stream",
    "epoch changed": "the stream restarted (server restart, or the stream was dropped)",
    "too old": "messages after the position were dropped (size or age bound)",
}


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """How much of a channel's past to keep.

    Attributes:
        size: most messages kept per channel (the oldest go first).
        ttl: seconds a message is kept, on the engine's clock; None: no age
            bound, only ``size``.
    """

    size: int
    ttl: float | None = None

    def __post_init__(self) -> None:
        if type(self.size) is not int or self.size < 1:
            raise ValueError(f"size must be an int >= 1, not {self.size!r}")
        ttl = self.ttl
        if ttl is not None and (
            isinstance(ttl, bool)
            or not isinstance(ttl, (int, float))
            or not math.isfinite(ttl)
            or ttl <= 0
        ):
            raise ValueError(f"ttl must be None or a finite number > 0, not {ttl!r}")


class Policies(Mapping[str, HistoryPolicy]):
    """An immutable, hashable copy of ``EngineConfig.history``."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, HistoryPolicy]) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> HistoryPolicy:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return repr(self._items)


def check_policies(policies: object) -> Policies:
    """``policies`` frozen; ValueError unless it maps patterns to :class:`HistoryPolicy`."""
    if not isinstance(policies, Mapping):
        raise ValueError(f"history must be a mapping of patterns to policies, not {policies!r}")
    for pattern, policy in policies.items():
        if not is_valid_pattern(pattern):
            raise ValueError(f"history pattern {pattern!r} is not a valid channel pattern")
        if not isinstance(policy, HistoryPolicy):
            raise ValueError(f"history[{pattern!r}] must be a HistoryPolicy, not {policy!r}")
    return Policies(policies)


@dataclass(frozen=True, slots=True)
class Recovery:
    """The outcome of a recovering subscribe.

    ``messages`` are the encoded deliveries after the position, oldest first
    (empty unless ``recovered``); ``reason`` is a key of :data:`REASONS`.
    """

    recovered: bool
    position: str
    messages: tuple[bytes, ...] = ()
    reason: str | None = None

    def ext(self) -> dict[str, Any]:
        """What the subscribe reply carries under ``ext.history``."""
        out: dict[str, Any] = {"position": self.position, "recovered": self.recovered}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


class _Stream:
    """One channel's retained messages: (offset, time, payload), oldest first."""

    __slots__ = ("entries", "epoch", "floor", "policy", "top")

    def __init__(self, epoch: str, policy: HistoryPolicy, top: int) -> None:
        self.epoch = epoch
        self.policy = policy
        #: the offset of the latest message (at creation: nothing before counts)
        self.top = top
        #: messages at or below this offset may be gone; those above are kept
        self.floor = top
        self.entries: deque[tuple[int, float, bytes]] = deque()

    def add(self, offset: int, now: float, payload: bytes) -> None:
        self.top = offset
        self.expire(now)
        entries = self.entries
        if len(entries) >= self.policy.size:
            self.floor = entries.popleft()[0]
        entries.append((offset, now, payload))

    def expire(self, now: float) -> None:
        ttl = self.policy.ttl
        if ttl is None:
            return
        entries = self.entries
        while entries and entries[0][1] <= now - ttl:
            self.floor = entries.popleft()[0]


class History:
    """Every stream of one engine, at most ``max_channels`` of them.

    Streams are dropped least recently used first when a new one would go
    beyond the bound. On its own, an engine numbers each stream 1, 2, 3...
    and a dropped channel's next stream has a new epoch, so a position in the
    old one is refused ("epoch changed"), never misread.

    Shared (:meth:`share`, for a cluster): offsets are the ids of a log that
    every node reads in the same order, and the epoch is the cluster's, so
    every node gives a message the same position. A node knows the log from
    where it started reading; a stream made later (first seen, or made again
    after being dropped) knows nothing before the latest offset of a dropped
    stream, and says "too old" for positions before that.
    """

    __slots__ = (
        "_base",
        "_floor",
        "_last",
        "_made",
        "_max_channels",
        "_policies",
        "_shared",
        "_streams",
    )

    def __init__(
        self, policies: Mapping[str, HistoryPolicy], max_channels: int, *, epoch: str | None = None
    ) -> None:
        self._policies = dict(policies)
        self._max_channels = max_channels
        #: differs between runs: in-memory positions do not survive a restart
        self._base = epoch if epoch is not None else secrets.token_hex(4)
        self._made = 0
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._shared = False
        #: shared: the latest log offset numbered, and what new streams know from
        self._last = 0
        self._floor = 0

    def share(self, epoch: str, start: int) -> None:
        """Number from a shared log from now on: its ``epoch``, read after ``start``."""
        self._shared = True
        self._base = epoch
        self._last = self._floor = start
        self._streams.clear()

    @property
    def shared(self) -> bool:
        """True once numbering from a shared log (:meth:`share`)."""
        return self._shared

    def number(self, delivery: dict[str, Any], offset: int, *, option: int) -> bytes:
        """Encode a shared log's delivery with its position, keeping nothing."""
        return _numbered(delivery, f"{self._base}:{offset}", option)

    def __len__(self) -> int:
        """How many channels have a stream."""
        return len(self._streams)

    def retained(self) -> int:
        """How many messages are kept, over every stream."""
        return sum(len(s.entries) for s in self._streams.values())

    def policy(self, channel: str) -> HistoryPolicy | None:
        """The policy of a concrete channel: the most specific pattern wins.

        ``expand`` lists ``/**`` second; it is the least specific, so last.
        """
        policies = self._policies
        names = expand(channel)
        for name in (*names[:1], *names[2:], names[1]):
            policy = policies.get(name)
            if policy is not None:
                return policy
        return None

    def append(
        self,
        channel: str,
        policy: HistoryPolicy,
        delivery: dict[str, Any],
        now: float,
        *,
        option: int,
        offset: int | None = None,
    ) -> bytes:
        """Number ``delivery``, keep it, and return its encoding (with the position).

        ``offset``: the log's (shared history), else the stream's next. The
        position goes in ``ext.history``, replacing a publisher's own
        ``history`` key; an ``ext`` that is not an object is replaced. Raises
        what ``orjson.dumps`` raises, before any effect.
        """
        stream = self._stream(channel, policy)
        if offset is None:
            offset = stream.top + 1
        payload = _numbered(delivery, f"{stream.epoch}:{offset}", option)
        self._last = max(self._last, offset)
        stream.add(offset, now, payload)
        return payload

    def position(self, channel: str, policy: HistoryPolicy) -> str:
        """The position of the channel's latest message (``<epoch>:0`` if none)."""
        stream = self._stream(channel, policy)
        return f"{stream.epoch}:{stream.top}"

    def recover(self, channel: str, policy: HistoryPolicy, since: object, now: float) -> Recovery:
        """The messages after position ``since``, or why they cannot be had."""
        stream = self._stream(channel, policy)
        current = f"{stream.epoch}:{stream.top}"
        epoch, offset = parse_position(since)
        # Shared, a position may be past this stream's latest message (the
        # log went on with other channels), never past what was read.
        latest = self._last if self._shared else stream.top
        if offset is None or (epoch == stream.epoch and offset > latest):
            return Recovery(False, current, reason="bad position")
        if epoch != stream.epoch:
            return Recovery(False, current, reason="epoch changed")
        stream.expire(now)
        if offset < stream.floor:
            return Recovery(False, current, reason="too old")
        return Recovery(True, current, tuple(e[2] for e in stream.entries if e[0] > offset))

    def _stream(self, channel: str, policy: HistoryPolicy) -> _Stream:
        streams = self._streams
        stream = streams.get(channel)
        if stream is not None:
            streams.move_to_end(channel)
            return stream
        if len(streams) >= self._max_channels:
            _, dropped = streams.popitem(last=False)
            self._floor = max(self._floor, dropped.top)
        if self._shared:
            stream = _Stream(self._base, policy, self._floor)
            # Known from the floor on; its position is the log's latest.
            stream.top = self._last
        else:
            self._made += 1
            stream = _Stream(f"{self._base}.{self._made}", policy, 0)
        streams[channel] = stream
        return stream


def requested_since(message: dict[str, Any]) -> object:
    """The position a subscribe asks to recover from (``ext.history.since``),
    as sent (any JSON value); None if it names none."""
    ext = message.get("ext")
    asked = ext.get("history") if type(ext) is dict else None
    return asked.get("since") if type(asked) is dict else None


def _numbered(delivery: dict[str, Any], position: str, option: int) -> bytes:
    ext = delivery.get("ext")
    ext = dict(ext) if type(ext) is dict else {}
    ext["history"] = {"position": position}
    delivery["ext"] = ext
    return orjson.dumps(delivery, option=option)


def parse_position(position: object) -> tuple[str, int | None]:
    """``"<epoch>:<offset>"`` -> (epoch, offset); offset None if malformed.

    A position is at most 64 characters: a non-empty epoch, ``:``, and
    ASCII digits.
    """
    if type(position) is not str or len(position) > 64:
        return "", None
    epoch, _, digits = position.rpartition(":")
    if not epoch or not digits.isdigit() or not digits.isascii():
        return "", None
    return epoch, int(digits)
