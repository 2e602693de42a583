"""Each node of a cluster says it is alive, and reads who else is.

Once a second every node runs :data:`REPORT`, one script call on the hash
``<ns>:{log}:nodes`` (in the log's slot, so a Redis Cluster takes it): it
writes this node's field (its id) as JSON ``{"t": unix_ms, "healthy",
"lag_ms", "sessions", "connections"}``, deletes (HDEL) the fields older than
:data:`MAX_AGE` seconds, whoever wrote them, and answers the others and the
log's last id. The hash expires a minute after the last node wrote to it.
The admin API's ``GET <admin>/stats`` lists them (``nodes``) from what this
node read last, with each one's ``age_s``, seconds since it last wrote.

``lag_ms`` is how far this node's log reader is behind the log: the
milliseconds part of the log's last id when the script last read it, minus
that of the reader's position when the answer came back, or 0. A reader that
keeps up reports 0 (its position reaches the last id within a few ms); one
that falls behind reports how much log time it still has to read. It is
measured by one report and sent with the next, a second later.

One script call a second per node; nothing on a message's path.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import coredis.exceptions
import orjson
import trio

if TYPE_CHECKING:
    from coredis.commands import Script

    from bayeux_trio.server import Hub

__all__ = ["MAX_AGE", "PERIOD", "REPORT", "NodeReporter"]

log = logging.getLogger("bayeux.redis")

#: seconds between two reports
PERIOD = 1.0
#: seconds after its last report a node is dropped from the hash
MAX_AGE = 30.0
#: seconds the hash outlives the last report written to it
_EXPIRE_MS = 60_000

#: KEYS: the nodes hash, the log. ARGV: this node, its JSON, the oldest ``t``
#: (unix ms) kept, the hash's time to live (ms). Answers {last log id or "",
#: field, value, field, value...} of the entries kept.
REPORT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local oldest = tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
local answer = {''}
for i = 1, #all, 2 do
  local ok, entry = pcall(cjson.decode, all[i + 1])
  local t = ok and type(entry) == 'table' and tonumber(entry['t']) or nil
  if t == nil or t < oldest then
    redis.call('HDEL', KEYS[1], all[i])
  else
    answer[#answer + 1] = all[i]
    answer[#answer + 1] = all[i + 1]
  end
end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last > 0 then answer[1] = last[1][1] end
return answer
"""

#: what a report that cannot reach Redis waits out (the bus reports outages)
_FAILURES = (
    coredis.exceptions.RedisError,
    OSError,
    TimeoutError,
)


class _Bus(Protocol):
    """What the reporter reads of :class:`~bayeux_trio.redis.RedisBus`."""

    node: str
    log_key: str
    healthy: bool
    _client: Any
    _pos: tuple[int, int]
    _hub: Hub | None


def _ms(text: bytes | str) -> int:
    raw = text.decode() if isinstance(text, bytes) else text
    return int(raw.partition("-")[0]) if raw else 0


class NodeReporter:
    """This node's report, and the others' as last read (:meth:`listing`).

    ``connections`` counts this node's open connections; the server sets it
    (None: the sessions with an open stream or a held connect are counted).
    """

    def __init__(self, bus: _Bus, *, clock: Callable[[], float] = time.time) -> None:
        self.bus = bus
        self.key = f"{bus.log_key}:nodes"
        self.clock = clock
        self.period = PERIOD
        self.max_age = MAX_AGE
        self.connections: Callable[[], int] | None = None
        #: this node's lag, measured by the last report (ms)
        self.lag_ms = 0
        #: the other nodes' entries as last read: node id -> its report
        self._others: dict[str, dict[str, Any]] = {}
        #: wall time of this node's last report that Redis took
        self._reported: float | None = None
        self._script: Script[bytes] | None = None
        self.reports = 0

    def figures(self) -> dict[str, Any]:
        """This node's report now."""
        hub = self.bus._hub
        sessions = connections = 0
        if hub is not None:
            store = hub.engine.store
            sessions = len(store)
            if self.connections is None:
                connections = sum(1 for s in store if s.stream is not None or s.held is not None)
        if self.connections is not None:
            connections = self.connections()
        return {
            "t": int(self.clock() * 1000),
            "healthy": self.bus.healthy,
            "lag_ms": self.lag_ms,
            "sessions": sessions,
            "connections": connections,
        }

    async def run(self) -> None:
        """Report every :attr:`period` seconds until cancelled."""
        while True:
            try:
                await self.report()
            except Exception:
                # A report is for the operator's eyes: its failure must not stop the bus.
                log.exception("node report failed")
            await trio.sleep(self.period)

    async def report(self) -> bool:
        """Write this node's entry and read the others'; False if Redis did not answer."""
        client = self.bus._client
        if client is None:
            return False
        if self._script is None:
            self._script = client.register_script(REPORT)
        now = self.clock()
        oldest = int((now - self.max_age) * 1000)
        try:
            answer = await self._script(
                keys=[self.key, self.bus.log_key],
                args=[
                    self.bus.node,
                    orjson.dumps(self.figures()),
                    str(oldest),
                    str(_EXPIRE_MS),
                ],
            )
        except _FAILURES as exc:
            log.debug("node report failed: %s", exc)
            return False
        self.lag_ms = max(0, _ms(answer[0]) - self.bus._pos[0])
        others: dict[str, dict[str, Any]] = {}
        for field, value in zip(answer[1::2], answer[2::2], strict=True):
            node = field.decode()
            if node == self.bus.node:
                continue
            try:
                entry = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if type(entry) is dict and isinstance(entry.get("t"), int):
                others[node] = entry
        self._others = others
        self._reported = now
        self.reports += 1
        return True

    def listing(self) -> list[dict[str, Any]]:
        """Every node younger than :attr:`max_age`: this one first (its figures
        now), then the others as last read, by id."""
        now = self.clock()
        mine = self.figures()
        reported = self._reported
        nodes = [
            _entry(self.bus.node, mine, age=now - reported if reported is not None else 0.0)
            | {"self": True}
        ]
        for node, entry in sorted(self._others.items()):
            age = now - entry["t"] / 1000
            if age <= self.max_age:
                nodes.append(_entry(node, entry, age=age) | {"self": False})
        return nodes


def _entry(node: str, report: dict[str, Any], *, age: float) -> dict[str, Any]:
    return {
        "node": node,
        "healthy": bool(report.get("healthy", False)),
        "lag_ms": _number(report.get("lag_ms")),
        "sessions": _number(report.get("sessions")),
        "connections": _number(report.get("connections")),
        "age_s": round(max(0.0, age), 3),
    }


def _number(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value) if math.isfinite(value) else 0
