"""RESP2, the Redis protocol, without I/O: commands to bytes, bytes to replies.

The bus's two hot paths (the writer's pipeline, the reader's ``XREAD``) talk
to Redis through :mod:`._lean`, which owns the socket and uses this module
the way h11's users use h11: :func:`encode` makes the bytes of a command,
:meth:`Parser.feed` takes whatever the socket read, and
:meth:`Parser.next_reply` hands out complete replies, one at a time, or
:data:`NEED_DATA`.

Replies are plain values: a simple string is a :class:`str` (so ``+OK`` and a
bulk ``$2\\r\\nOK`` stay apart), an integer an :class:`int`, a bulk string
:class:`bytes` (``None`` for ``$-1``), an array a :class:`list` (``None`` for
``*-1``). An error reply is a :class:`ErrorReply` value, not an exception: a
pipeline keeps each command's own outcome, and the caller decides what an
error means. Bytes that are not RESP2 raise :class:`ProtocolError`, and the
parser stays broken after that (the connection must be dropped).

Replies are parsed with an explicit stack, never recursion: a reply split
anywhere resumes where it stopped (nothing is parsed twice), and nesting depth
costs memory, not Python frames. Bulk strings are sliced out of one
``bytes`` buffer; a long one that is still arriving is collected in a list of
chunks and joined once, so a reply of many reads is copied once, not once per
read.

:func:`make_parser` gives :class:`HiredisParser` instead when hiredis (the C
parser redis-py and coredis use; the ``redis`` extra installs it) can be
imported: the same interface, 15-20 times faster on the reader's stream
entries, which are most of what the bus parses. :class:`Parser` stays the
reference the tests hold hiredis to, and the fallback without it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Sequence
from typing import Final, Literal, TypeAlias

try:
    import hiredis as _hiredis
except ImportError:  # pragma: no cover - the redis extra installs it
    _hiredis = None  # type: ignore[assignment]

__all__ = [
    "MAX_BULK",
    "MAX_LINE",
    "NEED_DATA",
    "Arg",
    "ErrorReply",
    "HiredisParser",
    "Parser",
    "ProtocolError",
    "Reply",
    "encode",
    "encode_many",
    "encode_reply",
    "make_parser",
]

#: one argument of a command: bytes go as they are, str as UTF-8, int in decimal
Arg: TypeAlias = bytes | str | int


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorReply:
    """A ``-ERR ...`` reply: Redis refused one command (not the connection)."""

    message: str

    @property
    def code(self) -> str:
        """The error's first word (``ERR``, ``NOSCRIPT``, ``READONLY``, ...)."""
        return self.message.split(" ", 1)[0]


Reply: TypeAlias = "str | int | bytes | ErrorReply | list[Reply] | None"


class ProtocolError(Exception):
    """The bytes from the server are not RESP2 (or exceed the parser's limits)."""


class _Need(enum.Enum):
    NEED_DATA = enum.auto()


#: what :meth:`Parser.next_reply` returns while no complete reply is buffered
NEED_DATA: Final = _Need.NEED_DATA

#: longest simple-string, error or length line accepted (bytes, without CRLF)
MAX_LINE = 1 << 20
#: longest bulk string accepted: Redis' own default ``proto-max-bulk-len``
MAX_BULK = 512 << 20
#: longest array accepted, so that a bad length cannot ask for a huge list
MAX_ARRAY = 1 << 31

_CRLF = b"\r\n"
_DOLLAR, _STAR, _PLUS, _MINUS, _COLON = b"$*+-:"

# ------------------------------------------------------------------ commands

_BULK_HEADS: list[bytes] = [b"$%d\r\n" % n for n in range(64)]


def _bulk(arg: Arg) -> bytes:
    parts: list[bytes] = []
    _put(parts, (arg,))
    return b"".join(parts)


def encode(*args: Arg) -> bytes:
    """One command (``encode("XREAD", "COUNT", 10, ...)``) as RESP2 bytes."""
    if not args:
        raise ValueError("a command has at least its name")
    parts: list[bytes] = [b"*%d\r\n" % len(args)]
    _put(parts, args)
    return b"".join(parts)


def encode_many(commands: Iterable[Sequence[Arg]]) -> bytes:
    """Several commands, in order, as the bytes of one write (a pipeline)."""
    parts: list[bytes] = []
    for command in commands:
        if not command:
            raise ValueError("a command has at least its name")
        parts.append(b"*%d\r\n" % len(command))
        _put(parts, command)
    return b"".join(parts)


