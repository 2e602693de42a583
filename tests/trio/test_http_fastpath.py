"""The HTTP fast path yields what h11 yields, or hands the bytes to h11.

* generated request streams (pipelined, truncated, malformed, smuggling-style)
  and the fuzz seeds through the differential check of
  ``fuzz/fuzz_http_fastpath.py``;
* named cases: the common shapes are taken, the unusual ones declined;
* the server: pipelined requests, hand-overs between the fast path and h11
  in both directions, ``Connection: close``, errors answered through h11.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

import h11
import pytest
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bayeux_core import Message
from bayeux_core.wire import HttpRequest, Route, WireConfig, classify
from bayeux_trio import AsyncExtension
from bayeux_trio.server import _http
from bayeux_trio.server._http_fast import FastParser, may_complete, parse

from .helpers import HOST, fail_after, make_config, raw_exchange, raw_post, start_server

_FUZZ_TARGET = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_http_fastpath.py"
_MAX_HEAD = 8192
_MAX_BODY = 1 << 20


def _load_target() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_http_fastpath", _FUZZ_TARGET)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_target = _load_target()


def check_stream(stream: bytes, max_head: int = _MAX_HEAD, max_body: int = _MAX_BODY) -> int:
    taken: int = _target.check_stream(stream, max_head, max_body)
    return taken


# ------------------------------------------------------------ generated heads

_methods = st.sampled_from([b"POST", b"GET", b"HEAD", b"PUT", b"post", b"CONNECT", b"G\x00T", b""])
_targets = st.sampled_from(
    [
        b"/faye",
        b"/faye?message=%5B%5D&jsonp=cb",
        b"/",
        b"*",
        b"http://x/faye",
        b"/a b",
        b"/\x80",
        b"",
    ]
)
_versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 "])
_names = st.sampled_from(
    [
        b"Host",
        b"host",
        b"Content-Length",
        b"content-length",
        b"Transfer-Encoding",
        b"Connection",
        b"Content-Type",
        b"Expect",
        b"Upgrade",
        b"X-A",
        b"X A",
        b"X\x00",
        b"",
    ]
)
_values = st.sampled_from(
    [
        b"x",
        b"0",
        b"2",
        b"5",
        b"05",
        b"5, 5",
        b"5,6",
        b"+5",
        b"-1",
        b" 2 ",
        b"99999999999999999999999",
        b"chunked",
        b"close",
        b"CLOSE",
        b"keep-alive",
        b"keep-alive, Upgrade",
        b"100-continue",
        b"websocket",
        b"application/x-www-form-urlencoded",
        b"a\x01b",
        b"caf\xe9",
        b"a \t b",
        b"",
    ]
) | st.binary(max_size=6)
_separators = st.sampled_from([b": ", b":", b" : ", b":\t", b": \t ", b" :"])
_eols = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r"])
_header_lines = st.tuples(_names, _separators, _values, _eols).map(b"".join) | st.sampled_from(
    [b"  folded\r\n", b"\tfolded\r\n", b"\r\n"]
)


@st.composite
def _requests(draw: st.DrawFn) -> bytes:
    line = draw(st.tuples(_methods, _targets, _versions)).__iter__()
    head = b" ".join(line) + draw(_eols)
    lines = draw(st.lists(_header_lines, max_size=6))
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), b"Host: x\r\n")
    body = draw(st.binary(max_size=8))
    if draw(st.booleans()):
        lines.append(b"Content-Length: %d\r\n" % len(body))
    return head + b"".join(lines) + draw(_eols) + body


_streams = st.lists(_requests(), min_size=1, max_size=3).map(b"".join)


@settings(max_examples=3000, deadline=None)
@given(_streams, st.integers(0, 200), st.sampled_from([(_MAX_HEAD, _MAX_BODY), (40, 4)]))
@example(b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]" * 2, 0, (8192, 1 << 20))
def test_generated_streams_match_h11(stream: bytes, cut: int, limits: tuple[int, int]) -> None:
    check_stream(stream, *limits)
    # Truncated: a request whose end has not arrived yet.
    check_stream(stream[: len(stream) - cut], *limits)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_match_h11(data: bytes) -> None:
    check_stream(data)
    check_stream(b"POST /faye HTTP/1.1\r\nHost: x\r\n" + data)


# ----------------------------------------------------------------- fuzz seeds

_SEEDS = sorted(p for p in (_FUZZ_TARGET.parent / "seeds-http_fastpath").iterdir() if p.is_file())


def test_there_are_seeds() -> None:
    assert len(_SEEDS) >= 10


@pytest.mark.parametrize("seed", _SEEDS, ids=lambda p: p.name)
def test_fuzz_seed(seed: Path) -> None:
    _target.test_one_input(seed.read_bytes())


def test_seeds_reach_the_fast_path() -> None:
    folder = _FUZZ_TARGET.parent / "seeds-http_fastpath"
    assert check_stream((folder / "pipelined-3.txt").read_bytes()) == 3
    assert check_stream((folder / "repeated-head-obs-text.txt").read_bytes()) == 2
    assert check_stream((folder / "cl-te.txt").read_bytes()) == 0


# ----------------------------------------------------------------- named cases

_FORM = b"message=" + quote(json.dumps([{"channel": "/a", "data": 1}]), safe="").encode()
_COMMON = [
    b"POST /faye HTTP/1.1\r\nHost: 127.0.0.1:9292\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n"
    % len(_FORM)
    + _FORM,
    b"POST /faye HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    b"content-length: 2\r\nconnection: keep-alive\r\norigin: http://a.example\r\n\r\n[]",
    b"GET /faye?message=%5B%5D&jsonp=cb HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n"
    b"User-Agent: curl/8.5.0\r\nX-Obs-Text: caf\xe9\r\nX-Spaces: a \t b \t\r\n\r\n",
    b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: Close\r\n\r\n",
    b"POST /faye HTTP/1.1\r\nHost:x\r\nContent-Length:\t05 \r\nX-Empty:\r\n\r\nhello",
]


@pytest.mark.parametrize("raw", _COMMON)
def test_common_shapes_are_taken(raw: bytes) -> None:
    taken = parse(raw, _MAX_HEAD, _MAX_BODY)
    assert taken is not None
    assert taken.size == len(raw)
    assert check_stream(raw) == 1
    assert check_stream(raw * 3) == (1 if taken.close else 3)


_DECLINED = {
    "content-length and transfer-encoding": b"POST / HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "chunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two equal content-lengths": b"POST / HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n[]",
    "two different content-lengths": b"POST / HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n[]x",
    "content-length list": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\n[]",
    "signed content-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n[]",
    "huge content-length": b"POST / HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 99999999999999999999999\r\n\r\n",
    "whitespace before colon": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 2\r\n\r\n[]",
    "obs-fold": b"POST / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    "bare LF": b"POST / HTTP/1.1\nHost: x\nContent-Length: 2\n\n[]",
    "bare LF ending the head": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\n[]",
    "bare CR": b"POST / HTTP/1.1\r\nHost: x\rContent-Length: 2\r\n\r\n[]",
    "control byte in a value": b"POST / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
    "leading blank line": b"\r\nPOST / HTTP/1.1\r\nHost: x\r\n\r\n",
    "HTTP/1.0": b"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\n[]",
    "no host": b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]",
    "two hosts": b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "expect": b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n[]",
    "upgrade on a POST": b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
    b"Upgrade: websocket\r\n\r\n",
    "upgrade with a body": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
    b"Upgrade: websocket\r\nContent-Length: 0\r\n\r\n",
    "upgrade without connection: upgrade": b"GET / HTTP/1.1\r\nHost: x\r\n"
    b"Upgrade: websocket\r\n\r\n",
    "upgrade with connection: close": b"GET / HTTP/1.1\r\nHost: x\r\n"
    b"Connection: Upgrade, close\r\nUpgrade: websocket\r\n\r\n",
    "two upgrades": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
    b"Upgrade: websocket\r\nUpgrade: h2c\r\n\r\n",
    "an empty upgrade": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ,\r\n\r\n",
    "two connection headers": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
    b"Connection: keep-alive\r\nUpgrade: websocket\r\n\r\n",
    "connection list": b"POST / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n",
    "other method": b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    "absolute-form target": b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "body not all here": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n[]",
    "head not all here": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Len",
}


@pytest.mark.parametrize("raw", list(_DECLINED.values()), ids=list(_DECLINED))
def test_unusual_requests_go_to_h11(raw: bytes) -> None:
    assert parse(raw, _MAX_HEAD, _MAX_BODY) is None
    check_stream(raw)


_HANDSHAKE = (
    b"GET /faye HTTP/1.1\r\nHost: 127.0.0.1:9292\r\nConnection: keep-alive, Upgrade\r\n"
    b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


@pytest.mark.parametrize(
    "raw",
    [
        _HANDSHAKE,
        _HANDSHAKE.replace(b"keep-alive, Upgrade", b"Upgrade"),
        _HANDSHAKE.replace(b"keep-alive, Upgrade", b"upgrade"),
    ],
)
def test_a_websocket_handshake_is_taken_as_an_upgrade(raw: bytes) -> None:
    frame = b"\x81\x85abcd" + bytes(b ^ k for b, k in zip(b"hello", b"abcda", strict=True))
    taken = parse(raw + frame, _MAX_HEAD, _MAX_BODY)
    assert taken is not None
    assert taken.upgrade
    assert not taken.close
    assert taken.size == len(raw)  # the frame after it is the new protocol's
    # h11 yields the same request and pauses, with the frame left over.
    assert check_stream(raw + frame) == 1
    assert check_stream(raw + _COMMON[0]) == 1


def test_limits_send_requests_to_h11() -> None:
    raw = _COMMON[0]
    head = raw.index(b"\r\n\r\n") + 4
    assert parse(raw, head, _MAX_BODY) is not None
    assert parse(raw, head - 1, _MAX_BODY) is None  # h11's path answers 431
    assert parse(raw, _MAX_HEAD, len(_FORM)) is not None
    assert parse(raw, _MAX_HEAD, len(_FORM) - 1) is None  # h11's path answers 413


def test_a_repeated_head_is_remembered_not_trusted() -> None:
    parser = FastParser(_MAX_HEAD, _MAX_BODY)
    first = parser.parse(_COMMON[1])
    again = parser.parse(_COMMON[1])
    assert first is not None
    assert again is not None
    assert again.request is first.request
    # One byte different: parsed afresh (here: declined).
    assert parser.parse(_COMMON[1].replace(b"host: x", b"host : x")) is None


def test_may_complete() -> None:
    assert may_complete(b"", _MAX_HEAD) is False
    assert may_complete(b"POST /faye HTTP/1.1\r\nHost: x\r\n", _MAX_HEAD)
    assert may_complete(b"P", _MAX_HEAD)
    assert not may_complete(b" POST", _MAX_HEAD)  # h11 refuses it at once
    assert not may_complete(b"POST / HTTP/1.1\nHost: x\n", _MAX_HEAD)  # bare LF
    assert not may_complete(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", _MAX_HEAD)  # complete
    assert not may_complete(b"POST / HTTP/1.1\r\nX: " + b"a" * 100, 50)  # h11: 431


# ------------------------------------------------------------------ the server


def _responses(data: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Every response in ``data``, parsed by h11 as a client would."""
    client = h11.Connection(h11.CLIENT)
    out: list[tuple[int, dict[bytes, bytes], bytes]] = []
    client.receive_data(data)
    client.receive_data(b"")
    for _ in range(100):
        client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        event = client.next_event()
        if isinstance(event, h11.ConnectionClosed):
            return out
        assert isinstance(event, h11.Response), event
        status, headers, body = event.status_code, dict(event.headers), b""
        while not isinstance(event := client.next_event(), h11.EndOfMessage):
            assert isinstance(event, h11.Data), event
            body += event.data
        out.append((status, headers, body))
        if client.our_state is h11.MUST_CLOSE or client.their_state is h11.MUST_CLOSE:
            return out
        client.start_next_cycle()
        if not client.trailing_data[0]:
            return out  # the server closed a kept-alive connection
    raise AssertionError("too many responses")


