"""bayeux_core.wire: Faye's HTTP and WebSocket rules as pure functions.

Round trips of messages through every way a Faye client carries them (JSON
POST, form POST, JSON-P GET, WebSocket text), decode_form against parse_qs,
the JSON-P callback rule, CORS, EventSource, the routes of a request head,
every documented refusal, and the WebSocket handshake against wsproto's own
server handshake (wsproto and h11 are sans-IO too: nothing here does I/O).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, unquote_to_bytes, urlencode

import h11
import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType
from wsproto.events import AcceptConnection, Request
from wsproto.handshake import H11Handshake

from bayeux_core import BodyError, decode_body, wire
from bayeux_core.wire import (
    BAD_MESSAGE,
    BAD_REQUEST,
    EVENT_PING,
    FORBIDDEN_ORIGIN,
    NOT_FOUND,
    TOO_LARGE,
    Answer,
    BayeuxRequest,
    ClientScript,
    EventStream,
    HttpRequest,
    HttpResponse,
    NotMounted,
    ReplyShape,
    Route,
    WebSocketUpgrade,
    WireConfig,
    classify,
    cors_headers,
    decode_form,
    decode_request,
    escape_js,
    event_bytes,
    jsonp_wrap,
    preflight,
    reply_response,
    stream_head,
    under_mount,
    valid_callback,
    websocket_accept,
    websocket_messages,
)

CONFIG = WireConfig()
HANDSHAKE = {
    "channel": "/meta/handshake",
    "version": "1.0",
    "supportedConnectionTypes": ["callback-polling"],
}
TEXT = ((b"content-type", b"text/plain; charset=utf-8"),)
NO_CACHE = (
    (b"cache-control", b"no-cache, no-store"),
    (b"x-content-type-options", b"nosniff"),
)
PREFLIGHT_REST = (
    (b"access-control-allow-credentials", b"true"),
    (
        b"access-control-allow-headers",
        b"Accept, Authorization, Content-Type, Pragma, X-Requested-With",
    ),
    (b"access-control-allow-methods", b"POST, GET"),
    (b"access-control-max-age", b"86400"),
)


def request(
    method: bytes = b"GET",
    target: bytes = b"/faye",
    *headers: tuple[bytes, bytes],
    version: bytes = b"1.1",
) -> HttpRequest:
    return HttpRequest(method, target, headers, version)


def bayeux(route: Route) -> BayeuxRequest:
    assert isinstance(route, BayeuxRequest), route
    return route


def answer(route: Route) -> HttpResponse:
    assert isinstance(route, Answer), route
    return route.response


def post(
    body: bytes,
    content_type: bytes | None = b"application/json",
    target: bytes = b"/faye",
    config: WireConfig = CONFIG,
) -> list[dict[str, Any]] | HttpResponse:
    headers = () if content_type is None else ((b"content-type", content_type),)
    route = bayeux(classify(HttpRequest(b"POST", target, headers), config))
    return decode_request(route, body, config)


# ----------------------------------------------------------- strategies

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=8,
)
messages_st = st.lists(st.dictionaries(st.text(), json_values, max_size=4), max_size=4)

_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$"
_REST = _FIRST + "0123456789"
callbacks = st.from_regex(
    r"[a-zA-Z_$][a-zA-Z0-9_$]{0,8}(\.[a-zA-Z_$][a-zA-Z0-9_$]{0,8}){0,3}", fullmatch=True
).filter(lambda name: not name.startswith(("CWS", "FWS", "ZWS")))


def callback_oracle(name: str) -> bool:
    """Faye's rule, written without a regex."""
    if name.startswith(("CWS", "FWS", "ZWS")):
        return False
    return all(
        part != "" and part[0] in _FIRST and all(c in _REST for c in part)
        for part in name.split(".")
    )


def json_text(messages: list[dict[str, Any]], ascii_only: bool) -> str:
    return json.dumps(messages, ensure_ascii=ascii_only)


def form_escape(value: str, style: str) -> str:
    """A form value as a browser (quote_plus), quote, or a lax client writes it."""
    if style == "plus":
        return quote_plus(value)
    if style == "percent":
        return quote(value, safe="")
    # Lax: only what would break the form is escaped; non-ASCII stays raw.
    return value.replace("%", "%25").replace("&", "%26").replace("+", "%2B").replace("=", "%3D")


def parse_qs_first(body: bytes) -> tuple[str | None, str | None]:
    """What decode_form promises: parse_qs of the UTF-8 text, first values."""
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return None, None
    message = form.get("message")
    jsonp = form.get("jsonp")
    return (message[0] if message else None), (jsonp[0] if jsonp else None)


# ----------------------------------------------------------- round trips


@given(messages_st)
def test_json_post_round_trip(messages: list[dict[str, Any]]) -> None:
    assert post(orjson.dumps(messages)) == messages
    assert post(json.dumps(messages).encode(), b"Application/JSON; charset=UTF-8") == messages


def test_one_object_is_a_batch_of_one() -> None:
    assert post(orjson.dumps(HANDSHAKE)) == [HANDSHAKE]
    assert post(b"message=" + quote_plus(json.dumps(HANDSHAKE)).encode(), b"") == [HANDSHAKE]


