"""The HTTP layer's shortcuts give exactly what the general paths give.

* :func:`decode_form` against ``parse_qs`` on generated form bodies;
* :func:`reply_head` against the head h11 writes for the same response.
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote, quote_plus

import h11
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bayeux_core.wire import decode_form
from bayeux_trio.server._http import _END, _REPLY_STATE, reply_head


def _reference(body: bytes) -> tuple[str | None, str | None]:
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return None, None
    message = form.get("message")
    jsonp = form.get("jsonp")
    return (message[0] if message else None), (jsonp[0] if jsonp else None)


_names = st.sampled_from(
    [b"message", b"jsonp", b"messag%65", b"mess+age", b"other", b"", b"MESSAGE", b"jsonp=x"]
)
_raw_values = st.binary(max_size=40) | st.text(max_size=40).map(lambda t: t.encode())
_encoded_values = st.text(max_size=40).map(lambda t: quote_plus(t).encode()) | st.text(
    max_size=40
).map(lambda t: quote(t, safe="+&=%").encode())
_percent_junk = st.lists(
    st.sampled_from(
        [b"%", b"%2", b"%zz", b"%C3", b"%A9", b"%E2%82", b"+", b"%2B", b"\xc3\xa9", b"a", b"="]
    ),
    max_size=8,
).map(b"".join)
_fields = st.tuples(
    _names,
    st.sampled_from([b"=", b"", b"=="]),
    _raw_values | _encoded_values | _percent_junk,
).map(b"".join)
_bodies = st.lists(_fields, max_size=4).map(b"&".join) | st.binary(max_size=60)


@settings(max_examples=1500, deadline=None)
@given(_bodies)
@example(b"")
@example(b"message=")
@example(b"message=%5B%7B%7D%5D&jsonp=cb")
@example(b"message=a+b%2Bc&message=second")
@example(b"jsonp=cb&message=%E2%82%AC")
@example(b"message=%C3")
@example(b"message=\xc3\xa9%A9")
@example(b"message=\xff")
@example(b"message=x&&jsonp=y")
@example(b"message")
@example(b"message=%41=%42&jsonp=%%41")
@example(b"message=%5B%5D%4")
@example(b"message=%0D%0A%3d%20%c3%A9+%")
def test_decode_form_matches_parse_qs(body: bytes) -> None:
    assert decode_form(body) == _reference(body)


def _h11_head(jsonp: bool, length: int, origin: bytes | None, request: bytes) -> tuple[bytes, bool]:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(request)
    while not isinstance(conn.next_event(), h11.EndOfMessage):
        pass
    headers = [
        (b"cache-control", b"no-cache, no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    if jsonp:
        headers.append((b"content-type", b"text/javascript; charset=utf-8"))
        headers.append((b"content-disposition", b"attachment; filename=f.txt"))
    else:
        headers.append((b"content-type", b"application/json; charset=utf-8"))
    headers.append((b"content-length", b"%d" % length))
    if origin is not None:
        headers.append((b"access-control-allow-origin", origin))
        headers.append((b"access-control-allow-credentials", b"true"))
    head = conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK"))
    conn.send(h11.Data(data=b"x" * length))
    conn.send(h11.EndOfMessage())
    return head, conn.our_state is h11.MUST_CLOSE


_REQUESTS = [
    b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"POST /faye HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    b"POST /faye HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
    b"POST /faye HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
]


@settings(max_examples=200, deadline=None)
@given(
    st.booleans(),
    st.integers(min_value=0, max_value=10**7),
    st.none() | st.sampled_from([b"http://example.com", b"null", b"https://a.b:8443"]),
    st.sampled_from(_REQUESTS),
)
def test_reply_head_matches_h11(
    jsonp: bool, length: int, origin: bytes | None, request: bytes
) -> None:
    expected, close = _h11_head(jsonp, length, origin, request)
    assert reply_head(jsonp, length, origin, close) == expected
    # the stand-in response the server sends through h11 ends in the same state
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(request)
    while not isinstance(conn.next_event(), h11.EndOfMessage):
        pass
    conn.send(_REPLY_STATE)
    conn.send(_END)
    assert (conn.our_state is h11.MUST_CLOSE) == close
    assert conn.our_state in (h11.DONE, h11.MUST_CLOSE)