_PUBLISH = json.dumps([{"channel": "/a/b", "data": {"n": 1}}]).encode()
_CLOSE = b"Connection: close\r\n"


def _published(response: tuple[int, dict[bytes, bytes], bytes]) -> bool:
    status, _, body = response
    return status == 200 and json.loads(body)[0]["successful"] is True


@fail_after(20)
async def test_pipelined_requests_through_both_paths(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config())
    assert server.port is not None
    chunked = (
        b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(_PUBLISH), _PUBLISH)
    )
    stream = (
        raw_post(_PUBLISH)  # fast
        + raw_post(b"not json")  # fast head, answered 400 through h11
        + chunked  # h11's path
        + raw_post(_PUBLISH)  # h11 still holds pipelined bytes
        + b"GET /faye/client.js HTTP/1.1\r\nHost: x\r\n\r\n"  # fast head, static reply
        + raw_post(_PUBLISH, _CLOSE)
    )
    responses = _responses(await raw_exchange(server.port, stream))
    assert [status for status, _, _ in responses] == [200, 400, 200, 200, 200, 200]
    assert all(_published(responses[i]) for i in (0, 2, 3, 5))
    assert b"javascript" in responses[4][1][b"content-type"]
    assert responses[5][1][b"connection"] == b"close"
    assert b"connection" not in responses[0][1]