@given(
    messages=messages_st,
    callback=st.none() | callbacks,
    jsonp_first=st.booleans(),
    style=st.sampled_from(["plus", "percent", "lax"]),
    ascii_only=st.booleans(),
    content_type=st.sampled_from(
        [None, b"", b"text/plain;charset=UTF-8", b"application/x-www-form-urlencoded"]
    ),
)
def test_form_post_round_trip(
    messages: list[dict[str, Any]],
    callback: str | None,
    jsonp_first: bool,
    style: str,
    ascii_only: bool,
    content_type: bytes | None,
) -> None:
    fields = ["message=" + form_escape(json_text(messages, ascii_only), style)]
    if callback is not None:
        fields.insert(0 if jsonp_first else 1, "jsonp=" + form_escape(callback, style))
    body = "&".join(fields).encode("utf-8")
    assert decode_form(body) == (json_text(messages, ascii_only), callback)
    route = bayeux(
        classify(request(b"POST", b"/faye", (b"content-type", content_type or b"")), CONFIG)
    )
    assert route.form
    # A form's jsonp is checked, but the reply is plain JSON (as Faye).
    assert route.shape == ReplyShape(None, None)
    assert decode_request(route, body, CONFIG) == messages


@given(messages=messages_st, callback=st.none() | callbacks, jsonp_first=st.booleans())
def test_get_query_round_trip(
    messages: list[dict[str, Any]], callback: str | None, jsonp_first: bool
) -> None:
    query = [("message", json_text(messages, False))]
    if callback is not None:
        query.insert(0 if jsonp_first else 1, ("jsonp", callback))
    target = ("/faye?" + urlencode(query)).encode("ascii")
    route = bayeux(classify(request(b"GET", target), CONFIG))
    assert route.shape == ReplyShape(callback or "jsonpcallback", None)
    assert not route.form
    assert decode_request(route, b"ignored", CONFIG) == messages


@given(messages_st)
def test_post_form_falls_back_on_the_query_message(messages: list[dict[str, Any]]) -> None:
    # Ruby Faye reads "message" from the URL of a POST too.
    target = ("/faye?" + urlencode({"message": json.dumps(messages)})).encode()
    for body in (b"", b"message=", b"jsonp=cb", b"other=1", b"\xff"):
        assert post(body, b"text/plain", target) == messages, body


@given(messages_st)
def test_websocket_messages_round_trip(messages: list[dict[str, Any]]) -> None:
    assert websocket_messages(json.dumps(messages, ensure_ascii=False), CONFIG) == messages


# ------------------------------------------------------------ decode_form


FORM_TOKENS = st.sampled_from(
    [
        b"message=",
        b"jsonp=",
        b"message",
        b"messag%65=",
        b"&",
        b"=",
        b"%",
        b"+",
        b"%41",
        b"%4a",
        b"%2",
        b"%e2%80%a8",
        b"%ff",
        b"%C3%A9",
        b"=\r\n",
        b"%\r\n",
        b"\r\n",
        b" ",
        b";",
        b"a",
        b"\x00",
        b"\xc3\xa9",
        b"\xff",
    ]
)


@given(st.lists(FORM_TOKENS, max_size=12).map(b"".join))
@example(b"message=a&message=b&jsonp=c&jsonp=d")  # first values win
@example(b"message=%41%4a")  # escapes only: the quoted-printable path
@example(b"message=%41=")  # an "=" in the value: unquote_to_bytes
@example(b"message=%4")  # a "%" that starts no escape
@example(b"message=a+b")
@example(b"jsonp=x&other=1")  # another name: parse_qs
@example(b"message")  # no "=": parse_qs, blank value kept
@example(b"message=\xc3\xa9")  # non-ASCII UTF-8: parse_qs
@example(b"message=\xff")  # not UTF-8: nothing
def test_decode_form_agrees_with_parse_qs_on_form_like_bodies(body: bytes) -> None:
    assert decode_form(body) == parse_qs_first(body)


@given(st.binary(max_size=64))
def test_decode_form_agrees_with_parse_qs_on_any_bytes(body: bytes) -> None:
    assert decode_form(body) == parse_qs_first(body)


@given(st.text(max_size=30), st.sampled_from(["plus", "percent", "lax"]))
def test_decode_form_unescapes_any_text(text: str, style: str) -> None:
    assert decode_form(("message=" + form_escape(text, style)).encode()) == (text, None)


def _form_reference(body: bytes) -> list[dict[str, Any]] | HttpResponse:
    """decode_request's answer to a form body, as its general path makes it."""
    message, callback = decode_form(body)
    if not message or (callback is not None and not valid_callback(callback)):
        return BAD_REQUEST
    decoded = decode_body(message, max_bytes=CONFIG.max_body, max_depth=CONFIG.max_json_depth)
    return wire.body_error(decoded) if isinstance(decoded, BodyError) else decoded


