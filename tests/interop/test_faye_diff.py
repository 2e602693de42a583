"""Differential tests: the same raw requests to Faye 1.4.3 and to our server.

Each case is sent to a stock Faye 1.4.3 ``NodeAdapter`` (js/faye_server.js)
and to ``python -m bayeux_trio serve`` (no extensions), both with mount
``/faye`` and timeout 25 s, each with a client id of its own from a fresh
handshake. The replies are flattened into ``path -> value`` pairs (``[0].advice.reconnect``,
and ``[0].error#code`` for an error's numeric prefix) after the client id
is replaced by ``<clientId>`` and freshly issued ids by ``<new clientId>``,
then compared path by path: HTTP status, reply count, ``successful``, error
codes and full error strings, advice, every key.

Every difference must be listed, with its reason, either in
:data:`GENERAL_DIFFERENCES` (a rule that holds for all cases) or in the case's
own ``differences``. A difference that is not listed fails the test, and so
does a listed one that no longer happens, so the list stays the truth.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from ._support import HANDSHAKE, ServerProcess, post_json

Body = Any
Flat = dict[str, Any]

ABSENT = "<absent>"

#: Differences that hold across cases: rule name -> reason. The predicates
#: are in :func:`_general_rule`.
GENERAL_DIFFERENCES: dict[str, str] = {
    "error-advice-interval": (
        "Error replies to handshake and connect carry advice.interval "
        "(EngineConfig.error_interval, 1000 ms); Faye sends only "
        "reconnect: handshake, so a client keeps its old interval, often 0, and "
        "re-handshakes in a tight loop (faye/faye#542)."
    ),
    "error-drops-clientId": (
        "Error replies never carry clientId (bayeux_core Engine._fail): an error "
        "does not confirm a client id. Faye drops it only from failed "
        "connect/disconnect/handshake replies and echoes it on the others. "
        "Neither the faye nor the cometd client reads clientId from an error."
    ),
    "error-drops-subscription": (
        "Failed /meta/subscribe and /meta/unsubscribe replies do not echo "
        "subscription (Faye echoes it, or [] when it was missing). The faye "
        "client reads subscription only from successful replies "
        "(src/protocol/client.js)."
    ),
}


@dataclass(frozen=True)
class Case:
    """One request sent to both servers."""

    name: str
    #: the body, given this server's client id (from a fresh handshake)
    body: Callable[[str], Body]
    #: path -> reason, for each difference that is intended
    differences: dict[str, str] = field(default_factory=dict)


def _hs(**changes: Any) -> Callable[[str], Body]:
    message = {**HANDSHAKE, **changes}
    return lambda cid: [{k: v for k, v in message.items() if v is not None}]


def _msg(**fields: Any) -> Callable[[str], Body]:
    """One message; the value "CID" stands for this server's client id."""
    return lambda cid: [{k: cid if v == "CID" else v for k, v in fields.items()}]


FIRST_CHECK_WINS = (
    "Our engine reports the first failing check (the channel is invalid, so "
    "405); Faye runs every check and the last assignment wins (402 data)."
)
SERVICE_SUBSCRIBE = (
    "Deliberate: subscribing to /service/** is accepted without recording a "
    "subscription (CometD clients subscribe to service channels for "
    "request/response and expect success; service messages are never "
    "broadcast). Faye refuses it with 403."
)