@fail_after(20)
async def test_back_to_the_fast_path_after_h11(nursery: trio.Nursery) -> None:
    # One request at a time on one connection: h11 answers one that arrived
    # in pieces, then the next whole one is the fast path's again.
    server = await start_server(nursery, make_config())
    assert server.port is not None
    statuses = []
    async with await trio.open_tcp_stream(HOST, server.port) as stream:
        client = h11.Connection(h11.CLIENT)
        for pieces in (
            [raw_post(_PUBLISH)],
            [raw_post(_PUBLISH)[:30], raw_post(_PUBLISH)[30:]],
            [raw_post(_PUBLISH)[:-3], raw_post(_PUBLISH)[-3:]],
            [raw_post(_PUBLISH)],
            [raw_post(_PUBLISH, _CLOSE)],
        ):
            for piece in pieces:
                await stream.send_all(piece)
                await trio.sleep(0.05)
            client.send(h11.Request(method="POST", target="/faye", headers=[("Host", "x")]))
            client.send(h11.EndOfMessage())
            response, body = None, b""
            for _ in range(100):
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    body += event.data
                else:
                    assert isinstance(event, h11.EndOfMessage), event
                    break
            assert response is not None
            statuses.append(response.status_code)
            assert _published((response.status_code, {}, body))
            if client.our_state is h11.MUST_CLOSE or client.their_state is h11.MUST_CLOSE:
                break
            client.start_next_cycle()
        assert await stream.receive_some(65536) == b""  # closed after Connection: close
    assert statuses == [200] * 5