def _put(parts: list[bytes], args: Iterable[Arg]) -> None:
    # One loop for every argument of a pipeline (a publish is about ten of
    # them): no call per argument.
    heads = _BULK_HEADS
    append = parts.append
    for arg in args:
        if type(arg) is bytes:
            data = arg
        elif type(arg) is str:
            data = arg.encode()
        elif type(arg) is int:
            data = b"%d" % arg
        else:
            raise TypeError(f"a Redis argument is bytes, str or int, not {type(arg).__name__}")
        size = len(data)
        append(heads[size] if size < 64 else b"$%d\r\n" % size)
        append(data)
        append(_CRLF)


def encode_reply(reply: Reply) -> bytes:
    """A reply as a server sends it (for tests and stand-in servers)."""
    if reply is None:
        return b"$-1\r\n"
    if type(reply) is bytes:
        return _bulk(reply)
    if type(reply) is str:
        if "\r" in reply or "\n" in reply:
            raise ValueError("a simple string has no CR or LF")
        return b"+" + reply.encode() + _CRLF
    if type(reply) is int:
        return b":%d\r\n" % reply
    if type(reply) is ErrorReply:
        if "\r" in reply.message or "\n" in reply.message:
            raise ValueError("an error message has no CR or LF")
        return b"-" + reply.message.encode() + _CRLF
    if type(reply) is list:
        return b"*%d\r\n" % len(reply) + b"".join([encode_reply(item) for item in reply])
    raise TypeError(f"not a RESP2 reply: {type(reply).__name__}")


# ------------------------------------------------------------------- replies


class Parser:
    """Replies from the bytes a server sent, in order (see the module's doc).

    ``feed`` the parser what the socket read, then call ``next_reply`` until
    it returns :data:`NEED_DATA`. After a :class:`ProtocolError`, every call
    raises it again.
    """

    __slots__ = ("_broken", "_buf", "_chunks", "_have", "_need", "_pos", "_stack")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        #: bytes fed while the buffer cannot hold a complete item yet
        self._chunks: list[bytes] = []
        self._have = 0
        #: the buffer's length (from _pos) the pending item needs, at least
        self._need = 0
        #: arrays being filled: [items so far, items expected]
        self._stack: list[tuple[list[Reply], int]] = []
        self._broken: ProtocolError | None = None

    @property
    def pending(self) -> bool:
        """Whether part of a reply is buffered (bytes fed and not yet handed out)."""
        return bool(self._stack) or self._have > 0 or self._pos < len(self._buf)

    def feed(self, data: bytes | bytearray) -> None:
        """Add ``data`` (bytes the server sent) to what is parsed next."""
        if not data:
            return
        if type(data) is not bytes:
            data = bytes(data)  # (replies are slices of it: bytes, never bytearray)
        if self._need and len(self._buf) - self._pos + self._have + len(data) < self._need:
            # Still short of the item waited for: keep it aside, join once.
            self._chunks.append(data)
            self._have += len(data)
            return
        if self._pos >= len(self._buf) and not self._chunks:
            self._buf = data
        else:
            self._buf = b"".join([self._buf[self._pos :], *self._chunks, data])
            self._chunks.clear()
            self._have = 0
        self._pos = 0
        self._need = 0

    def next_reply(self) -> Reply | Literal[_Need.NEED_DATA]:
        """The next complete reply, or :data:`NEED_DATA` until more is fed.

        Raises :class:`ProtocolError` if the bytes are not RESP2.
        """
        if self._broken is not None:
            raise self._broken
        if self._chunks or self._need:
            return NEED_DATA
        try:
            return self._parse()
        except ProtocolError as exc:
            self._broken = exc
            raise

    def _parse(self) -> Reply | Literal[_Need.NEED_DATA]:
        try:
            return self._walk()
        except ValueError:
            # int() of a length or integer that is not a number
            raise ProtocolError("bad number in a reply") from None

    def _walk(self) -> Reply | Literal[_Need.NEED_DATA]:
        buf = self._buf
        pos = self._pos
        size = len(buf)
        stack = self._stack
        find = buf.find
        value: Reply
        while True:
            if pos >= size:
                self._pos = pos
                return NEED_DATA
            kind = buf[pos]
            eol = find(_CRLF, pos + 1)
            if eol < 0:
                if size - pos > MAX_LINE + 1:
                    raise ProtocolError("a line longer than the parser accepts")
                self._pos = pos
                return NEED_DATA
            if kind == _DOLLAR:
                length = int(buf[pos + 1 : eol])
                if length < 0:
                    if length != -1:
                        raise ProtocolError(f"bad bulk length {length}")
                    value = None
                    pos = eol + 2
                else:
                    if length > MAX_BULK:
                        raise ProtocolError(f"bulk string of {length} bytes: too long")
                    start = eol + 2
                    end = start + length
                    if end + 2 > size:
                        self._pos = pos
                        self._need = end + 2 - pos
                        return NEED_DATA
                    if buf[end : end + 2] != _CRLF:
                        raise ProtocolError("a bulk string does not end with CRLF")
                    value = buf[start:end]
                    pos = end + 2
            elif kind == _STAR:
                length = int(buf[pos + 1 : eol])
                if length <= 0:
                    if length == 0:
                        value = []
                    elif length == -1:
                        value = None
                    else:
                        raise ProtocolError(f"bad array length {length}")
                    pos = eol + 2
                else:
                    if length > MAX_ARRAY:
                        raise ProtocolError(f"array of {length} items: too long")
                    items: list[Reply] = []
                    # The common shape, bulk strings in a row (a stream
                    # entry's fields, a script's ids), taken here without
                    # the general loop; anything else (a nil, a nested
                    # array, a bulk not complete yet) is left to it.
                    append = items.append
                    left = length
                    pos = eol + 2
                    while left:
                        if pos >= size or buf[pos] != _DOLLAR:
                            break
                        eol = find(_CRLF, pos + 1)
                        if eol < 0:
                            break
                        start = eol + 2
                        end = start + int(buf[pos + 1 : eol])
                        if end < start or end + 2 > size:
                            break
                        if buf[end : end + 2] != _CRLF:
                            raise ProtocolError("a bulk string does not end with CRLF")
                        append(buf[start:end])
                        pos = end + 2
                        left -= 1
                    if left:
                        stack.append((items, length))
                        continue
                    value = items
            elif kind == _COLON:
                value = int(buf[pos + 1 : eol])
                pos = eol + 2
            elif kind == _PLUS:
                value = _text(buf, pos + 1, eol)
                pos = eol + 2
            elif kind == _MINUS:
                value = ErrorReply(_text(buf, pos + 1, eol))
                pos = eol + 2
            else:
                raise ProtocolError(f"unknown reply type {bytes([kind])!r}")
            # One item complete: it fills the innermost array, which may
            # complete the one around it, and so on.
            while stack:
                items, expected = stack[-1]
                items.append(value)
                if len(items) < expected:
                    break
                stack.pop()
                value = items
            else:
                self._pos = pos
                if pos == size:
                    self._buf = b""
                    self._pos = 0
                return value