@given(
    messages=messages_st,
    style=st.sampled_from(["plus", "percent", "lax"]),
    ascii_only=st.booleans(),
    extra=st.lists(FORM_TOKENS, max_size=4).map(b"".join),
    at=st.integers(min_value=0),
)
@example(messages=[{"a": "b c"}], style="plus", ascii_only=True, extra=b"", at=0)
@example(messages=[{"a": "\u00e9"}], style="percent", ascii_only=False, extra=b"", at=0)
@example(messages=[], style="percent", ascii_only=True, extra=b"%\r\n", at=3)  # a soft break
@example(messages=[], style="percent", ascii_only=True, extra=b"%%41", at=3)  # "%%" is no escape
@example(messages=[], style="percent", ascii_only=True, extra=b"%4", at=99)  # nor a "%" at the end
@example(messages=[], style="percent", ascii_only=True, extra=b"&jsonp=", at=99)  # two fields
def test_a_lone_message_field_decodes_as_any_form(
    messages: list[dict[str, Any]], style: str, ascii_only: bool, extra: bytes, at: int
) -> None:
    # The usual body (one message field) takes a shorter path: the same answer.
    value = form_escape(json_text(messages, ascii_only), style).encode()
    at %= len(value) + 1
    body = b"message=" + value[:at] + extra + value[at:]
    route = bayeux(classify(request(b"POST", b"/faye", (b"content-type", b"")), CONFIG))
    assert decode_request(route, body, CONFIG) == _form_reference(body)
    assert decode_request(route, b"message=", CONFIG) == BAD_REQUEST


@given(
    st.lists(st.sampled_from([b"%", b"=", b"\r", b"\n", b"4", b"1", b"a", b"G", b"+"])).map(
        b"".join
    )
)
def test_unquote_is_unquote_to_bytes(value: bytes) -> None:
    assert wire._unquote(value) == unquote_to_bytes(value)


# ----------------------------------------------------------------- JSON-P


@given(callbacks)
def test_generated_callbacks_are_valid(name: str) -> None:
    assert valid_callback(name)


@pytest.mark.parametrize(
    "name",
    [
        "cb",
        "jsonpcallback",
        "__jsonp1__",
        "$",
        "_",
        "a.b.c",
        "$.x_1",
        "jQuery123_456",
        # the Flash prefixes only in upper case, and only at the start
        "cWS",
        "Cws",
        "cws",
        "a.CWS",
        "xCWS",
        "CW",
        "FW",
        "ZWz",
    ],
)
def test_valid_callbacks(name: str) -> None:
    assert valid_callback(name)
    assert callback_oracle(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "1cb",
        "9",
        "a.1b",
        "a.",
        ".a",
        "a..b",
        "a-b",
        "a b",
        "cb\n",
        "<script>",
        "alert(1)",
        # Flash signatures, case-sensitively: Rosetta Flash
        "CWS",
        "CWSabc",
        "FWS",
        "FWS.x",
        "ZWS",
        "ZWS_1",
        # non-ASCII lookalikes that Unicode case folding would let through
        "\u0131",
        "j\u0131",
        "\u212a",
        "\u017fcb",
        "caf\u00e9",
        "\uff41",
    ],
)
def test_invalid_callbacks(name: str) -> None:
    assert not valid_callback(name)
    assert not callback_oracle(name)


@given(st.text(alphabet="aZ_$0.CFWSz\u0131\u212a\u017f- \n", max_size=8))
def test_valid_callback_is_faye_rule(name: str) -> None:
    assert valid_callback(name) == callback_oracle(name)


@given(st.text(), callbacks)
def test_jsonp_reply_wraps_and_escapes(text: str, callback: str) -> None:
    body = orjson.dumps([{"data": text + "\u2028\u2029"}])
    response = reply_response(ReplyShape(callback, None), body)
    assert response.status == 200
    assert response.headers == (
        *NO_CACHE,
        (b"content-type", b"text/javascript; charset=utf-8"),
        (b"content-disposition", b"attachment; filename=f.txt"),
    )
    escaped = body.replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029")
    assert response.body == b"/**/" + callback.encode() + b"(" + escaped + b");"
    assert response.body == jsonp_wrap(callback, body)
    assert escape_js(body) == escaped
    # Still the same JSON, and no JavaScript line terminator left in it.
    assert "\u2028".encode() not in response.body
    assert "\u2029".encode() not in response.body
    assert json.loads(escaped) == [{"data": text + "\u2028\u2029"}]


def test_jsonp_reply_of_the_research_notes() -> None:
    body = b'[{"channel":"/meta/handshake"}]'
    response = reply_response(ReplyShape("callback", b"https://a.example"), body)
    assert response.body == b'/**/callback([{"channel":"/meta/handshake"}]);'
    assert len(response.body) == 46
    assert response.headers[-2:] == (
        (b"access-control-allow-origin", b"https://a.example"),
        (b"access-control-allow-credentials", b"true"),
    )


def test_escape_js_leaves_other_bytes() -> None:
    assert escape_js(b'["\xe2\x80\xa8\xe2\x80\xa9\xe2\x80\xa7"]') == (
        b'["\\u2028\\u2029\xe2\x80\xa7"]'
    )


def test_get_with_empty_jsonp_uses_the_default_callback() -> None:
    route = bayeux(classify(request(b"GET", b"/faye?message=%7B%7D&jsonp="), CONFIG))
    assert route.shape.callback == "jsonpcallback"
    assert route.query_message == "{}"


# ------------------------------------------------------------- plain JSON


def test_json_reply_headers() -> None:
    body = b'[{"successful":true}]'
    assert reply_response(ReplyShape(), body) == HttpResponse(
        200, (*NO_CACHE, (b"content-type", b"application/json; charset=utf-8")), body
    )
    with_origin = reply_response(ReplyShape(None, b"https://a.example"), body)
    assert with_origin.headers == (
        *NO_CACHE,
        (b"content-type", b"application/json; charset=utf-8"),
        (b"access-control-allow-origin", b"https://a.example"),
        (b"access-control-allow-credentials", b"true"),
    )
    # No JSON-P: the body is not touched, line separators and all.
    raw = '["\u2028"]'.encode()
    assert reply_response(ReplyShape(), raw).body == raw


