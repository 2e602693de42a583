"""The WebSocket endpoint's own handshake and unmasking agree with wsproto's.

``bayeux_trio.server._websocket`` checks upgrade requests itself and unmasks whole
client text frames with an integer XOR; both must give exactly what wsproto
gives. These tests compare them with wsproto on many generated inputs
(seeded, so a failure repeats).
"""

from __future__ import annotations

import itertools
import os
import random  # noqa: TID251 - seeded, repeatable test inputs; nothing secret
from typing import Any

import h11
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import AcceptConnection, CloseConnection, Message
from wsproto.frame_protocol import XorMaskerSimple

from bayeux_core.wire import HttpRequest
from bayeux_trio.server._websocket import (
    _INT_XOR_MAX,
    FrameReader,
    HandshakeRefused,
    _unmask_text,
    accept_response,
)

# ------------------------------------------------------------- handshake


def wsproto_response(request: h11.Request) -> bytes | None:
    """What wsproto's server handshake writes for AcceptConnection(), or None.

    ``initiate_upgrade_connection`` rebuilds the request as a GET, so wsproto
    never sees the method there; its own parsing path refuses anything but
    GET, and so do we (RFC 6455 section 4.2.1, and Faye).
    """
    if request.method != b"GET":
        return None
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.initiate_upgrade_connection(list(request.headers), request.target)
        list(ws.events())
        return ws.send(AcceptConnection())
    except Exception:  # RemoteProtocolError, UnicodeError, h11 errors: all refusals
        return None


def ours(request: h11.Request) -> bytes | None:
    try:
        return accept_response(
            HttpRequest(request.method, request.target, list(request.headers), request.http_version)
        )
    except HandshakeRefused:
        return None


GOOD = [
    (b"host", b"127.0.0.1:9292"),
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"sec-websocket-version", b"13"),
]

VALUES: dict[bytes, list[bytes]] = {
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
    b"sec-websocket-key": [b"dGhlIHNhbXBsZSBub25jZQ==", b"x", b"\xe9\xe9", b""],
    b"sec-websocket-version": [b"13", b"8", b"13, 8", b""],
    b"sec-websocket-extensions": [b"permessage-deflate", b"a, b; c=1", b"\xff"],
    b"sec-websocket-protocol": [b"chat", b"a, b", b"\xfe"],
    b"origin": [b"http://example.com"],
    b"content-length": [b"0"],
}


def random_request(rng: random.Random) -> h11.Request | None:
    headers = [h for h in GOOD if rng.random() > 0.15]
    for _ in range(rng.randrange(4)):
        name = rng.choice(list(VALUES))
        headers.insert(rng.randrange(len(headers) + 1), (name, rng.choice(VALUES[name])))
    rng.shuffle(headers)
    # h11 gives names in lower case, but the raw case is kept for writing
    headers = [(n.title() if rng.random() < 0.3 else n, v) for n, v in headers]
    method = b"GET" if rng.random() < 0.9 else rng.choice([b"POST", b"HEAD", b"get"])
    version = b"1.1" if rng.random() < 0.85 else b"1.0"
    target = rng.choice([b"/faye", b"/faye?x=1", b"/a/b%20c", b"*"])
    try:
        return h11.Request(method=method, target=target, headers=headers, http_version=version)
    except h11.LocalProtocolError:
        return None  # h11 would not have parsed such a request in the first place


def test_handshake_matches_wsproto_on_the_usual_request() -> None:
    request = h11.Request(method=b"GET", target=b"/faye", headers=GOOD)
    expected = wsproto_response(request)
    assert expected is not None
    assert expected.startswith(b"HTTP/1.1 101 ")
    assert ours(request) == expected


def test_handshake_refusals_match_wsproto() -> None:
    for drop in range(len(GOOD)):
        headers = GOOD[:drop] + GOOD[drop + 1 :]
        # HTTP/1.0: h11 lets a 1.0 request through without Host
        request = h11.Request(method=b"GET", target=b"/faye", headers=headers, http_version=b"1.0")
        assert ours(request) is None
        assert wsproto_response(request) is None


