"""decode_body() and encode(): bodies in, compact JSON out."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bayeux_core import BodyError, BodyErrorKind, decode_body, encode
from bayeux_core._messages import DEFAULT_MAX_BODY, DEFAULT_MAX_DEPTH

HANDSHAKE = {
    "channel": "/meta/handshake",
    "version": "1.0",
    "supportedConnectionTypes": ["long-polling"],
}


def error_kind(result: object) -> BodyErrorKind:
    assert isinstance(result, BodyError), result
    return result.kind


# ------------------------------------------------------------ good bodies


def test_object_is_a_batch_of_one() -> None:
    assert decode_body(orjson.dumps(HANDSHAKE)) == [HANDSHAKE]


def test_array_of_objects() -> None:
    body = [HANDSHAKE, {"channel": "/foo", "data": {"x": [1, 2, None]}}, {}]
    assert decode_body(orjson.dumps(body)) == body


def test_empty_array_is_an_empty_batch() -> None:
    assert decode_body(b"[]") == []
    assert decode_body(b" [ ] ") == []


def test_empty_object_is_a_message() -> None:
    # Field checks are the engine's job, not decode_body's.
    assert decode_body(b"{}") == [{}]
    assert decode_body(b'[{"channel": 5}]') == [{"channel": 5}]


@pytest.mark.parametrize(
    "raw",
    [
        b'[{"channel":"/a"}]',
        bytearray(b'[{"channel":"/a"}]'),
        memoryview(b'[{"channel":"/a"}]'),
        '[{"channel":"/a"}]',
        b'\n\t [ {"channel" : "/a"} ] \r\n',
    ],
    ids=["bytes", "bytearray", "memoryview", "str", "whitespace"],
)
def test_input_types(raw: bytes | bytearray | memoryview | str) -> None:
    assert decode_body(raw) == [{"channel": "/a"}]


def test_unicode_content_in_bytes_and_str() -> None:
    message = {"channel": "/chat", "data": "h\u00e9llo \u2603 \U0001f600"}
    assert decode_body(orjson.dumps(message)) == [message]
    assert decode_body(json.dumps(message, ensure_ascii=False)) == [message]
    assert decode_body(json.dumps(message, ensure_ascii=True)) == [message]


def test_duplicate_keys_keep_the_last() -> None:
    assert decode_body(b'{"channel":"/a","channel":"/b"}') == [{"channel": "/b"}]


def test_result_items_are_plain_dicts() -> None:
    result = decode_body(b'[{"a":1},{"b":{"c":[]}}]')
    assert isinstance(result, list)
    assert all(type(m) is dict for m in result)


# ------------------------------------------------------------- not messages


@pytest.mark.parametrize(
    "raw",
    [
        b"1",
        b"-1.5",
        b"0",
        b'"str"',
        b'""',
        b"null",
        b"true",
        b"false",
        b"[1]",
        b"[null]",
        b"[true]",
        b'["{}"]',
        b"[[]]",
        b"[[{}]]",
        b'[{"channel":"/a"}, 1]',
        b'[{"channel":"/a"}, [{"channel":"/b"}]]',
        b'[{"channel":"/a"}, null]',
        b'[{}, {}, "x"]',
    ],
)
def test_primitives_and_non_object_items(raw: bytes) -> None:
    result = decode_body(raw)
    assert error_kind(result) is BodyErrorKind.NOT_MESSAGES
    assert isinstance(result, BodyError)
    assert result.http_status == 400
    assert result.detail


# ----------------------------------------------------------------- not JSON


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"{",
        b"[",
        b"[{}",
        b"{}}",
        b"[{}],",
        b"{}{}",
        b"[{},]",
        b"{'channel': '/a'}",
        b'{"channel": "/a",}',
        b"NaN",
        b"[NaN]",
        b"Infinity",
        b"1e400",
        b"undefined",
        b"channel=/a",
        b"\xff\xfe[\x00]\x00",  # UTF-16
        b'{"channel": "\xff"}',  # invalid UTF-8
        b'{"channel": "\xc3"}',  # truncated UTF-8 sequence
        b'{"channel": "\xed\xa0\x80"}',  # an encoded surrogate
        b'{"channel": "\\ud800"}',  # an escaped lone surrogate
        b"[" * 2000 + b"]" * 2000,  # deeper than the parser allows
    ],
)
def test_not_json(raw: bytes) -> None:
    result = decode_body(raw)
    assert error_kind(result) is BodyErrorKind.NOT_JSON
    assert isinstance(result, BodyError)
    assert result.http_status == 400
    assert result.detail


def test_str_with_lone_surrogate_is_not_json() -> None:
    assert error_kind(decode_body('{"channel": "\ud800"}')) is BodyErrorKind.NOT_JSON


def test_non_contiguous_memoryview_is_not_json() -> None:
    assert error_kind(decode_body(memoryview(b"[{}, {}]")[::2])) is BodyErrorKind.NOT_JSON


# ------------------------------------------------------------------- limits


def test_too_large_is_413() -> None:
    body = orjson.dumps([HANDSHAKE])
    assert decode_body(body, max_bytes=len(body)) == [HANDSHAKE]
    result = decode_body(body, max_bytes=len(body) - 1)
    assert error_kind(result) is BodyErrorKind.TOO_LARGE
    assert isinstance(result, BodyError)
    assert result.http_status == 413
    assert str(len(body) - 1) in result.detail


def test_too_large_is_checked_before_parsing() -> None:
    # Garbage over the limit is "too large", not "not JSON".
    assert error_kind(decode_body(b"x" * 11, max_bytes=10)) is BodyErrorKind.TOO_LARGE
    assert error_kind(decode_body("x" * 11, max_bytes=10)) is BodyErrorKind.TOO_LARGE


def test_str_is_measured_in_utf8_bytes() -> None:
    body = '[{"channel":"/a","data":"' + "\u00e9" * 10 + '"}]'  # é is 2 bytes
    size = len(body.encode())
    assert size == len(body) + 10
    assert decode_body(body, max_bytes=size) == [{"channel": "/a", "data": "\u00e9" * 10}]
    assert error_kind(decode_body(body, max_bytes=size - 1)) is BodyErrorKind.TOO_LARGE
    # a lone surrogate is measured, not an encoding error
    assert error_kind(decode_body('"\ud800"' + " " * 8, max_bytes=10)) is BodyErrorKind.TOO_LARGE


def test_default_size_limit() -> None:
    padding = " " * (DEFAULT_MAX_BODY - 2)
    assert decode_body("{" + padding + "}") == [{}]
    assert error_kind(decode_body("{" + padding + " }")) is BodyErrorKind.TOO_LARGE


def test_too_many_messages() -> None:
    body = orjson.dumps([{}] * 5)
    assert decode_body(body, max_messages=5) == [{}] * 5
    result = decode_body(body, max_messages=4)
    assert error_kind(result) is BodyErrorKind.TOO_MANY
    assert isinstance(result, BodyError)
    assert result.http_status == 400
    assert "4" in result.detail


def test_no_message_limit_by_default() -> None:
    """Faye has none: its clients send all they queued in one tick as one batch."""
    assert decode_body(orjson.dumps([{}] * 20_000)) == [{}] * 20_000


def test_single_object_is_never_too_many() -> None:
    assert decode_body(b"{}", max_messages=0) == [{}]
    assert decode_body(b"[]", max_messages=0) == []


def test_body_error_is_frozen_value() -> None:
    a = BodyError(BodyErrorKind.NOT_JSON, "x")
    assert a == BodyError(BodyErrorKind.NOT_JSON, "x")
    assert hash(a) == hash(BodyError(BodyErrorKind.NOT_JSON, "x"))
    with pytest.raises(AttributeError):
        a.detail = "y"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (BodyErrorKind.TOO_LARGE, 413),
        (BodyErrorKind.NOT_JSON, 400),
        (BodyErrorKind.NOT_MESSAGES, 400),
        (BodyErrorKind.TOO_MANY, 400),
        (BodyErrorKind.TOO_DEEP, 400),
    ],
)
def test_http_status(kind: BodyErrorKind, status: int) -> None:
    assert BodyError(kind, "").http_status == status


# -------------------------------------------------------------------- depth


def nested(depth: int) -> object:
    """Arrays ``depth`` levels deep: ``nested(1) == []``."""
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


def body_of_depth(depth: int) -> bytes:
    """A batch whose deepest point is ``depth`` (the batch array is level 1).

    Written by hand: orjson cannot encode more than 255 levels.
    """
    inner = depth - 2
    return b'[{"channel":"/a","data":' + b"[" * inner + b"]" * inner + b"}]"


@pytest.mark.parametrize("limit", [3, 10, 64, 100])
def test_depth_limit_is_exact(limit: int) -> None:
    assert isinstance(decode_body(body_of_depth(limit), max_depth=limit), list)
    result = decode_body(body_of_depth(limit + 1), max_depth=limit)
    assert error_kind(result) is BodyErrorKind.TOO_DEEP
    assert isinstance(result, BodyError)
    assert result.http_status == 400
    assert str(limit) in result.detail


def test_default_depth_limit_is_64() -> None:
    assert DEFAULT_MAX_DEPTH == 64
    assert isinstance(decode_body(body_of_depth(64)), list)
    assert error_kind(decode_body(body_of_depth(65))) is BodyErrorKind.TOO_DEEP


def test_depth_of_a_single_object_body_counts_from_the_object() -> None:
    body = orjson.dumps({"channel": "/a", "data": nested(63)})  # 64 deep
    assert isinstance(decode_body(body), list)
    body = orjson.dumps({"channel": "/a", "data": nested(64)})
    assert error_kind(decode_body(body)) is BodyErrorKind.TOO_DEEP


@pytest.mark.parametrize("convert", [bytes, bytearray, memoryview, lambda b: b.decode()])
def test_depth_limit_for_every_input_type(convert: Any) -> None:
    assert isinstance(decode_body(convert(body_of_depth(20)), max_depth=20), list)
    result = decode_body(convert(body_of_depth(21)), max_depth=20)
    assert error_kind(result) is BodyErrorKind.TOO_DEEP


def test_objects_count_as_levels_too() -> None:
    value: object = 1
    for _ in range(30):
        value = {"a": value}
    body = orjson.dumps([{"channel": "/a", "data": value}])  # 2 + 30 levels
    assert isinstance(decode_body(body, max_depth=32), list)
    assert error_kind(decode_body(body, max_depth=31)) is BodyErrorKind.TOO_DEEP


def test_wide_batches_are_not_deep() -> None:
    """Many brackets side by side (the walked case) are one level each."""
    message = {"channel": "/a", "data": {"a": [1, {"b": [2]}]}, "ext": {"x": {}}}
    body = orjson.dumps([message] * 1000)  # 6,001 opening brackets, 6 deep
    assert decode_body(body, max_depth=6) == [message] * 1000
    assert error_kind(decode_body(body, max_depth=5)) is BodyErrorKind.TOO_DEEP


def test_one_deep_message_in_a_wide_batch_is_found() -> None:
    batch: list[object] = [{"channel": "/a", "data": 1}] * 500
    batch.insert(250, {"channel": "/a", "data": nested(20)})
    result = decode_body(orjson.dumps(batch), max_depth=21)
    assert error_kind(result) is BodyErrorKind.TOO_DEEP
    assert isinstance(decode_body(orjson.dumps(batch), max_depth=22), list)


def test_brackets_inside_strings_are_not_nesting() -> None:
    text = "[{" * 200
    message = {"channel": "/a", "data": text, "ext": {"note": text}}
    assert decode_body(orjson.dumps([message]), max_depth=3) == [message]


def test_orjson_limit_beyond_any_configured_depth() -> None:
    """orjson itself refuses 1,025 levels: that is NOT_JSON, whatever max_depth says."""
    assert isinstance(decode_body(body_of_depth(1024), max_depth=2000), list)
    result = decode_body(body_of_depth(1025), max_depth=2000)
    assert error_kind(result) is BodyErrorKind.NOT_JSON


# ------------------------------------------------------------------ numbers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'[{"n":9223372036854775807}]', 9223372036854775807),
        (b'[{"n":-9223372036854775808}]', -9223372036854775808),
        (b'[{"n":18446744073709551615}]', 18446744073709551615),
        (b'[{"n":1e308}]', 1e308),
        # beyond 64 bits: read as a double, as JavaScript reads every number
        (b'[{"n":18446744073709551616}]', 18446744073709551616.0),
    ],
)
def test_numbers_that_fit(raw: bytes, expected: object) -> None:
    result = decode_body(raw)
    assert isinstance(result, list)
    assert result[0]["n"] == expected
    assert type(result[0]["n"]) is type(expected)


@pytest.mark.parametrize(
    "raw", [b'[{"n":1e400}]', b'[{"n":-1e400}]', b'[{"n":NaN}]', b'[{"n":Infinity}]']
)
def test_numbers_beyond_a_double_are_not_json(raw: bytes) -> None:
    assert error_kind(decode_body(raw)) is BodyErrorKind.NOT_JSON


# ------------------------------------------------------------------- encode


def test_encode_is_compact_utf8() -> None:
    value = {"channel": "/a", "data": {"list": [1, 2.5, None, True], "s": "\u00e9\u2603"}}
    out = encode(value)
    assert type(out) is bytes
    expected = b'{"channel":"/a","data":{"list":[1,2.5,null,true],"s":"\xc3\xa9\xe2\x98\x83"}}'
    assert out == expected
    assert out == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def test_encode_list_and_empty() -> None:
    assert encode([]) == b"[]"
    assert encode([{}, {"a": "b"}]) == b'[{},{"a":"b"}]'


# --------------------------------------------------------------- properties


def json_strategy(*, floats: bool) -> st.SearchStrategy[object]:
    scalars: list[st.SearchStrategy[object]] = [
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.text(),
    ]
    if floats:
        scalars.append(st.floats(allow_nan=False, allow_infinity=False))
    return st.recursive(
        st.one_of(scalars),
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(st.text(max_size=5), children, max_size=5),
        ),
        max_leaves=30,
    )


json_values = json_strategy(floats=True)


def check_result(result: object) -> list[dict[str, Any]] | BodyError:
    """The contract: a list of dicts, or a BodyError. Nothing else."""
    if isinstance(result, BodyError):
        assert isinstance(result.kind, BodyErrorKind)
        assert result.http_status in (400, 413)
        return result
    assert type(result) is list
    assert all(type(item) is dict for item in result)
    return result


@given(json_values)
def test_any_json_value_decodes_to_messages_or_error(value: object) -> None:
    raw = orjson.dumps(value)
    result = check_result(decode_body(raw))
    if type(value) is dict:
        assert result == [value]
    elif type(value) is list and all(type(v) is dict for v in value):
        assert result == value
        # A batch round-trips through encode().
        assert decode_body(encode(result)) == result
    else:
        assert isinstance(result, BodyError)
        assert result.kind is BodyErrorKind.NOT_MESSAGES


@given(st.lists(st.dictionaries(st.text(max_size=5), json_values, max_size=4), max_size=6))
def test_batches_round_trip(batch: list[dict[str, Any]]) -> None:
    result = decode_body(encode(batch))
    assert result == batch
    assert isinstance(result, list)
    assert encode(result) == encode(batch)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    check_result(decode_body(raw))


@given(st.text(max_size=64))
def test_arbitrary_text_never_raises(raw: str) -> None:
    check_result(decode_body(raw))


@given(
    st.one_of(
        st.binary(max_size=64),
        json_values.map(orjson.dumps),
    ),
    st.integers(min_value=0, max_value=80),
    st.integers(min_value=0, max_value=8),
)
def test_limits_never_raise(raw: bytes, max_bytes: int, max_messages: int) -> None:
    result = check_result(decode_body(raw, max_bytes=max_bytes, max_messages=max_messages))
    if len(raw) > max_bytes:
        assert isinstance(result, BodyError)
        assert result.kind is BodyErrorKind.TOO_LARGE
    elif isinstance(result, list):
        assert len(result) <= max(max_messages, 1)


@given(json_values)
def test_encode_round_trips(value: object) -> None:
    assert orjson.loads(encode(value)) == value


@given(json_strategy(floats=False))
def test_encode_is_compact_json(value: object) -> None:
    # Float spelling may differ between encoders; everything else is the
    # stdlib's compact form, unescaped UTF-8 included.
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    assert encode(value) == expected


def test_depth_1024_is_orjsons_own_limit_and_skips_the_check() -> None:
    body = body_of_depth(1024)
    assert isinstance(decode_body(body, max_depth=1024), list)
    assert error_kind(decode_body(body, max_depth=1023)) is BodyErrorKind.TOO_DEEP
    assert error_kind(decode_body(body_of_depth(1025), max_depth=1024)) is BodyErrorKind.NOT_JSON