CASES = [
    # -- handshake
    Case("handshake", _hs()),
    Case("handshake without version", _hs(version=None)),
    Case(
        "handshake with no common connection type",
        _hs(supportedConnectionTypes=["iframe", "flash"]),
    ),
    Case("handshake without supportedConnectionTypes", _hs(supportedConnectionTypes=None)),
    Case(
        "handshake with an empty supportedConnectionTypes",
        _hs(supportedConnectionTypes=[]),
        {
            "[0].error": (
                "An empty list counts as missing (402:supportedConnectionTypes:"
                "Missing required parameter); Faye finds no common type in it and "
                "answers 301::Connection types not supported. Both refuse the "
                "handshake with reconnect: handshake."
            ),
            "[0].error#code": "as [0].error",
        },
    ),
    # -- connect
    Case(
        "connect from an unknown client",
        _msg(
            channel="/meta/connect", clientId="fakeclientid", connectionType="long-polling", id="2"
        ),
    ),
    Case(
        "connect without clientId",
        _msg(channel="/meta/connect", connectionType="long-polling", id="2"),
    ),
    Case(
        "connect with an unknown connectionType",
        _msg(channel="/meta/connect", clientId="CID", connectionType="iframe", id="2"),
    ),
    Case("connect without connectionType", _msg(channel="/meta/connect", clientId="CID", id="2")),
    Case(
        "first connect with advice.timeout 0",
        _msg(
            channel="/meta/connect",
            clientId="CID",
            connectionType="long-polling",
            advice={"timeout": 0},
            id="2",
        ),
    ),
    Case(
        "subscribe and connect in one batch",
        lambda cid: [
            {"channel": "/meta/subscribe", "clientId": cid, "subscription": "/b", "id": "2"},
            {
                "channel": "/meta/connect",
                "clientId": cid,
                "connectionType": "long-polling",
                "advice": {"timeout": 0},
                "id": "3",
            },
        ],
    ),
    # -- other /meta channels, and CVE-2020-11020 (prefix matching of meta channels)
    Case("/meta/foo", _msg(channel="/meta/foo", clientId="CID", id="3")),
    Case("/meta/process", _msg(channel="/meta/process", id="3")),
    Case(
        "/meta/subscribe/x",
        _msg(channel="/meta/subscribe/x", clientId="CID", subscription="/a", id="3"),
    ),
    Case(
        "/meta/connect/x",
        _msg(channel="/meta/connect/x", clientId="CID", connectionType="long-polling", id="3"),
    ),
    Case("/meta/handshake/x", _hs(channel="/meta/handshake/x")),
    # -- subscribe / unsubscribe
    Case("subscribe", _msg(channel="/meta/subscribe", clientId="CID", subscription="/a", id="3")),
    Case(
        "subscribe to a list",
        _msg(channel="/meta/subscribe", clientId="CID", subscription=["/a", "/b/*"], id="3"),
    ),
    Case(
        "subscribe to /meta/**",
        _msg(channel="/meta/subscribe", clientId="CID", subscription="/meta/**", id="3"),
    ),
    Case(
        "subscribe to /service/x",
        _msg(channel="/meta/subscribe", clientId="CID", subscription="/service/x", id="3"),
        {
            "[0].successful": SERVICE_SUBSCRIBE,
            "[0].error": SERVICE_SUBSCRIBE,
            "[0].error#code": SERVICE_SUBSCRIBE,
        },
    ),
    Case(
        "subscribe to an invalid pattern",
        _msg(channel="/meta/subscribe", clientId="CID", subscription="/foo*", id="3"),
    ),
    Case(
        "subscribe without subscription",
        _msg(channel="/meta/subscribe", clientId="CID", id="3"),
    ),
    Case(
        "subscribe from an unknown client",
        _msg(channel="/meta/subscribe", clientId="fakeclientid", subscription="/a", id="3"),
    ),
    Case(
        "subscribe without clientId",
        _msg(channel="/meta/subscribe", subscription="/a", id="3"),
    ),
    Case(
        "unsubscribe",
        _msg(channel="/meta/unsubscribe", clientId="CID", subscription="/a", id="3"),
    ),
    # -- publish
    Case("publish", _msg(channel="/a/b", clientId="CID", data={"x": 1}, id="4")),
    Case("publish without clientId", _msg(channel="/a/b", data={"x": 1}, id="4")),
    Case("publish null data", _msg(channel="/a/b", clientId="CID", data=None, id="4")),
    Case("publish to a wildcard", _msg(channel="/a/*", clientId="CID", data={"x": 1}, id="4")),
    Case("publish to /**", _msg(channel="/**", clientId="CID", data=1, id="4")),
    Case("publish without data", _msg(channel="/a/b", clientId="CID", id="4")),
    Case(
        "publish to a wildcard without data",
        _msg(channel="/a/*", clientId="CID", id="4"),
        {"[0].error": FIRST_CHECK_WINS, "[0].error#code": FIRST_CHECK_WINS},
    ),
    Case("publish to an invalid name", _msg(channel="/a b", clientId="CID", data=1, id="4")),
    Case("publish to /service/x", _msg(channel="/service/x", clientId="CID", data=1, id="4")),
    Case(
        "publish carrying an error",
        _msg(channel="/a/b", clientId="CID", data=1, error="boo", id="4"),
    ),
    Case(
        "message without channel",
        _msg(clientId="CID", data=1, id="5"),
        {
            "[0].error": (
                "We report the missing field (402:channel:Missing required "
                "parameter); Faye treats the message as a publish to an invalid "
                "channel (405::Invalid channel)."
            ),
            "[0].error#code": "as [0].error",
        },
    ),
    # -- batches and bodies
    Case("empty batch", lambda cid: []),
    Case("single object body", lambda cid: {"channel": "/a/b", "data": 1, "id": "6"}),
    # -- disconnect
    Case("disconnect", _msg(channel="/meta/disconnect", clientId="CID", id="7")),
    Case("disconnect an unknown client", _msg(channel="/meta/disconnect", clientId="x", id="7")),
]


