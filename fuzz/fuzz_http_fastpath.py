"""Fuzz target: the HTTP fast path against h11, on arbitrary byte streams.

Invariant (issue 6: h11 stays the parser of record): for any bytes a client
may send on one connection, :class:`bayeux_trio.server._http_fast.FastParser`
either declines, or yields exactly what h11 yields for the same bytes: the
same request (method, target, version, and the headers as h11's lower-case
(name, value) pairs, in order), the same body, the same framing (where the
next request starts) and the same decision to close after the response. Requests are
taken one after the other, as the server does for pipelined requests, with a
placeholder response in between, so each later request is compared with what
h11 yields in its next cycle; a request the fast path takes as an upgrade
(the WebSocket handshake) must be one after which h11 pauses, leaving the
same bytes to the new protocol, and ends the stream; the parser's memory of the last head is
exercised whenever a head repeats. When the parser declines a buffer it says
``may_complete`` of, h11 must be waiting for data on it too (the server
then waits instead of handing over).

Each input runs twice: with the server's default limits, and with small
ones taken from the last byte, so the head and body limits are reached.

Run it with ``python fuzz/fuzz_http_fastpath.py -max_total_time=60``
(libFuzzer flags pass through). Its seeds are request streams in
``fuzz/seeds-http_fastpath/`` (replayed by ``tests/trio/test_http_fastpath.py``),
its dictionary ``fuzz/http_fastpath.dict``. See ``fuzz/README.md``.
"""

from __future__ import annotations

import sys

import h11

from bayeux_core.wire import HttpRequest
from bayeux_trio.server._http_fast import FastParser, FastRequest, may_complete, parse

_MAX_HEAD = 8192
_MAX_BODY = 1024 * 1024
#: requests taken from one stream at most (an input is at most a few KB)
_MAX_REQUESTS = 64
_RESPONSE = h11.Response(status_code=200, headers=[(b"content-length", b"0")], reason=b"OK")


def check_stream(stream: bytes, max_head: int, max_body: int) -> int:
    """Compare the fast path with h11 on ``stream``; the requests it took."""
    parser = FastParser(max_head, max_body)
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
    conn.receive_data(stream)
    rest = stream
    for count in range(_MAX_REQUESTS):
        taken = parser.parse(rest)
        if taken is None:
            assert parse(rest, max_head, max_body) is None
            if may_complete(rest, max_head):
                # Waiting is only right if h11 would wait as well.
                assert conn.next_event() is h11.NEED_DATA
            return count
        _check_request(conn, rest, taken, max_head, max_body)
        # The memory of the last head changes nothing.
        assert parse(rest, max_head, max_body) == taken
        if taken.upgrade:
            # The rest of the stream belongs to the new protocol.
            assert conn.next_event() is h11.PAUSED
            return count + 1
        rest = rest[taken.size :]
        conn.send(_RESPONSE)
        conn.send(h11.EndOfMessage())
        assert (conn.our_state is h11.MUST_CLOSE) == taken.close
        if taken.close:
            return count + 1
        conn.start_next_cycle()
    return _MAX_REQUESTS


def _check_request(
    conn: h11.Connection, data: bytes, taken: FastRequest, max_head: int, max_body: int
) -> None:
    event = conn.next_event()
    assert isinstance(event, h11.Request), event
    request = taken.request
    assert type(request) is HttpRequest
    assert request.method == event.method, (request, event)
    assert request.target == event.target, (request, event)
    assert request.http_version == event.http_version, (request, event)
    assert list(request.headers) == list(event.headers), (request, event)
    assert not conn.they_are_waiting_for_100_continue
    body = b""
    event = conn.next_event()
    while isinstance(event, h11.Data):
        body += event.data
        event = conn.next_event()
    assert isinstance(event, h11.EndOfMessage), event
    assert not event.headers
    assert taken.body == body
    assert data[taken.size - len(body) : taken.size] == body
    # The limits the server enforces on h11's path hold: head size, body size.
    assert taken.size - len(body) <= max_head
    assert len(body) <= max_body
    if taken.upgrade:
        assert not taken.close
        # h11 waits for our answer to the proposal (a state h11 does not export)
        assert repr(conn.their_state) == "MIGHT_SWITCH_PROTOCOL", conn.their_state
    else:
        assert conn.their_state is (h11.MUST_CLOSE if taken.close else h11.DONE)
    assert conn.trailing_data == (data[taken.size :], False)


def test_one_input(data: bytes) -> None:
    """One fuzz input; each invariant is an ``assert``."""
    check_stream(data, _MAX_HEAD, _MAX_BODY)
    knob = data[-1] if data else 0
    check_stream(data, 16 + 4 * (knob & 0x3F), knob >> 6)


def _instrument() -> None:
    """Coverage for the fast path and for h11's request parsing."""
    import types

    import atheris
    import h11._headers
    import h11._readers
    import h11._receivebuffer

    from bayeux_trio.server import _http_fast

    for module in (_http_fast, h11._readers, h11._headers, h11._receivebuffer):
        for value in list(vars(module).values()):
            members = [value]
            if isinstance(value, type) and value.__module__ == module.__name__:
                members = list(vars(value).values())
            for member in members:
                if isinstance(member, types.FunctionType) and member.__module__ == module.__name__:
                    atheris.instrument_func(member)


if __name__ == "__main__":
    import _runner

    # Its own seeds (request streams, not bodies) and dictionary; h11 and the
    # fast path are instrumented here, the core by the runner.
    args = list(sys.argv)
    if all(arg.startswith("-") for arg in args[1:]):
        corpus = _runner.FUZZ_DIR / "corpus-http_fastpath"
        corpus.mkdir(exist_ok=True)
        args += [str(corpus), str(_runner.FUZZ_DIR / "seeds-http_fastpath")]
    if not any(arg.startswith("-dict=") for arg in args):
        args.append(f"-dict={_runner.FUZZ_DIR / 'http_fastpath.dict'}")
    _instrument()
    _runner.run("http_fastpath", test_one_input, args)
