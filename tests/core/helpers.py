"""Shared helpers for the core tests: drive an Engine by hand, read its output."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import orjson

from bayeux_core import Action, Engine, EngineConfig, Event, Extension, Handshaken, Reply


def counter_ids() -> Iterator[str]:
    """Deterministic, valid-looking client ids: c000...001, c000...002, ..."""
    for n in itertools.count(1):
        yield f"c{n:030d}"


class Wire:
    """An engine plus bookkeeping: fresh connection ids and decoded output."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        extensions: tuple[Extension, ...] = (),
    ) -> None:
        ids = counter_ids()
        self.engine = Engine(config, extensions=extensions, client_id_generator=lambda: next(ids))
        self.now = 0.0
        self._conns = itertools.count(1)

    def conn(self) -> int:
        return next(self._conns)

    def send(self, messages: list[Any], *, conn: int | None = None) -> list[Action]:
        """Feed one batch on a connection (a new request connection by default)."""
        self.engine.receive(self.next_conn(conn), messages, now=self.now)
        return self.engine.actions_to_send()

    def next_conn(self, conn: int | None) -> int:
        return self.conn() if conn is None else conn

    def handshake(self, types: tuple[str, ...] = ("long-polling",)) -> str:
        actions = self.send(
            [
                {
                    "channel": "/meta/handshake",
                    "version": "1.0",
                    "supportedConnectionTypes": list(types),
                    "id": "h",
                }
            ]
        )
        (event,) = [a for a in actions if isinstance(a, Handshaken)]
        return event.client_id

    def advance(self, seconds: float) -> list[Action]:
        self.now += seconds
        self.engine.handle_timer(self.now)
        return self.engine.actions_to_send()


def replies(actions: list[Action], conn: int | None = None) -> list[dict[str, Any]]:
    """Every message in every Reply (for ``conn`` only, if given), decoded."""
    out: list[dict[str, Any]] = []
    for action in actions:
        if isinstance(action, Reply) and (conn is None or action.conn == conn):
            out.extend(orjson.loads(action.body))
    return out


def events(actions: list[Action]) -> list[Event]:
    return [a for a in actions if isinstance(a, Event)]


LP = "long-polling"


def handshake_msg(**extra: Any) -> dict[str, Any]:
    """A long-polling /meta/handshake, with ``extra`` fields."""
    return {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": [LP],
    } | extra


def connected(w: Wire, *subscriptions: str) -> str:
    """A long-polling session past its first connect, subscribed to ``subscriptions``."""
    cid = w.handshake()
    if subscriptions:
        w.send(
            [{"channel": "/meta/subscribe", "clientId": cid, "subscription": list(subscriptions)}]
        )
    w.send([{"channel": "/meta/connect", "clientId": cid, "connectionType": LP}])
    return cid
