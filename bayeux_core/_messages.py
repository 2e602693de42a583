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

#: The default limit of :func:`decode_body`.
DEFAULT_MAX_BODY = 1024 * 1024


class BodyErrorKind(enum.Enum):
    """Why a body is not a batch of Bayeux messages."""

    TOO_LARGE = "too-large"
    NOT_JSON = "not-json"
    NOT_MESSAGES = "not-messages"
    TOO_MANY = "too-many"


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
    max_messages: int = 1000,
) -> list[Message] | BodyError:
    """Decode one body: a JSON object or an array of objects.

    Returns the messages (an object is a batch of one; ``[]`` is an empty
    batch, which Faye answers with ``[]``) or a :class:`BodyError`:
    ``TOO_LARGE`` over ``max_bytes``, ``NOT_JSON`` for bytes that are not UTF-8
    JSON, ``NOT_MESSAGES`` for a top-level primitive or an array holding a
    non-object (``1``, ``"x"``, ``null``, ``[1]``, ``[null]``), ``TOO_MANY``
    for more than ``max_messages`` messages.
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
        return [value]
    if type(value) is not list:
        return BodyError(BodyErrorKind.NOT_MESSAGES, "expected a JSON object or array")
    if len(value) > max_messages:
        return BodyError(BodyErrorKind.TOO_MANY, f"more than {max_messages} messages")
    for item in value:
        if type(item) is not dict:
            return BodyError(BodyErrorKind.NOT_MESSAGES, "array items must be JSON objects")
    return value


def encode(value: object) -> bytes:
    """Compact JSON bytes (UTF-8, no spaces), as orjson writes them."""
    return orjson.dumps(value)