def test_handshake_matches_wsproto_on_generated_requests() -> None:
    rng = random.Random(6)
    accepted = refused = 0
    for _ in range(4000):
        request = random_request(rng)
        if request is None:
            continue
        expected = wsproto_response(request)
        assert ours(request) == expected, request
        if expected is None:
            refused += 1
        else:
            accepted += 1
    # The generator must exercise both outcomes, or the comparison says little.
    assert accepted > 300
    assert refused > 300


# -------------------------------------------------------------- unmasking


def chunks_of(data: bytes, cuts: list[int]) -> list[bytearray]:
    edges = [0, *sorted(cuts), len(data)]
    return [bytearray(data[a:b]) for a, b in itertools.pairwise(edges)]


def test_unmasking_matches_wsproto() -> None:
    """A whole text frame's payload, unmasked here, is what wsproto's masker gives."""
    rng = random.Random(4)
    sizes = [0, 1, 2, 3, 4, 5, 7, 125, 126, 127, 4095, 4096, 4097]
    sizes += [_INT_XOR_MAX - 1, _INT_XOR_MAX, _INT_XOR_MAX + 1, 65535, 65536, 70000]
    sizes += [rng.randrange(70001) for _ in range(10)]
    for size in sizes:
        key = os.urandom(4)
        text = "".join(rng.choice("ab\u00e9\u20ac") for _ in range(size)).encode()
        masked = bytes(XorMaskerSimple(key).process(bytearray(text)))
        assert _unmask_text(key, masked) == text.decode()
        # Not UTF-8: left to wsproto, which refuses it with its own close code.
        bad = bytes(XorMaskerSimple(key).process(bytearray(text + b"\xff")))
        assert _unmask_text(key, bad) is None


# ---------------------------------------------------- the reader's fast path


