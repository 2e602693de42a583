"""Fuzz target: arbitrary bytes into :func:`bayeux_core.decode_body`.

Invariant: the result is a list of dicts or a :class:`BodyError` whose kind
agrees with the limits it was given; nothing is raised, whatever the input.
The same bytes are also offered as ``bytearray``, ``memoryview`` and (when they
are UTF-8, lone surrogates allowed) ``str``, and with small limits, so the
``TOO_LARGE`` and ``TOO_MANY`` paths are reached too.

The bytes are also a form body (as a POST under the mount carries one, and
after ``message=``, the usual shape): :func:`bayeux_core.wire.decode_request`
takes a shorter path for a lone ``message`` field, whose answer must be the
general path's (``decode_form``, then ``decode_body``); and
``wire._unquote`` must agree with ``urllib.parse.unquote_to_bytes``.

Run it with ``python fuzz/fuzz_decode.py -max_total_time=60`` (libFuzzer flags
pass through). See ``fuzz/README.md``.
"""

from __future__ import annotations

import sys
from urllib.parse import unquote_to_bytes

from bayeux_core import BodyError, BodyErrorKind, decode_body, wire

_CONFIG = wire.WireConfig()
_FORM = wire.BayeuxRequest(wire.ReplyShape(), form=True)

_DEFAULT_BYTES = 1024 * 1024
_DEFAULT_MESSAGES = 1000


def _check(raw: bytes | bytearray | memoryview | str, max_bytes: int, max_messages: int) -> None:
    result = decode_body(raw, max_bytes=max_bytes, max_messages=max_messages)
    if isinstance(result, BodyError):
        assert isinstance(result.kind, BodyErrorKind), result
        assert isinstance(result.detail, str), result
        assert result.http_status == (413 if result.kind is BodyErrorKind.TOO_LARGE else 400)
        assert (result.kind is BodyErrorKind.TOO_LARGE) == (len(raw) > max_bytes), result
        return
    assert len(raw) <= max_bytes, (len(raw), max_bytes)
    assert type(result) is list, type(result)
    assert len(result) <= max_messages, (len(result), max_messages)
    for message in result:
        assert type(message) is dict, type(message)


def _check_form(body: bytes) -> None:
    """decode_request on a form body gives the general path's answer."""
    message, callback = wire.decode_form(body)
    expected: object = wire.BAD_REQUEST
    if message and (callback is None or wire.valid_callback(callback)):
        decoded = decode_body(message, max_bytes=_CONFIG.max_body, max_depth=_CONFIG.max_json_depth)
        expected = wire.body_error(decoded) if isinstance(decoded, BodyError) else decoded
    assert wire.decode_request(_FORM, body, _CONFIG) == expected, body


def test_one_input(data: bytes) -> None:
    """One fuzz input; each invariant is an ``assert``."""
    _check_form(data)
    _check_form(b"message=" + data)
    assert wire._unquote(data) == unquote_to_bytes(data)
    _check(data, _DEFAULT_BYTES, _DEFAULT_MESSAGES)
    _check(bytearray(data), _DEFAULT_BYTES, _DEFAULT_MESSAGES)
    _check(memoryview(data), _DEFAULT_BYTES, _DEFAULT_MESSAGES)
    # Small limits, taken from the first byte so the fuzzer can steer them:
    # an odd byte makes the body one byte too large, the top bits cap the
    # batch at 1 to 8 messages.
    knob = data[0] if data else 0
    _check(data, len(data) - (knob & 1), 1 + (knob >> 5))
    try:
        text = data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return
    _check(text, _DEFAULT_BYTES, _DEFAULT_MESSAGES)


if __name__ == "__main__":
    import _runner

    _runner.run("decode", test_one_input, sys.argv)
