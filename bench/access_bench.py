"""What access control costs a message, through the sans-IO core alone.

Each case drives one :class:`bayeux_core.Engine` with a subscriber on
``/chat/room`` and measures messages per CPU-second, with and without
:class:`bayeux_trio.access.AccessControl` (three channel rules as the private
chat's, and a token registry):

* ``publish``: an anonymous publish (no clientId, no ext), as a backend's
  HTTP notification; without extensions the engine answers it on its fast
  path, which any extension turns off.
* ``session publish``: a publish from a session (clientId), as a browser's.
* ``token publish``: a session's publish carrying ``ext.authToken`` on a
  users-only channel (the registry look-up, the rule with bindings, the
  sender stamp and the token stripped).
* ``subscribe``: a subscribe to a concrete channel, then an unsubscribe.

Rates are interleaved (off, on, off, on, ...) and the table gives medians of
``--runs`` and the on/off ratio, so that a noisy machine's drift cancels out.
Run it with ``python bench/access_bench.py``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bayeux_core import ChannelRule, Engine, EngineConfig, Extension, Handshaken
from bayeux_trio.access import AccessSettings, TokenFileSettings, make_control

RULES = (
    ChannelRule("/private/{user}", subscribe=("{user}",), publish="nobody"),
    ChannelRule(
        "/private/{a}/{b}", subscribe=("{a}", "{b}"), publish=("{a}", "{b}"), sender="from"
    ),
    ChannelRule("/private/**", subscribe="nobody", publish="nobody"),
)
MESSAGES = 20_000


def engine(extensions: tuple[Extension, ...]) -> tuple[Engine, str]:
    """An engine with one session subscribed to /chat/room and /private/alice/bob."""
    ids = (f"c{n:030d}" for n in itertools.count(1))
    e = Engine(EngineConfig(), extensions=extensions, client_id_generator=lambda: next(ids))
    hello = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
    }
    e.receive(1, [{**hello, "ext": {"authToken": "alice-token"}}], now=0.0)
    (client_id,) = [a.client_id for a in e.actions_to_send() if isinstance(a, Handshaken)]
    for channel in ("/chat/room", "/private/alice/bob"):
        sub = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel}
        e.receive(2, [{**sub, "ext": {"authToken": "alice-token"}}], now=0.0)
    e.actions_to_send()
    return e, client_id


def messages(case: str, client_id: str) -> list[list[dict[str, Any]]]:
    if case == "publish":
        return [[{"channel": "/chat/room", "data": {"text": "hi"}}] for _ in range(MESSAGES)]
    if case == "session publish":
        one = {"channel": "/chat/room", "clientId": client_id, "data": {"text": "hi"}}
        return [[dict(one)] for _ in range(MESSAGES)]
    if case == "token publish":
        one = {
            "channel": "/private/alice/bob",
            "clientId": client_id,
            "data": {"text": "hi"},
            "ext": {"authToken": "alice-token"},
        }
        return [[dict(one)] for _ in range(MESSAGES)]
    assert case == "subscribe"
    out = []
    for n in range(MESSAGES // 2):
        channel = f"/chat/{n % 50}"
        out.append([{"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel}])
        out.append(
            [{"channel": "/meta/unsubscribe", "clientId": client_id, "subscription": channel}]
        )
    return out


def rate(make: Callable[[], tuple[Extension, ...]], case: str) -> float:
    """Messages per CPU-second for one run."""
    e, client_id = engine(make())
    batches = messages(case, client_id)
    session = e.store.get(client_id)
    assert session is not None
    start = time.process_time()
    for conn, batch in enumerate(batches, 10):
        e.receive(conn, batch, now=1.0)
        e.actions_to_send()
        if conn % 256 == 0:
            session.queue.clear()
    return len(batches) / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    (folder / "tokens.json").write_text(json.dumps({"alice": "alice-token", "bob": "bob-token"}))
    settings = AccessSettings(rules=RULES, tokens=TokenFileSettings(file=folder / "tokens.json"))

    def off() -> tuple[Extension, ...]:
        return ()

    def on() -> tuple[Extension, ...]:
        return (make_control(settings),)

    print("| case | off (msgs/CPU-s) | on (msgs/CPU-s) | on/off |")
    print("|---|---|---|---|")
    for case in ("publish", "session publish", "token publish", "subscribe"):
        offs, ons = [], []
        for _ in range(args.runs):
            offs.append(rate(off, case))
            ons.append(rate(on, case))
        a, b = statistics.median(offs), statistics.median(ons)
        print(f"| {case} | {a:,.0f} | {b:,.0f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