# ------------------------------------------------------------- refusals


def test_get_without_message_is_bad_request() -> None:
    assert answer(classify(request(b"GET", b"/faye"), CONFIG)) == BAD_REQUEST
    assert answer(classify(request(b"GET", b"/faye?jsonp=cb"), CONFIG)) == BAD_REQUEST
    assert HttpResponse(400, TEXT, b"Bad request") == BAD_REQUEST


@pytest.mark.parametrize("callback", ["1cb", "CWSx", "a-b", "%3Cscript%3E", "\u0131"])
def test_get_with_invalid_callback_is_bad_request(callback: str) -> None:
    target = b"/faye?message=%5B%5D&jsonp=" + quote(callback, safe="%").encode()
    assert answer(classify(request(b"GET", target), CONFIG)) == BAD_REQUEST


def test_form_without_message_is_bad_request() -> None:
    for body in (b"", b"message=", b"jsonp=cb", b"x=1", b"\xff\xfe"):
        assert post(body, b"text/plain") == BAD_REQUEST, body
        assert post(body, None) == BAD_REQUEST, body


@pytest.mark.parametrize("callback", [b"1cb", b"CWS", b"a-b", b"%3Cscript%3E", b""])
def test_form_with_invalid_jsonp_is_bad_request(callback: bytes) -> None:
    # An empty jsonp is not valid either: a form has no default callback.
    good = b"message=%5B%5D"
    assert post(good + b"&jsonp=" + callback, b"text/plain") == BAD_REQUEST
    assert post(b"jsonp=" + callback + b"&" + good, b"text/plain") == BAD_REQUEST
    assert post(good + b"&jsonp=cb", b"text/plain") == []


@pytest.mark.parametrize(
    "body", [b"", b"{", b"not json", b"1", b'"x"', b"null", b"true", b"[1]", b"[{}, null]"]
)
def test_not_messages_is_bad_request(body: bytes) -> None:
    assert post(body) == BAD_REQUEST
    form = b"message=" + quote_plus(body).encode()
    assert post(form, b"text/plain") == BAD_REQUEST
    if body:
        target = b"/faye?message=" + quote_plus(body).encode()
        route = bayeux(classify(request(b"GET", target), CONFIG))
        assert decode_request(route, b"", CONFIG) == BAD_REQUEST
    assert websocket_messages(body.decode(), CONFIG) == BAD_MESSAGE


def test_too_large_is_413() -> None:
    small = WireConfig(max_body=16, max_ws_message=16)
    body = orjson.dumps([{"data": "x" * 20}])
    assert HttpResponse(413, TEXT, b"Too large") == TOO_LARGE
    assert post(body, config=small) == TOO_LARGE
    assert post(b"message=" + quote_plus(body).encode(), b"text/plain", config=small) == TOO_LARGE
    target = b"/faye?message=" + quote_plus(body).encode()
    route = bayeux(classify(request(b"GET", target), small))
    assert decode_request(route, b"", small) == TOO_LARGE
    assert websocket_messages(body.decode(), small) == BAD_MESSAGE
    # At the limit exactly: fine.
    assert len(b'[{"a":"123456"}]') == 16
    assert post(b'[{"a":"123456"}]', config=small) == [{"a": "123456"}]
    assert websocket_messages('[{"a":"123456"}]', small) == [{"a": "123456"}]
    assert websocket_messages('[{"a":"\u00e9\u00e9\u00e9\u00e9"}]', small) == BAD_MESSAGE


def test_body_limit_and_websocket_limit_are_separate() -> None:
    config = WireConfig(max_body=16, max_ws_message=1000)
    text = json.dumps([{"data": "x" * 100}])
    assert websocket_messages(text, config) == [{"data": "x" * 100}]
    assert post(text.encode(), config=config) == TOO_LARGE
    config = WireConfig(max_body=1000, max_ws_message=16)
    assert websocket_messages(text, config) == BAD_MESSAGE
    assert post(text.encode(), config=config) == [{"data": "x" * 100}]


def test_too_deep_is_bad_request() -> None:
    shallow = WireConfig(max_json_depth=3)
    deep = b'[{"a":{"b":{"c":1}}}]'
    assert post(deep, config=shallow) == BAD_REQUEST
    assert post(b"message=" + quote_plus(deep).encode(), b"", config=shallow) == BAD_REQUEST
    assert websocket_messages(deep.decode(), shallow) == BAD_MESSAGE
    assert post(b'[{"a":{"b":1}}]', config=shallow) == [{"a": {"b": 1}}]
    assert websocket_messages('[{"a":{"b":1}}]', shallow) == [{"a": {"b": 1}}]


@pytest.mark.parametrize("method", [b"PUT", b"DELETE", b"PATCH", b"HEAD", b"get", b"post", b""])
def test_unknown_method_is_bad_request(method: bytes) -> None:
    route = classify(request(method, b"/faye?message=%5B%5D"), CONFIG)
    assert answer(route) == BAD_REQUEST


