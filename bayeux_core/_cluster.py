"""What a cluster backend needs to know about a batch, as pure functions.

A bus that shares one Bayeux server between processes (``bayeux_trio``'s
Redis bus) keeps two things in its backend: a log of publishes and one record
per session. Before the engine sees a batch, the node must own the sessions
the batch acts on (:func:`claimed_sessions`), and, for a subscribe that
recovers history, have read the shared log as far as the position it names
(:func:`recovery_offset`). While the backend cannot be reached, what needs it
is refused: the messages before the engine sees them
(:func:`refuse_without_backend`), or the acknowledgements of a pass whose
writes never got through (:func:`fail_without_backend`). The error strings
are the bus's to choose.

What needs the backend, by kind (:func:`~bayeux_core.message_kind`):

* a publish needs the log;
* a handshake creates a record, and a connect, subscribe, unsubscribe or
  disconnect acts on one (it claims the session);
* service calls and unknown ``/meta`` channels need neither (the engine
  answers those on its own).
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from ._history import parse_position, requested_since
from ._kinds import HANDSHAKE_AND_SESSION_KINDS, META_KINDS, SESSION_KINDS, channel_kind
from ._state import MessageKind

__all__ = [
    "MAX_CLAIMED_ID_LENGTH",
    "claimed_sessions",
    "fail_without_backend",
    "recovery_offset",
    "refuse_without_backend",
]

#: A longer ``clientId`` is not claimed: no server makes one (the engine's are
#: 31 characters), and it would only make a large backend key.
MAX_CLAIMED_ID_LENGTH = 128
#: Acknowledgements that report a change a failed backend write lost: a
#: connect or disconnect acknowledged stays so (the session is dropped and
#: taken back from its record later).
_LOST_ACKS = frozenset({MessageKind.HANDSHAKE, MessageKind.SUBSCRIBE, MessageKind.UNSUBSCRIBE})


def claimed_sessions(messages: Iterable[object]) -> dict[str, bool]:
    """The sessions a batch acts on, each mapped to True if a connect claims it.

    A session is claimed by a connect, subscribe, unsubscribe or disconnect
    whose ``clientId`` is a string of 1 to :data:`MAX_CLAIMED_ID_LENGTH`
    characters; by a connect, its node serves the session's deliveries from
    now on. Keys are in the order of their first message. Empty for a batch of
    publishes and handshakes, which claim nothing.
    """
    claims: dict[str, bool] = {}
    for message in messages:
        if type(message) is not dict:
            continue
        channel = message.get("channel")
        if type(channel) is not str:
            continue
        kind = META_KINDS.get(channel)
        if kind not in SESSION_KINDS:
            continue
        client_id = message.get("clientId")
        if type(client_id) is str and 0 < len(client_id) <= MAX_CLAIMED_ID_LENGTH:
            claims[client_id] = claims.get(client_id, False) or kind is MessageKind.CONNECT
    return claims


def recovery_offset(message: object, epoch: str) -> int | None:
    """The log offset a subscribe asks to recover from, if it names ``epoch``.

    For a ``/meta/subscribe`` whose ``ext.history.since`` is a well-formed
    position ``"<epoch>:<offset>"`` in the given (shared, non-empty) epoch:
    the offset. None for any other message, or a position in another epoch
    (the engine answers that one as it is).
    """
    if type(message) is not dict or message.get("channel") != "/meta/subscribe":
        return None
    named, offset = parse_position(requested_since(message))
    return offset if named == epoch else None


def refuse_without_backend(messages: Iterable[object], *, error: str, publish_error: str) -> None:
    """Mark refused, in place, the messages that need the unreachable backend.

    Publishes get ``publish_error``; handshakes and the messages that claim a
    session get ``error``. Service calls, unknown ``/meta`` channels, what is
    no message and what is refused already are left alone: the engine
    answers them as it would anyway.
    """
    for message in messages:
        if type(message) is not dict or "error" in message:
            continue
        channel = message.get("channel")
        if type(channel) is not str:
            continue
        kind = channel_kind(channel)
        if kind in HANDSHAKE_AND_SESSION_KINDS:
            message["error"] = error
        elif kind is MessageKind.PUBLISH:
            message["error"] = publish_error


def fail_without_backend(body: bytes, *, error: str, publish_error: str) -> bytes:
    """Reply body ``body`` with each acknowledgement the backend never got
    turned into a failure.

    A successful publish's becomes ``publish_error``; a successful
    handshake's, subscribe's or unsubscribe's becomes ``error``. Each such
    reply gets ``successful: false`` and loses its ``clientId`` (a refused
    handshake made no session). Connect and disconnect acknowledgements,
    service replies, failures and deliveries are kept as they are. ``body``
    is a JSON array as the engine writes a reply.
    """
    answers = orjson.loads(body)
    for answer in answers:
        if type(answer) is not dict or answer.get("successful") is not True:
            continue
        channel = answer.get("channel")
        if type(channel) is not str:
            continue
        kind = channel_kind(channel)
        if kind in _LOST_ACKS:
            answer["error"] = error
        elif kind is MessageKind.PUBLISH:
            answer["error"] = publish_error
        else:
            continue
        answer["successful"] = False
        answer.pop("clientId", None)
    return orjson.dumps(answers)