def raw_frame(
    rng: random.Random,
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    form: int | None = None,
) -> bytes:
    """One client frame, valid or not, built by hand."""
    size = len(payload)
    if form is None:
        form = 0 if size < 126 else 126 if size < 65536 else 127
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if masked else 0
    if form == 0:
        head += bytes([mask_bit | size])
    elif form == 126:
        head += bytes([mask_bit | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + size.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = rng.randbytes(4)
    return head + key + bytes(XorMaskerSimple(key).process(bytearray(payload)))


def text_of(rng: random.Random, size: int) -> bytes:
    return "".join(rng.choice('ab{}"\u00e9\u20ac\U0001f600') for _ in range(size)).encode()


def random_stream(rng: random.Random) -> bytes:
    """Client frames, mostly whole text frames, with every kind of oddity."""
    out = b""
    for _ in range(rng.randrange(1, 8)):
        pick = rng.random()
        size = rng.choice([0, 1, 5, 125, 126, 127, 300, 9000, 65535, 65536, 70000])
        if size > 1000 and rng.random() < 0.7:
            size = rng.randrange(200)
        if pick < 0.55:
            out += raw_frame(rng, 1, text_of(rng, size))
        elif pick < 0.65:  # a fragmented text message, maybe with a ping inside
            data = text_of(rng, max(size, 4))
            cuts = sorted({rng.randrange(1, len(data)) for _ in range(rng.randrange(1, 4))})
            pieces = [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]
            for i, piece in enumerate(pieces):
                last = i == len(pieces) - 1
                out += raw_frame(rng, 0 if i else 1, piece, fin=last)
                if not last and rng.random() < 0.3:
                    out += raw_frame(rng, 9, b"in")
        elif pick < 0.7:
            out += raw_frame(rng, 9, rng.randbytes(rng.randrange(5)))
        elif pick < 0.73:
            out += raw_frame(rng, 10, b"")
        elif pick < 0.76:
            out += raw_frame(rng, 2, rng.randbytes(size % 200))
        elif pick < 0.79:  # bad UTF-8, whole or split by a fragment
            out += raw_frame(rng, 1, b"ok" + rng.choice([b"\xff", b"\xed\xa0\x80", b"\xc3"]))
        elif pick < 0.81:
            out += raw_frame(rng, 1, text_of(rng, 10), rsv=rng.choice([1, 2, 4]))
        elif pick < 0.83:
            out += raw_frame(rng, 1, text_of(rng, 10), masked=False)
        elif pick < 0.85:  # a length not in its shortest form
            out += raw_frame(rng, 1, text_of(rng, rng.randrange(126)), form=rng.choice([126, 127]))
        elif pick < 0.87:
            out += raw_frame(rng, 0, b"stray continuation")
        elif pick < 0.89:
            out += raw_frame(rng, 1, b"open", fin=False)
            if rng.random() < 0.5:
                out += raw_frame(rng, 0, b"more", fin=False)
            out += raw_frame(rng, 1, b"text again")
        elif pick < 0.91:
            out += raw_frame(rng, 9, b"x", fin=False)
        elif pick < 0.93:
            out += raw_frame(rng, rng.choice([3, 7, 11, 15]), b"")
        elif pick < 0.96:
            code = rng.choice([1000, 1001, 999, 1005, 3000, 5000])
            out += raw_frame(rng, 8, code.to_bytes(2, "big") + b"bye")
        else:
            out += raw_frame(rng, 8, b"")
    return out


def normalized(events: list[object]) -> list[tuple[str, object]]:
    """Whole messages and other events; a message cut short by a close is dropped.

    That is what the endpoint acts on: it joins parts and handles a message
    only once it is finished.
    """
    out: list[tuple[str, object]] = []
    parts: list[Any] = []  # str or bytes, as the message is text or binary
    for event in events:
        if isinstance(event, str):
            assert not parts
            out.append(("TextMessage", event))
        elif isinstance(event, Message):
            parts.append(event.data)
            if event.message_finished:
                whole = "".join(parts) if isinstance(event.data, str) else b"".join(parts)
                out.append((type(event).__name__, whole))
                parts = []
        elif isinstance(event, CloseConnection):
            parts = []
            # A UTF-8 error's reason names the byte's position in the chunk
            # that wsproto was decoding, which depends on how bytes arrived.
            reason = (event.reason or "").split(" in position")[0]
            out.append(("CloseConnection", (event.code, reason)))
        else:
            out.append((type(event).__name__, event))
    return out


def reference_events(data: bytes, cuts: list[int], hangup: bool) -> tuple[list[object], str]:
    ws = Connection(ConnectionType.SERVER)
    events: list[object] = []
    for chunk in chunks_of(data, cuts):
        ws.receive_data(bytes(chunk))
        events.extend(ws.events())
    if hangup:
        ws.receive_data(None)
        events.extend(ws.events())
    return events, ws.state.name


def reader_events(
    data: bytes, cuts: list[int], hangup: bool, hold: int
) -> tuple[list[object], str]:
    reader = FrameReader(hold)
    events: list[object] = []
    for chunk in chunks_of(data, cuts):
        events.extend(reader.feed(bytes(chunk)))
    if hangup:
        events.extend(reader.feed(None))
    return events, reader.state.name


def test_reader_gives_what_wsproto_gives() -> None:
    rng = random.Random(66)
    fast = 0
    for _ in range(600):
        data = random_stream(rng)
        cuts = [rng.randrange(len(data) + 1) for _ in range(rng.randrange(5))]
        if rng.random() < 0.2:  # byte by byte, for a short stream
            cuts = list(range(1, min(len(data), 200)))
        hangup = rng.random() < 0.3
        hold = rng.choice([100, 65536, 1 << 20])
        theirs, their_state = reference_events(data, cuts, hangup)
        mine, my_state = reader_events(data, cuts, hangup, hold)
        assert normalized(mine) == normalized(theirs), (data[:200], cuts)
        assert my_state == their_state
        fast += sum(isinstance(e, str) for e in mine)
    assert fast > 400  # the fast path was taken, often


def test_reader_needs_no_wsproto_for_whole_text_frames() -> None:
    rng = random.Random(7)
    reader = FrameReader(1 << 20)
    texts = [text_of(rng, n) for n in (0, 3, 125, 126, 3000)]
    data = b"".join(raw_frame(rng, 1, text) for text in texts)
    events = reader.feed(data[:10]) + reader.feed(data[10:])
    assert events == [text.decode() for text in texts]
    assert reader._ws is None  # no wsproto connection was made: ~1.7 KB saved
    assert reader.state.name == "OPEN"
