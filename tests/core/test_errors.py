"""Error codes, the ``code:args:message`` wire format, and the exceptions."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bayeux_core import (
    BayeuxError,
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    error_string,
)

# The table in faye.md section 3.5 (the old CometD Bayeux codes).
CODES = {
    300: "Version mismatch",
    301: "Connection types not supported",
    302: "Extension mismatch",
    400: "Bad request",
    401: "Unknown client",
    402: "Missing required parameter",
    403: "Forbidden channel",
    404: "Unknown channel",
    405: "Invalid channel",
    406: "Unknown extension",
    407: "Failed to publish",
    500: "Internal server error",
}

# Faye's grammar for an error string (faye/faye:src/protocol/grammar.js):
# code ":" args ":" message, args comma separated, of this alphabet.
_ERROR_CHAR = r"[A-Za-z0-9\-_!~()$@ /*.]"
FAYE_ERROR_RE = re.compile(rf"[0-9]{{3}}:(?:{_ERROR_CHAR}*(?:,{_ERROR_CHAR}*)*)?:{_ERROR_CHAR}*")


def test_code_table_is_complete_and_exact() -> None:
    assert {int(code): code.text for code in ErrorCode} == CODES


@pytest.mark.parametrize("code", list(ErrorCode))
def test_error_string_defaults_to_the_code_text(code: ErrorCode) -> None:
    text = error_string(code)
    assert text == f"{int(code)}::{CODES[int(code)]}"
    assert FAYE_ERROR_RE.fullmatch(text)


@pytest.mark.parametrize(
    ("code", "args", "message", "expected"),
    [
        # Verbatim examples from the specs.
        (ErrorCode.CLIENT_UNKNOWN, ("fakeclientid",), None, "401:fakeclientid:Unknown client"),
        (
            ErrorCode.CONNTYPE_MISMATCH,
            ("iframe", "flash"),
            None,
            "301:iframe,flash:Connection types not supported",
        ),
        (ErrorCode.CHANNEL_FORBIDDEN, ("/meta/foo",), None, "403:/meta/foo:Forbidden channel"),
        (ErrorCode.CHANNEL_INVALID, ("foo",), None, "405:foo:Invalid channel"),
        # Extension-style errors with an empty args field.
        (
            ErrorCode.CHANNEL_FORBIDDEN,
            (),
            "Authentication required",
            "403::Authentication required",
        ),
        (ErrorCode.CLIENT_UNKNOWN, [], "Access denied", "401::Access denied"),
        # An explicit empty message is kept, not replaced by the default.
        (ErrorCode.BAD_REQUEST, ("x",), "", "400:x:"),
        # Any iterable of args.
        (
            ErrorCode.PARAMETER_MISSING,
            iter(["clientId", "channel"]),
            None,
            "402:clientId,channel:Missing required parameter",
        ),
    ],
)
def test_error_string_examples(
    code: ErrorCode, args: tuple[str, ...], message: str | None, expected: str
) -> None:
    text = error_string(code, args, message)
    assert text == expected
    assert FAYE_ERROR_RE.fullmatch(text)


@given(
    st.sampled_from(ErrorCode),
    st.lists(st.from_regex(r"[A-Za-z0-9\-_!~()$@/*.]+", fullmatch=True), max_size=4),
)
def test_error_string_parses_back(code: ErrorCode, args: list[str]) -> None:
    text = error_string(code, args)
    assert FAYE_ERROR_RE.fullmatch(text)
    number, arg_text, message = text.split(":")
    assert int(number) == code
    assert (arg_text.split(",") if arg_text else []) == args
    assert message == code.text


def test_codes_are_ints() -> None:
    assert isinstance(ErrorCode.CLIENT_UNKNOWN, int)
    assert ErrorCode.CLIENT_UNKNOWN + 0 == 401
    assert ErrorCode(405) is ErrorCode.CHANNEL_INVALID
    assert f"{int(ErrorCode.SERVER_ERROR)}" == "500"


def test_protocol_error_is_abstract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        ProtocolError("nope")
    with pytest.raises(TypeError, match="abstract"):
        ProtocolError("nope", ErrorCode.CHANNEL_INVALID)


def test_local_protocol_error_default_hint() -> None:
    exc = LocalProtocolError("bad thing")
    assert str(exc) == "bad thing"
    assert exc.args == ("bad thing",)
    assert exc.error_hint is ErrorCode.BAD_REQUEST


def test_local_protocol_error_hint() -> None:
    exc = LocalProtocolError("no such channel", ErrorCode.CHANNEL_INVALID)
    assert exc.error_hint is ErrorCode.CHANNEL_INVALID
    assert LocalProtocolError("x", error_hint=ErrorCode.CLIENT_UNKNOWN).error_hint == 401


def test_hierarchy() -> None:
    assert issubclass(BayeuxError, Exception)
    assert issubclass(ProtocolError, BayeuxError)
    assert issubclass(LocalProtocolError, ProtocolError)
    with pytest.raises(BayeuxError):
        raise LocalProtocolError("caught as the base class")


def test_other_subclasses_are_concrete() -> None:
    class RemoteProtocolError(ProtocolError):
        pass

    exc = RemoteProtocolError("peer", ErrorCode.EXT_UNKNOWN)
    assert exc.error_hint is ErrorCode.EXT_UNKNOWN
    assert str(exc) == "peer"


def test_publish_error_carries_the_servers_error_string() -> None:
    from bayeux_core import BayeuxError, PublishError

    error = PublishError("403::Forbidden")
    assert isinstance(error, BayeuxError)
    assert error.error == "403::Forbidden"
    assert str(error) == "403::Forbidden"