def test_disallowed_origin_is_forbidden() -> None:
    config = WireConfig(allowed_origins=frozenset({"https://good.example"}))
    assert HttpResponse(403, TEXT, b"Forbidden origin") == FORBIDDEN_ORIGIN
    evil = (b"origin", b"https://evil.example")
    for method, extra in [
        (b"POST", (b"content-type", b"application/json")),
        (b"GET", (b"accept", b"text/event-stream")),
        (b"GET", (b"upgrade", b"websocket")),
        (b"OPTIONS", (b"access-control-request-method", b"POST")),
        (b"GET", (b"x", b"y")),
        (b"PUT", (b"x", b"y")),
    ]:
        assert answer(classify(request(method, b"/faye?message=[]", evil, extra), config)) == (
            FORBIDDEN_ORIGIN
        )
        # Same request from an allowed origin, or with no Origin at all: not refused.
        good = (b"origin", b"https://good.example")
        for headers in [(good, extra), (extra,)]:
            route = classify(request(method, b"/faye?message=[]", *headers), config)
            assert not (isinstance(route, Answer) and route.response == FORBIDDEN_ORIGIN)
    # The client script is served to anyone.
    script = classify(request(b"GET", b"/faye/client.js", evil), config)
    assert script == ClientScript("client.js")
    # Without a list, any origin.
    route = bayeux(classify(request(b"GET", b"/faye?message=[]", evil), CONFIG))
    assert route.shape.origin == b"https://evil.example"


def test_origin_is_compared_exactly() -> None:
    config = WireConfig(
        allowed_origins=frozenset({"https://good.example", "https://\u00e9.example"})
    )
    for origin in [
        b"https://good.example/",
        b"HTTPS://GOOD.EXAMPLE",
        b"https://good.example.evil",
        b"",
    ]:
        route = classify(request(b"POST", b"/faye", (b"origin", origin)), config)
        assert answer(route) == FORBIDDEN_ORIGIN, origin
    # Header bytes are latin-1.
    route = classify(
        request(b"POST", b"/faye", (b"origin", "https://\u00e9.example".encode("latin-1"))), config
    )
    assert isinstance(route, BayeuxRequest)


def test_not_found_answer() -> None:
    assert HttpResponse(404, TEXT, b"Not found") == NOT_FOUND


# ------------------------------------------------------------------ routes


@pytest.mark.parametrize(
    ("target", "route"),
    [
        (b"/", NotMounted("/")),
        (b"/index.html", NotMounted("/index.html")),
        (b"/fayex", NotMounted("/fayex")),
        (b"/fay", NotMounted("/fay")),
        (b"/other/faye?message=[]", NotMounted("/other/faye")),
        (b"/fayes/client.js", NotMounted("/fayes/client.js")),
        (b"/health?x=1#frag", NotMounted("/health")),
        (b"/faye.js", ClientScript("client.js")),
        (b"/faye.js?v=1", ClientScript("client.js")),
        (b"/faye/client.js", ClientScript("client.js")),
        (b"/faye/faye.js", ClientScript("client.js")),
        (b"/faye/x.map", ClientScript("x.map")),
        (b"/faye/client.js.map", ClientScript("client.js.map")),
        (b"/faye.map", ClientScript("faye.map")),
        (b"/faye/a/b.js", ClientScript("b.js")),
    ],
)
def test_routes_by_path(target: bytes, route: Route) -> None:
    assert classify(request(b"GET", target), CONFIG) == route


def test_other_mounts() -> None:
    config = WireConfig(mount="/bayeux")
    assert classify(request(b"GET", b"/bayeux.js"), config) == ClientScript("client.js")
    assert classify(request(b"GET", b"/bayeux/faye.js"), config) == ClientScript("faye.js")
    assert classify(request(b"GET", b"/faye.js"), config) == NotMounted("/faye.js")
    nested = WireConfig(mount="/a/b")
    assert classify(request(b"GET", b"/a/b.js"), nested) == ClientScript("client.js")
    assert classify(request(b"GET", b"/a/b/c"), nested) == answer_bad()
    root = WireConfig(mount="/")
    assert classify(request(b"GET", b"/anything?message=[]"), root) == BayeuxRequest(
        ReplyShape("jsonpcallback", None), query_message="[]"
    )
    assert classify(request(b"GET", b"/x.js"), root) == ClientScript("x.js")


def answer_bad() -> Answer:
    return Answer(BAD_REQUEST)


@pytest.mark.parametrize(
    ("path", "mount", "under"),
    [
        ("/faye", "/faye", True),
        ("/faye/", "/faye", True),
        ("/faye/x/y", "/faye", True),
        ("/faye.js", "/faye", True),
        ("/fayex", "/faye", False),
        ("/fay", "/faye", False),
        ("", "/faye", False),
        ("/", "/", True),
        ("/x", "/", True),
        ("", "/", False),
    ],
)
def test_under_mount(path: str, mount: str, under: bool) -> None:
    assert under_mount(path, mount) is under


@pytest.mark.parametrize("mount", ["", "faye", "/faye/", "//", "faye/"])
def test_wire_config_refuses_a_bad_mount(mount: str) -> None:
    with pytest.raises(ValueError, match="mount"):
        WireConfig(mount=mount)


def test_wire_config_defaults() -> None:
    config = WireConfig()
    assert config.mount == "/faye"
    assert config.allowed_origins is None
    assert config.max_body == config.max_ws_message == 1024 * 1024
    assert config.max_json_depth == 64
    assert WireConfig(mount="/") == WireConfig(mount="/")


