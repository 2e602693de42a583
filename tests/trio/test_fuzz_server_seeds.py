"""Replay the server fuzz targets' seeds, and check that their checks can fail.

``fuzz/fuzz_server_http.py`` and ``fuzz/fuzz_server_websocket.py`` run the
real server over socketpairs under a mock clock (``fuzz/_server_harness.py``);
``make fuzz`` runs them under libFuzzer. Here every seed (real Faye traffic
recorded by ``fuzz/record_seeds.py``, a few handmade inputs, and the inputs of
crashes found, kept as regression tests) runs once, uninstrumented. Replaying
needs no atheris: the targets import it only to fuzz.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"
TARGETS = {"fuzz_server_http": "server_http", "fuzz_server_websocket": "server_websocket"}


def _seeds(target: str) -> list[Path]:
    return sorted(p for p in (FUZZ_DIR / f"seeds-{target}").iterdir() if p.is_file())


SEEDS = [(module, seed) for module, target in TARGETS.items() for seed in _seeds(target)]


@pytest.fixture(scope="module")
def fuzz() -> Iterator[dict[str, ModuleType]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(FUZZ_DIR))
        names = [*TARGETS, "_server_harness"]
        yield {name: importlib.import_module(name) for name in names}


def _messages(outcome: Any) -> list[dict[str, Any]]:
    return [message for checker in outcome.checkers for message in checker.messages]


def _run(fuzz: dict[str, ModuleType], module: str, data: bytes) -> Any:
    harness = fuzz["_server_harness"]
    if module == "fuzz_server_http":
        return harness.run(data, websocket_good=False)
    target = fuzz[module]
    return harness.run(data, websocket_good=True, prelude=target._upgrade, build=target.build_frame)


def test_there_are_recorded_seeds() -> None:
    http = {p.name for p in _seeds("server_http")}
    websocket = {p.name for p in _seeds("server_websocket")}
    assert {
        "faye-node-long-polling.bin",
        "faye-node-websocket.bin",
        "faye-browser-long-polling.bin",
        "faye-browser-cross-origin.bin",
        "faye-browser-callback-polling.bin",
    } <= http
    assert {"faye-node-websocket-raw.bin", "faye-node-websocket-frames.bin"} <= websocket


@pytest.mark.parametrize(("module", "seed"), SEEDS, ids=lambda v: getattr(v, "name", v))
def test_seed(fuzz: dict[str, ModuleType], module: str, seed: Path) -> None:
    fuzz[module].test_one_input(seed.read_bytes())


@pytest.mark.parametrize(
    "data", [b"", b"\x00", b"\xff\xfe" * 8, bytes(range(256)), b"\xff\xfe\x80" + bytes(range(64))]
)
@pytest.mark.parametrize("module", list(TARGETS))
def test_odd_inputs(fuzz: dict[str, ModuleType], module: str, data: bytes) -> None:
    fuzz[module].test_one_input(data)


@pytest.mark.parametrize(("module", "seed"), [s for s in SEEDS if s[1].name.startswith("faye-")])
def test_recorded_sessions_replay_for_real(
    fuzz: dict[str, ModuleType], module: str, seed: Path
) -> None:
    # The recorded client ids are the ones the harness hands out, so the
    # replayed session subscribes and gets its own message back: the seeds
    # reach the server's delivery paths, not only its error replies.
    outcome = _run(fuzz, module, seed.read_bytes())
    messages = _messages(outcome)
    assert not [m for m in messages if m.get("successful") is False]
    channels = {m.get("channel") for m in messages if m.get("successful")}
    assert {"/meta/subscribe", "/chat/room"} <= channels
    assert any(m.get("data", {}).get("text") == "hello" for m in messages if "data" in m)
    assert {"n": len(fuzz["_server_harness"].segments(seed.read_bytes()))} in outcome.good_received


def test_segments_round_trip(fuzz: dict[str, ModuleType]) -> None:
    harness = fuzz["_server_harness"]
    parts = [
        harness.Segment(0, b"GET / HTTP/1.1\r\n"),
        harness.Segment(3, b"x", close=2, jump=7, build=True),
        harness.Segment(1, b"", close=1),
    ]
    assert harness.segments(harness.encode(parts)) == parts
    with pytest.raises(ValueError, match="separator"):
        harness.encode([harness.Segment(0, b"a\xff\xfeb")])


def test_build_frame(fuzz: dict[str, ModuleType]) -> None:
    ws = fuzz["fuzz_server_websocket"]
    assert ws.build_frame(ws.describe(1, b"hi", masked=False)) == b"\x81\x02hi"
    assert ws.build_frame(b"\x81\x03hi") == b"\x81\x82" + ws.KEYS[1] + ws.mask(b"hi", ws.KEYS[1])
    assert ws.build_frame(b"\x82\x08" + b"a")[:4] == b"\x82\x7e\x00\x01"  # forced 16-bit length
    assert ws.build_frame(b"\x81\x18" + b"ab")[:2] == b"\x81\x03"  # claims one byte more
    assert len(ws.build_frame(b"\x81\xc0" + b"x" * 64)) == 4 + ws.MAX_BUILT  # repeated, cut


# The checks themselves: each must fail on what it is there to catch.


def _checker(fuzz: dict[str, ModuleType]) -> Any:
    checker = fuzz["_server_harness"].Checker("s3cret")
    checker.sent(b"GET /faye HTTP/1.1\r\nHost: x\r\n\r\n")
    return checker


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 400 Bad\r\nContent-Length: 6\r\n\r\ns3cret",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\nHTTP/1.1 200 OK\r\n",
    ],
)
def test_checker_refuses(fuzz: dict[str, ModuleType], response: bytes) -> None:
    harness = fuzz["_server_harness"]
    checker = _checker(fuzz)
    with pytest.raises((AssertionError, harness.h11.RemoteProtocolError)):
        checker.received(response, client_eof=False)


def test_checker_accepts_a_bayeux_reply(fuzz: dict[str, ModuleType]) -> None:
    checker = _checker(fuzz)
    body = b'[{"channel":"/meta/connect","successful":true}]'
    checker.received(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body),
        client_eof=False,
    )
    assert checker.statuses == [200]
    assert checker.messages == [{"channel": "/meta/connect", "successful": True}]


def test_checker_counts_unanswered_requests(fuzz: dict[str, ModuleType]) -> None:
    checker = _checker(fuzz)
    assert checker.owes_answers()
    checker.received(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", client_eof=False)
    assert not checker.owes_answers()
    checker.sent(b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[")
    assert not checker.owes_answers()  # not sent whole yet
    checker.sent(b"]")
    assert checker.owes_answers()


@pytest.mark.parametrize(
    "frames",
    [
        b"\x81\x82\x00\x00\x00\x00[]",  # masked: servers never mask
        b"\x88\x02\x03\xed",  # close code 1005 on the wire
        b"\x88\x02\x03\xe8\x81\x02[]",  # a frame after a close frame
        b"\x81\x02{}",  # a text message that is not a JSON array
        b"\x82\x02[]",  # a binary frame
        b"\x01\x02[]",  # a fragment
    ],
)
def test_checker_refuses_frames(fuzz: dict[str, ModuleType], frames: bytes) -> None:
    harness = fuzz["_server_harness"]
    checker = harness.Checker("s3cret")
    checker.sent(fuzz["fuzz_server_websocket"].UPGRADE)
    upgraded = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    checker.received(upgraded, client_eof=False)
    assert checker.statuses == [101]
    with pytest.raises(AssertionError):
        checker.received(frames, client_eof=False)


# Bugs the harness found, each also a seed (fuzz/seeds-*/regression-*.bin).


def _regression(name: str) -> bytes:
    return next(p for _, p in SEEDS if p.name == f"regression-{name}.bin").read_bytes()


def test_regression_ping_after_the_server_closed(fuzz: dict[str, ModuleType]) -> None:
    # A disconnect from another connection ends the session: the server sends
    # close 1000 on its stream. A ping arriving after that made wsproto raise
    # (no pong may follow a close frame); now it is ignored.
    outcome = _run(fuzz, "fuzz_server_websocket", _regression("ping-after-close"))
    assert outcome.checkers[0].close_codes == [1000]


def test_regression_eventsource_over_http_1_0(fuzz: dict[str, ModuleType]) -> None:
    # Events are HTTP/1.1 chunks: an HTTP/1.0 client is refused, instead of
    # reading chunk sizes inside a body framed by the connection's close.
    outcome = _run(fuzz, "fuzz_server_http", _regression("eventsource-http10"))
    assert outcome.checkers[1].statuses == [400]


def test_regression_jsonp_callback_is_ascii(fuzz: dict[str, ModuleType]) -> None:
    # U+017F matched [a-z] under Unicode case folding; Faye's grammar (and
    # JavaScript's) is ASCII.
    outcome = _run(fuzz, "fuzz_server_http", _regression("jsonp-unicode-callback"))
    assert outcome.checkers[0].statuses == [400]