def _text(buf: bytes, start: int, end: int) -> str:
    # Text for people (an error may quote a script's data): never a reason
    # to drop the connection.
    return buf[start:end].decode(errors="replace")


class HiredisParser:
    """:class:`Parser`'s interface on hiredis' reader (see the module).

    Two differences, neither seen on the bus's paths: a simple string comes
    as :class:`bytes` (hiredis does not keep ``+OK`` apart from a bulk
    ``OK``), and the lengths are hiredis' to check, not :data:`MAX_BULK`'s
    (a bulk string grows only as its bytes arrive). ``pending`` is whether
    fed bytes are still unread, which is what :mod:`._lean` asks after the
    last reply it expects.
    """

    __slots__ = ("_broken", "_reader")

    def __init__(self) -> None:
        if _hiredis is None:  # pragma: no cover - see make_parser
            raise RuntimeError("hiredis is not installed")
        # (hiredis calls replyError with the message and returns the value:
        # any callable works, as ErrorReply does, not only an exception)
        self._reader = _hiredis.Reader(
            protocolError=ProtocolError,
            replyError=ErrorReply,  # type: ignore[arg-type]
            notEnoughData=NEED_DATA,
        )
        self._broken: ProtocolError | None = None

    @property
    def pending(self) -> bool:
        return bool(self._reader.has_data())

    def feed(self, data: bytes | bytearray) -> None:
        self._reader.feed(data if type(data) is bytes else bytes(data))

    def next_reply(self) -> Reply | Literal[_Need.NEED_DATA]:
        if self._broken is not None:
            raise self._broken
        try:
            reply: Reply | Literal[_Need.NEED_DATA] = self._reader.gets()
        except ProtocolError as exc:
            self._broken = exc
            raise
        return reply


def make_parser() -> Parser | HiredisParser:
    """A :class:`HiredisParser` if hiredis can be imported, else a :class:`Parser`."""
    return Parser() if _hiredis is None else HiredisParser()
