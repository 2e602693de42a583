"""Timesync, wire-compatible with CometD's timesync extension.

A client puts ``ext.timesync = {tc, l, o}`` on its meta messages: ``tc`` its
wall-clock time in ms when it sent the message, ``l`` and ``o`` its current
estimates of network lag and clock offset. The server answers with
``ext.timesync = {tc, ts, p, a}``: ``tc`` echoed, ``ts`` its wall-clock time in
ms when the message arrived, ``p`` the ms it held the message before replying
(a held ``/meta/connect``), and ``a = tc + o + l - ts``, how far off the
client's estimate was.

From a reply received at client time ``now``, the client estimates the lag as
``(now - tc - p) / 2`` and the offset (server time minus client time) as
``ts - tc - lag``.

Nothing here reads a clock: the server side takes its wall-clock time as an
input of :meth:`~bayeux_core.Engine.receive`, and :class:`TimesyncExtension`
is given a clock by its driver.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ._extensions import Extension, MessageContext
from ._messages import Message

__all__ = ["TimesyncExtension", "timesync_answer"]


def _number(value: object) -> float | None:
    """A finite number of plausible size (ms since the epoch fit), else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e16:
        return float(value)
    return None


def timesync_answer(ext: object, wall_ms: float) -> dict[str, int] | None:
    """The server's ``ext.timesync`` for a message's ``ext``, or None if it asks none.

    ``wall_ms`` is the server's wall-clock time, in ms, when the message
    arrived. ``p`` is 0 here; the engine sets it when it answers a held
    connect later.
    """
    if type(ext) is not dict:
        return None
    timesync = ext.get("timesync")
    if type(timesync) is not dict:
        return None
    tc = _number(timesync.get("tc"))
    if tc is None:
        return None
    lag = _number(timesync.get("l")) or 0.0
    offset = _number(timesync.get("o")) or 0.0
    ts = round(wall_ms)
    return {"tc": round(tc), "ts": ts, "p": 0, "a": round(tc + offset + lag - ts)}


class TimesyncExtension(Extension):
    """The client side: estimates the server's clock offset and the network lag.

    Args:
        clock: the client's wall-clock time in ms since the epoch (for example
            ``lambda: time.time() * 1000``); the driver supplies it, so that
            the protocol code reads no clock itself.
        samples: how many recent estimates are averaged.

    After the first answered meta message, :attr:`offset` is the estimated
    server time minus client time and :attr:`lag` the one-way network delay,
    both in ms; :meth:`server_time` is ``clock() + offset``. Until then
    :attr:`synced` is False and both are 0.
    """

    outgoing_deliveries = False

    def __init__(self, clock: Callable[[], float], *, samples: int = 10) -> None:
        if samples < 1:
            raise ValueError(f"samples must be at least 1, not {samples!r}")
        self._clock = clock
        self._lags: deque[float] = deque(maxlen=samples)
        self._offsets: deque[float] = deque(maxlen=samples)
        self.lag = 0
        self.offset = 0

    @property
    def synced(self) -> bool:
        """True once the server has answered at least once."""
        return bool(self._offsets)

    def server_time(self) -> float:
        """The estimated server wall-clock time now, in ms."""
        return self._clock() + self.offset

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        channel = message.get("channel")
        if type(channel) is str and channel.startswith("/meta/"):
            ext = message.get("ext")
            ext = dict(ext) if type(ext) is dict else {}
            ext["timesync"] = {"tc": round(self._clock()), "l": self.lag, "o": self.offset}
            message["ext"] = ext
        return message

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        ext = message.get("ext")
        timesync = ext.get("timesync") if type(ext) is dict else None
        if type(timesync) is not dict:
            return message
        tc, ts, p = (_number(timesync.get(k)) for k in ("tc", "ts", "p"))
        if tc is None or ts is None or p is None:
            return message
        lag = (self._clock() - tc - p) / 2
        self._lags.append(lag)
        self._offsets.append(ts - tc - lag)
        self.lag = round(sum(self._lags) / len(self._lags))
        self.offset = round(sum(self._offsets) / len(self._offsets))
        return message
