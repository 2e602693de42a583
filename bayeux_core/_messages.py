"""Request bodies in, JSON bytes out.

:func:`decode_body` turns the bytes of an HTTP body or WebSocket message into a
list of message objects, or a :class:`BodyError` that says why it cannot (and
which HTTP status fits). It never raises for bad input. Field-level checks
(types of ``clientId``, ``subscription`` and so on) belong to the engine,
which answers them with per-message Bayeux errors.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "BodyError",
    "BodyErrorKind",
    "Message",
    "decode_body",
    "encode",
]

#: A Bayeux message as decoded from JSON: a dict with a ``channel`` key.
Message = dict[str, Any]

#: The default limits of :func:`decode_body`.
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_MAX_DEPTH = 64
#: orjson refuses deeper documents itself: a max_depth this large costs nothing
_ORJSON_MAX_DEPTH = 1024


class BodyErrorKind(enum.Enum):
    """Why a body is not a batch of Bayeux messages."""

    TOO_LARGE = "too-large"
    NOT_JSON = "not-json"
    NOT_MESSAGES = "not-messages"
    TOO_MANY = "too-many"
    TOO_DEEP = "too-deep"


@dataclass(frozen=True, slots=True)
class BodyError:
    """A body that cannot be handled as a whole.

    Attributes:
        kind: the :class:`BodyErrorKind`.
        detail: a short human-readable reason.
        http_status: 413 for ``TOO_LARGE``, else 400.
    """

    kind: BodyErrorKind
    detail: str

    @property
    def http_status(self) -> int:
        return 413 if self.kind is BodyErrorKind.TOO_LARGE else 400


def decode_body(
    raw: bytes | bytearray | memoryview | str,
    *,
    max_bytes: int = DEFAULT_MAX_BODY,
    max_messages: int | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> list[Message] | BodyError:
    """Decode one body: a JSON object or an array of objects.

    Returns the messages (an object is a batch of one; ``[]`` is an empty
    batch, which Faye answers with ``[]``) or a :class:`BodyError`:
    ``TOO_LARGE`` over ``max_bytes``, ``NOT_JSON`` for bytes that are not UTF-8
    JSON (or numbers beyond a double, such as ``1e400``), ``NOT_MESSAGES`` for
    a top-level primitive or an array holding a non-object (``1``, ``"x"``,
    ``null``, ``[1]``, ``[null]``), ``TOO_MANY`` for more than
    ``max_messages`` messages (None, the default: no limit; the engine's
    ``max_batch`` answers each message of a long batch with a Bayeux error),
    ``TOO_DEEP`` for arrays and objects nested more than ``max_depth`` deep
    (the body's own array or object is level 1).
    """
    if len(raw) > max_bytes or (
        # A str is measured in UTF-8 bytes; encode only when it could matter.
        type(raw) is str
        and len(raw) * 4 > max_bytes
        and len(raw.encode("utf-8", "surrogatepass")) > max_bytes
    ):
        return BodyError(BodyErrorKind.TOO_LARGE, f"body larger than {max_bytes} bytes")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return BodyError(BodyErrorKind.NOT_JSON, str(exc))
    if type(value) is dict:
        batch = [value]
    elif type(value) is not list:
        return BodyError(BodyErrorKind.NOT_MESSAGES, "expected a JSON object or array")
    elif max_messages is not None and len(value) > max_messages:
        return BodyError(BodyErrorKind.TOO_MANY, f"more than {max_messages} messages")
    else:
        for item in value:
            if type(item) is not dict:
                return BodyError(BodyErrorKind.NOT_MESSAGES, "array items must be JSON objects")
        batch = value
    # Nesting deeper than max_depth takes more than max_depth opening brackets
    # in one message: every other message of the batch holds at least one. So
    # the common body is settled by its length or by two C-level counts, and
    # only a bracket-heavy one (a large batch, mostly) is walked.
    if len(raw) > 2 * max_depth and max_depth < _ORJSON_MAX_DEPTH:
        if isinstance(raw, str):
            openers = raw.count("[") + raw.count("{")
        else:
            data = raw.tobytes() if isinstance(raw, memoryview) else raw
            openers = data.count(b"[") + data.count(b"{")
        if openers - len(batch) >= max_depth and _too_deep(value, max_depth):
            return BodyError(BodyErrorKind.TOO_DEEP, f"nested more than {max_depth} deep")
    return batch


def _too_deep(value: Any, limit: int) -> bool:
    """True if arrays and objects nest more than ``limit`` levels (``value`` is 1).

    Level by level, without recursion: orjson allows 1,024 levels, more than
    Python's recursion limit.
    """
    level = [value]
    for _ in range(limit):
        level = [
            item
            for container in level
            for item in (container.values() if type(container) is dict else container)
            if type(item) is dict or type(item) is list
        ]
        if not level:
            return False
    return True


def encode(value: object) -> bytes:
    """Compact JSON bytes (UTF-8, no spaces), as orjson writes them."""
    return orjson.dumps(value)
