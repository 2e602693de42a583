"""Bayeux error codes, the ``code:args:message`` wire format, and exceptions.

Two kinds of failure exist and they are kept apart, as h11 does:

* A *peer* sent something wrong. The engine never raises for that: the bad
  message becomes a reply with ``successful: false`` and an ``error`` string
  built by :func:`error_string` (or, for a body that is not Bayeux at all, a
  :class:`~bayeux_core.BodyError` value from :func:`~bayeux_core.decode_body`).
* The *caller* misused the API (publishing to an invalid channel from the
  server, an unknown connection id, a value that cannot be encoded). That raises
  :class:`LocalProtocolError`, whose ``error_hint`` says which Bayeux code the
  situation maps to.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

__all__ = [
    "BayeuxError",
    "ErrorCode",
    "LocalProtocolError",
    "ProtocolError",
    "PublishError",
    "error_string",
]


class ErrorCode(enum.IntEnum):
    """The error codes Faye and the old CometD Bayeux table use."""

    VERSION_MISMATCH = 300
    CONNTYPE_MISMATCH = 301
    EXT_MISMATCH = 302
    BAD_REQUEST = 400
    CLIENT_UNKNOWN = 401
    PARAMETER_MISSING = 402
    CHANNEL_FORBIDDEN = 403
    CHANNEL_UNKNOWN = 404
    CHANNEL_INVALID = 405
    EXT_UNKNOWN = 406
    PUBLISH_FAILED = 407
    SERVER_ERROR = 500

    @property
    def text(self) -> str:
        return _TEXT[self]


_TEXT = {
    ErrorCode.VERSION_MISMATCH: "Version mismatch",
    ErrorCode.CONNTYPE_MISMATCH: "Connection types not supported",
    ErrorCode.EXT_MISMATCH: "Extension mismatch",
    ErrorCode.BAD_REQUEST: "Bad request",
    ErrorCode.CLIENT_UNKNOWN: "Unknown client",
    ErrorCode.PARAMETER_MISSING: "Missing required parameter",
    ErrorCode.CHANNEL_FORBIDDEN: "Forbidden channel",
    ErrorCode.CHANNEL_UNKNOWN: "Unknown channel",
    ErrorCode.CHANNEL_INVALID: "Invalid channel",
    ErrorCode.EXT_UNKNOWN: "Unknown extension",
    ErrorCode.PUBLISH_FAILED: "Failed to publish",
    ErrorCode.SERVER_ERROR: "Internal server error",
}


def error_string(code: ErrorCode, args: Iterable[str] = (), message: str | None = None) -> str:
    """Format an error as Faye does: ``"401:abc:Unknown client"``.

    ``args`` are joined with commas; ``message`` defaults to the code's text.
    """
    return f"{int(code)}:{','.join(args)}:{code.text if message is None else message}"


class BayeuxError(Exception):
    """Base class of every exception this package raises."""


class PublishError(BayeuxError):
    """The server refused a message a client sent; ``error`` is its error string.

    Raised by the clients that bayeux_trio builds on this package (the
    network client and the in-process one) alike.
    """

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class ProtocolError(BayeuxError):
    """A misuse of the protocol, with the Bayeux code it maps to.

    Abstract: raise :class:`LocalProtocolError`.
    """

    def __init__(self, msg: str, error_hint: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
        if type(self) is ProtocolError:
            raise TypeError("ProtocolError is abstract; raise LocalProtocolError")
        super().__init__(msg)
        self.error_hint = error_hint


class LocalProtocolError(ProtocolError):
    """The embedding code (not a peer) asked for something invalid."""