# ------------------------------------------------------------- comparison


def _handshake(server: ServerProcess) -> str:
    status, replies = post_json(server.port, [HANDSHAKE])
    assert status == 200, (server.name, status, replies)
    client_id: str = replies[0]["clientId"]
    return client_id


def _normalise(value: Any, client_id: str) -> Any:
    if isinstance(value, str):
        if re.fullmatch(r"[0-9a-z]{31}", value) and value != client_id:
            return "<new clientId>"
        return value.replace(client_id, "<clientId>")
    if isinstance(value, list):
        return [_normalise(v, client_id) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v, client_id) for k, v in value.items()}
    return value


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        if not value:
            yield prefix, {}
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}")
            if key == "error" and isinstance(item, str):
                yield f"{prefix}.error#code", item.split(":", 1)[0]
    else:
        yield prefix, value


def _flat(status: int, replies: Any) -> Flat:
    flat: Flat = {"status": status}
    if isinstance(replies, list):
        flat["count"] = len(replies)
        for index, reply in enumerate(replies):
            flat.update(_flatten(reply, f"[{index}]"))
    else:
        flat["body"] = replies
    return flat


def _general_rule(path: str, faye: Flat, ours: Flat) -> str | None:
    """The name of the general rule that explains a difference at ``path``."""
    match = re.fullmatch(r"(\[\d+\])\.(.+)", path)
    if match is None:
        return None
    reply, rest = match.groups()
    failed = faye.get(f"{reply}.successful") is False and ours.get(f"{reply}.successful") is False
    if not failed:
        return None
    if rest == "advice.interval" and faye.get(path, ABSENT) == ABSENT:
        return "error-advice-interval"
    if rest == "clientId" and ours.get(path, ABSENT) == ABSENT:
        return "error-drops-clientId"
    if rest == "subscription" and ours.get(path, ABSENT) == ABSENT:
        return "error-drops-subscription"
    return None


def _differences(faye: Flat, ours: Flat) -> dict[str, tuple[Any, Any]]:
    found = {}
    for path in sorted(set(faye) | set(ours)):
        theirs, mine = faye.get(path, ABSENT), ours.get(path, ABSENT)
        if theirs != mine and _general_rule(path, faye, ours) is None:
            found[path] = (theirs, mine)
    return found


def _exchange(server: ServerProcess, case: Case) -> Flat:
    client_id = _handshake(server)
    status, replies = post_json(server.port, case.body(client_id))
    return _flat(status, _normalise(replies, client_id))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_same_replies_as_faye(
    faye_server: ServerProcess, our_server: ServerProcess, case: Case
) -> None:
    faye = _exchange(faye_server, case)
    ours = _exchange(our_server, case)
    found = _differences(faye, ours)
    unexplained = {path: values for path, values in found.items() if path not in case.differences}
    stale = sorted(set(case.differences) - set(found))
    assert not unexplained, (
        "differences from Faye 1.4.3 that are not listed as intended "
        "(path: (faye, ours)):\n"
        + "\n".join(f"  {path}: {values!r}" for path, values in unexplained.items())
        + f"\nfaye: {json.dumps(faye)}\nours: {json.dumps(ours)}"
    )
    assert not stale, f"listed differences that no longer happen: {stale}"
    # Spot checks that matter to clients whatever the lists say.
    for path, value in ours.items():
        if (
            path.endswith(".advice.reconnect")
            and ours.get(path.replace("advice.reconnect", "successful")) is False
        ):
            assert value == "handshake", (path, ours)


def test_general_differences_are_needed(
    faye_server: ServerProcess, our_server: ServerProcess
) -> None:
    """Each general rule explains at least one case (none is stale)."""
    used: set[str] = set()
    for case in CASES:
        faye = _exchange(faye_server, case)
        ours = _exchange(our_server, case)
        for path in set(faye) | set(ours):
            if faye.get(path, ABSENT) != ours.get(path, ABSENT):
                rule = _general_rule(path, faye, ours)
                if rule is not None:
                    used.add(rule)
    assert used == set(GENERAL_DIFFERENCES)