@fail_after(20)
async def test_smuggling_shapes_get_h11_answers(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config())
    assert server.port is not None
    after = raw_post(_PUBLISH, _CLOSE)
    # The fast path leaves these to h11's path, which refuses them; nothing
    # after them is read as a request.
    for name in (
        "content-length and transfer-encoding",
        "whitespace before colon",
        "two hosts",
        "bare CR",
    ):
        responses = _responses(await raw_exchange(server.port, _DECLINED[name] + after))
        assert [status for status, _, _ in responses] == [400], name


@fail_after(20)
async def test_a_fast_request_left_unfinished_times_out(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(header_timeout=0.3))
    assert server.port is not None
    responses = _responses(await raw_exchange(server.port, raw_post(_PUBLISH)[:40]))
    assert [status for status, _, _ in responses] == [408]


class _Slow(AsyncExtension):
    """Waits ``delay`` seconds on every message: the dispatch suspends."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.seen = 0

    async def incoming(self, message: Message, request: object) -> Message | None:
        assert isinstance(request, HttpRequest)
        await trio.sleep(self.delay)
        self.seen += 1
        return message


@fail_after(20)
async def test_a_suspending_dispatch_outlives_the_head_deadline(nursery: trio.Nursery) -> None:
    # The head's deadline stays armed through a dispatch that does not
    # suspend; one that does (here an extension slower than both timeouts)
    # must find it cleared, and answer on the same connection.
    slow = _Slow(0.6)
    server = await start_server(
        nursery, make_config(idle_timeout=0.2, header_timeout=0.2), extensions=[slow]
    )
    assert server.port is not None
    stream = raw_post(_PUBLISH) + raw_post(_PUBLISH, _CLOSE)
    responses = _responses(await raw_exchange(server.port, stream))
    assert [status for status, _, _ in responses] == [200, 200]
    assert all(_published(response) for response in responses)
    assert slow.seen == 2


@fail_after(20)
async def test_an_idle_connection_still_times_out(nursery: trio.Nursery) -> None:
    # After a fast request, the next head wait has its own deadline again.
    server = await start_server(nursery, make_config(idle_timeout=0.3))
    assert server.port is not None
    async with await trio.open_tcp_stream(HOST, server.port) as stream:
        await stream.send_all(raw_post(_PUBLISH))
        received = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                received += chunk
        # one answer, then the server closed the idle connection by itself
        assert [status for status, _, _ in _responses(received)] == [200]


@fail_after(20)
async def test_a_busy_connection_outlives_an_earlier_idle_deadline(nursery: trio.Nursery) -> None:
    # Between fast requests the deadline of an earlier wait stays armed; when
    # it passes before the next request is due, the wait must go on, not end.
    server = await start_server(nursery, make_config(idle_timeout=1.0))
    assert server.port is not None
    async with await trio.open_tcp_stream(HOST, server.port) as stream:
        statuses: list[int] = []
        for _ in range(3):  # at 0, 0.6 and 1.2 s: the first wait's deadline passes
            await stream.send_all(raw_post(_PUBLISH))
            received = b""
            with trio.fail_after(5):
                while not received.endswith(b"}]"):  # the end of a reply's body
                    chunk = await stream.receive_some(65536)
                    assert chunk, f"closed after {statuses}"
                    received += chunk
            statuses += [status for status, _, _ in _responses(received)]
            await trio.sleep(0.6)
        assert statuses == [200, 200, 200]
        received = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                received += chunk
        assert received == b""  # then closed by itself, idle


@fail_after(20)
async def test_a_repeated_head_is_routed_once(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fast path hands back the same request for the same head bytes, and
    # the connection keeps its route; another head is classified again.
    seen: list[bytes] = []

    def counting(request: HttpRequest, config: WireConfig) -> Route:
        seen.append(request.target)
        return classify(request, config)

    monkeypatch.setattr(_http, "classify", counting)
    server = await start_server(nursery, make_config())
    assert server.port is not None
    other = raw_post(_PUBLISH).replace(b"/faye", b"/faye?x=1", 1)
    stream = raw_post(_PUBLISH) * 3 + other + raw_post(_PUBLISH, _CLOSE)
    responses = _responses(await raw_exchange(server.port, stream))
    assert all(_published(response) for response in responses)
    assert len(responses) == 5
    assert seen == [b"/faye", b"/faye?x=1", b"/faye"]