def test_post_routes_by_content_type() -> None:
    for content_type in [
        b"application/json",
        b"application/json; charset=utf-8",
        b" APPLICATION/JSON ;x",
    ]:
        route = bayeux(
            classify(request(b"POST", b"/faye", (b"content-type", content_type)), CONFIG)
        )
        assert not route.form
        assert route.query_message is None
    for content_type in [
        b"text/plain",
        b"application/x-www-form-urlencoded",
        b"application/jsonp",
        b"",
    ]:
        route = bayeux(
            classify(request(b"POST", b"/faye", (b"content-type", content_type)), CONFIG)
        )
        assert route.form, content_type
    route = bayeux(classify(request(b"POST", b"/faye/anything?message=%7B%7D"), CONFIG))
    assert route == BayeuxRequest(ReplyShape(None, None), form=True, query_message="{}")
    # A JSON POST ignores the query.
    route = bayeux(
        classify(
            request(b"POST", b"/faye?message=%7B%7D", (b"content-type", b"application/json")),
            CONFIG,
        )
    )
    assert decode_request(route, b"[]", CONFIG) == []


def test_origin_is_kept_for_cors() -> None:
    origin = (b"origin", b"https://a.example")
    route = bayeux(classify(request(b"POST", b"/faye", origin), CONFIG))
    assert route.shape == ReplyShape(None, b"https://a.example")
    route = bayeux(classify(request(b"GET", b"/faye?message=[]&jsonp=f", origin), CONFIG))
    assert route.shape == ReplyShape("f", b"https://a.example")


# ---------------------------------------------------------------- CORS


def test_preflight_echoes_origin_else_referer_else_star() -> None:
    origin = (b"origin", b"https://a.example")
    referer = (b"referer", b"https://r.example/page")
    for headers, allowed in [
        ((origin, referer), b"https://a.example"),
        ((referer,), b"https://r.example/page"),
        ((), b"*"),
        (((b"origin", b""), referer), b"https://r.example/page"),
    ]:
        expected = HttpResponse(200, ((b"access-control-allow-origin", allowed), *PREFLIGHT_REST))
        assert preflight(request(b"OPTIONS", b"/faye", *headers)) == expected
        assert classify(request(b"OPTIONS", b"/faye", *headers), CONFIG) == Answer(expected)
        # Any method asking for a preflight gets one.
        asked = request(b"POST", b"/faye/x", *headers, (b"access-control-request-method", b"POST"))
        assert classify(asked, CONFIG) == Answer(expected)


def test_preflight_does_not_reflect_requested_headers() -> None:
    response = preflight(
        request(b"OPTIONS", b"/faye", (b"access-control-request-headers", b"X-Evil"))
    )
    assert b"X-Evil" not in b"".join(value for _, value in response.headers)
    assert response.body == b""


def test_cors_headers() -> None:
    assert cors_headers(None) == ()
    assert cors_headers(b"https://a.example") == (
        (b"access-control-allow-origin", b"https://a.example"),
        (b"access-control-allow-credentials", b"true"),
    )


# ------------------------------------------------------------ EventSource


def test_eventsource_route() -> None:
    accept = (b"accept", b"text/event-stream")
    assert classify(request(b"GET", b"/faye/abc123", accept), CONFIG) == EventStream("abc123")
    origin = (b"origin", b"https://a.example")
    assert classify(request(b"GET", b"/faye/abc?x=1", accept, origin), CONFIG) == EventStream(
        "abc", b"https://a.example"
    )
    mixed = (b"accept", b"text/html, text/event-stream;q=0.9")
    assert classify(request(b"GET", b"/faye/id", mixed), CONFIG) == EventStream("id")
    # The client id is the last path segment, whatever it is.
    assert classify(request(b"GET", b"/faye", accept), CONFIG) == EventStream("faye")
    # Only a GET is a stream.
    post_route = classify(request(b"POST", b"/faye/abc", accept), CONFIG)
    assert isinstance(post_route, BayeuxRequest)


def test_eventsource_over_http_1_0_is_left_to_the_network_layer() -> None:
    # Commit 029721b moved this check to the trio server (its chunked framing
    # is the reason); the binding routes the request as a stream.
    route = classify(
        request(b"GET", b"/faye/abc", (b"accept", b"text/event-stream"), version=b"1.0"), CONFIG
    )
    assert route == EventStream("abc")


def test_stream_head_and_events() -> None:
    plain = stream_head(EventStream("abc"))
    assert plain == HttpResponse(
        200,
        ((b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-store")),
        b"retry: 5000\r\n\r\n",
    )
    cors = stream_head(EventStream("abc", b"https://a.example"))
    assert cors.headers == (*plain.headers, *cors_headers(b"https://a.example"))
    assert cors.body == plain.body
    assert event_bytes(b'[{"channel":"/a"}]') == b'data: [{"channel":"/a"}]\r\n\r\n'
    assert event_bytes(b"") == b"data: \r\n\r\n"
    assert EVENT_PING == b":\r\n\r\n"


# -------------------------------------------------------------- WebSocket

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
GOOD_WS = (
    (b"host", b"127.0.0.1:9292"),
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", KEY),
    (b"sec-websocket-version", b"13"),
)


def accept_token(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())


def test_websocket_route() -> None:
    assert classify(request(b"GET", b"/faye", *GOOD_WS), CONFIG) == WebSocketUpgrade()
    lax = request(b"GET", b"/faye/x", (b"upgrade", b"WebSocket, h2c"))
    assert classify(lax, CONFIG) == WebSocketUpgrade()
    # The route is not the handshake: a POST upgrade is refused by websocket_accept.
    assert classify(request(b"POST", b"/faye", *GOOD_WS), CONFIG) == WebSocketUpgrade()


def test_websocket_accept_rfc6455_example() -> None:
    response = websocket_accept(request(b"GET", b"/faye", *GOOD_WS))
    assert response == HttpResponse(
        101,
        (
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ),
    )
    assert accept_token(KEY) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_websocket_accept_tolerates() -> None:
    for headers in [
        (*GOOD_WS, (b"connection", b"keep-alive, Upgrade")),
        (*GOOD_WS, (b"upgrade", b"WEBSOCKET")),
        (*GOOD_WS, (b"origin", b"https://a.example"), (b"x-other", b"\xff")),
        (*GOOD_WS, (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")),
        (*GOOD_WS, (b"sec-websocket-protocol", b"chat, superchat")),
        (*GOOD_WS, (b"host", b"xn--nxasmq6b.com")),
        (*GOOD_WS, (b"host", b"")),
    ]:
        response = websocket_accept(request(b"GET", b"/faye?x=1", *headers))
        assert response.status == 101, headers
    # Repeated keys are joined, as wsproto does.
    twice = websocket_accept(request(b"GET", b"/faye", *GOOD_WS, (b"sec-websocket-key", b"x")))
    assert twice.headers[2] == (b"sec-websocket-accept", accept_token(KEY + b", x"))


def test_websocket_accept_refuses_each_missing_header() -> None:
    for drop in range(len(GOOD_WS)):
        headers = GOOD_WS[:drop] + GOOD_WS[drop + 1 :]
        assert websocket_accept(request(b"GET", b"/faye", *headers)) == HttpResponse(400)


@pytest.mark.parametrize(
    ("method", "header", "target"),
    [
        (b"POST", None, b"/faye"),
        (b"HEAD", None, b"/faye"),
        (b"get", None, b"/faye"),
        (b"GET", (b"connection", b"keep-alive"), b"/faye"),
        (b"GET", (b"connection", b"Upgrade\xff"), b"/faye"),
        (b"GET", (b"connection", b"upgrade\xc3\xa9"), b"/faye"),
        (b"GET", (b"upgrade", b"websocket2"), b"/faye"),
        (b"GET", (b"upgrade", b"h2c"), b"/faye"),
        (b"GET", (b"sec-websocket-version", b"8"), b"/faye"),
        (b"GET", (b"sec-websocket-version", b"13, 8"), b"/faye"),
        (b"GET", (b"sec-websocket-extensions", b"permessage-deflate, \xff"), b"/faye"),
        (b"GET", (b"sec-websocket-protocol", b"chat\xfe"), b"/faye"),
        (b"GET", (b"host", b"h\xe9st"), b"/faye"),
        (b"GET", (b"host", b"xn--a.com"), b"/faye"),
        (b"GET", None, b"/faye?\xe9"),
    ],
)
def test_websocket_accept_refusals(
    method: bytes, header: tuple[bytes, bytes] | None, target: bytes
) -> None:
    # A later header replaces GOOD_WS's (the last Connection, Version, Upgrade
    # count); a bad Host, extension or protocol spoils the request anywhere.
    headers = GOOD_WS if header is None else (*GOOD_WS, header)
    assert websocket_accept(request(method, target, *headers)) == HttpResponse(400)


# -- against wsproto's own server handshake, on raw request bytes

WS_VALUES: dict[bytes, list[bytes]] = {
    b"host": [b"example.com", b"127.0.0.1:80", b"xn--nxasmq6b.com", b"xn--a.com", b"h\xe9st", b""],
    b"upgrade": [b"websocket", b"WebSocket", b"WEBSOCKET", b"websocket2", b"h2c", b""],
    b"connection": [
        b"Upgrade",
        b"keep-alive, Upgrade",
        b"upgrade,keep-alive",
        b"keep-alive",
        b"Upgrade\xff",
        b"close, upgrade",
        b",,upgrade",
        b"",
    ],
    b"sec-websocket-key": [KEY, b"x", b"\xe9\xe9", b""],
    b"sec-websocket-version": [b"13", b"8", b"13, 8", b""],
    b"sec-websocket-extensions": [b"permessage-deflate", b"a, b; c=1", b"\xff"],
    b"sec-websocket-protocol": [b"chat", b"a, b", b"\xfe"],
    b"origin": [b"http://example.com"],
    b"content-length": [b"0"],
}


@st.composite
def raw_upgrades(draw: st.DrawFn) -> bytes:
    headers = [h for h in GOOD_WS if draw(st.integers(0, 99)) >= 15]
    extras = draw(
        st.lists(
            st.sampled_from(sorted(WS_VALUES)).flatmap(
                lambda name: st.tuples(st.just(name), st.sampled_from(WS_VALUES[name]))
            ),
            max_size=3,
        )
    )
    headers = draw(st.permutations(headers + extras))
    # h11 gives names in lower case whatever the client wrote
    cased = [
        (name.title() if draw(st.integers(0, 9)) < 3 else name, value) for name, value in headers
    ]
    method = draw(st.sampled_from([b"GET"] * 8 + [b"POST", b"HEAD", b"get"]))
    version = draw(st.sampled_from([b"1.1"] * 6 + [b"1.0"]))
    target = draw(st.sampled_from([b"/faye", b"/faye?x=1", b"/a/b%20c", b"*"]))
    head = b"%s %s HTTP/%s\r\n" % (method, target, version)
    return head + b"".join(b"%s: %s\r\n" % pair for pair in cased) + b"\r\n"


def h11_parse(raw: bytes) -> HttpRequest | None:
    """The request as h11 parses it (names lower-cased), or None if h11 refuses it."""
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(raw)
    try:
        event = connection.next_event()
    except h11.RemoteProtocolError:
        return None
    assert isinstance(event, h11.Request), event
    return HttpRequest(event.method, event.target, list(event.headers), event.http_version)


def wsproto_accept(raw: bytes) -> bytes | None:
    """The Sec-WebSocket-Accept of wsproto's 101 for ``raw``, or None if it refuses."""
    handshake = H11Handshake(ConnectionType.SERVER)
    try:
        handshake.receive_data(raw)
        events = list(handshake.events())
        assert len(events) == 1
        assert isinstance(events[0], Request)
        response = handshake.send(AcceptConnection())
    except Exception:  # RemoteProtocolError, UnicodeError, h11 errors: all refusals
        return None
    status, *lines = response.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert status.startswith(b"HTTP/1.1 101 ")
    fields = dict(line.split(b": ", 1) for line in lines)
    return fields[b"Sec-WebSocket-Accept"]


def compare_with_wsproto(raw: bytes) -> bool | None:
    """Accepted (True), refused (False) by both alike; None if h11 refuses the bytes."""
    ours_request = h11_parse(raw)
    if ours_request is None:
        return None  # no HTTP server would pass it on
    ours = websocket_accept(ours_request)
    theirs = wsproto_accept(raw)
    if theirs is None:
        assert ours == HttpResponse(400), raw
        return False
    assert ours.status == 101, raw
    assert dict(ours.headers)[b"sec-websocket-accept"] == theirs, raw
    return True


@settings(max_examples=400, deadline=None)
@given(raw_upgrades())
def test_websocket_accept_matches_wsproto(raw: bytes) -> None:
    compare_with_wsproto(raw)


def test_websocket_comparison_sees_both_outcomes() -> None:
    good = b"GET /faye HTTP/1.1\r\n" + b"".join(b"%s: %s\r\n" % h for h in GOOD_WS) + b"\r\n"
    assert compare_with_wsproto(good) is True
    assert compare_with_wsproto(good.replace(b"13", b"8")) is False
    assert compare_with_wsproto(good.replace(b"GET", b"POST")) is False
    assert compare_with_wsproto(good.replace(b"127.0.0.1:9292", b"xn--a.com")) is False
    assert compare_with_wsproto(b"GET /faye HTTP/1.1\r\n\r\n") is None  # no Host: h11 refuses


# -------------------------------------------------------- WebSocket text


def test_websocket_messages() -> None:
    assert websocket_messages('{"channel":"/meta/connect"}', CONFIG) == [
        {"channel": "/meta/connect"}
    ]
    assert websocket_messages("[]", CONFIG) == []
    for text in ["", "x", "[1]", "1", '{"a":', "\ud800"]:
        assert websocket_messages(text, CONFIG) == BAD_MESSAGE, text
    assert json.loads(BAD_MESSAGE) == [{"successful": False, "error": "400::Bad request"}]


# ---------------------------------------------------------- HttpRequest


def test_http_request_header() -> None:
    head = request(
        b"GET",
        b"/faye",
        (b"origin", b"https://first.example"),
        (b"accept", b"*/*"),
        (b"origin", b"https://second.example"),
    )
    assert head.header(b"origin") == b"https://first.example"
    assert head.header(b"accept") == b"*/*"
    assert head.header(b"Accept") is None  # names are lower-case
    assert head.header(b"referer") is None
    assert HttpRequest(b"GET", b"/").header(b"host") is None
    assert HttpRequest(b"GET", b"/").http_version == b"1.1"


def test_module_exports_exist() -> None:
    for name in wire.__all__:
        assert hasattr(wire, name), name


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # Every Origin is checked: a repeated one cannot slip past the list.
        (
            ((b"origin", b"https://good.example"), (b"origin", b"https://evil.example")),
            Answer(FORBIDDEN_ORIGIN),
        ),
        (
            ((b"origin", b"https://evil.example"), (b"origin", b"https://good.example")),
            Answer(FORBIDDEN_ORIGIN),
        ),
        # The first Content-Type counts, as in Node.js (and so in Faye).
        (
            ((b"content-type", b"application/json"), (b"content-type", b"text/plain")),
            BayeuxRequest(ReplyShape(None, None)),
        ),
        (
            ((b"content-type", b"text/plain"), (b"content-type", b"application/json")),
            BayeuxRequest(ReplyShape(None, None), form=True),
        ),
    ],
)
def test_repeated_headers(headers: tuple[tuple[bytes, bytes], ...], expected: Route) -> None:
    config = WireConfig(allowed_origins=frozenset({"https://good.example"}))
    assert classify(request(b"POST", b"/faye", *headers), config) == expected
