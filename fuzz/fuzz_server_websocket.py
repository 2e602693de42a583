"""Fuzz target: arbitrary bytes into the server's WebSocket connections.

As ``fuzz_server_http.py``, but each client connection first makes a valid
upgrade (:data:`UPGRADE`), so the input's bytes are WebSocket frames: masked
or not, fragmented, control frames, bad opcodes and reserved bits, invalid
UTF-8, lying lengths, oversized messages. A part whose control byte has bit 7
set is a frame description for :func:`build_frame` (so that lengths and masks
stay right while the fuzzer mutates the JSON inside), any other part is sent
as it is. The well-behaved client is a WebSocket client too. The invariants
are ``fuzz/_server_harness.py``'s: every server frame parses (unmasked, valid
text, a valid close code, nothing after a close), every text message is a
JSON array of objects, no connection outlives its client, no leaked id or
endpoint, and the well-behaved client still gets its messages.

Run it with ``python fuzz/fuzz_server_websocket.py -max_total_time=60``
(libFuzzer flags pass through). See ``fuzz/README.md``.
"""

from __future__ import annotations

import sys

import _server_harness

UPGRADE = (
    b"GET /faye HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
#: masking keys, picked by bits 1-2 of a description's second byte
KEYS = (b"\0\0\0\0", b"\x37\xfa\x21\x3d", b"\xff\xff\xff\xff", b"\x80\x00\x00\x01")
#: how often the payload is repeated, by bits 5-7 (1024 times reaches any limit)
REPEAT = (1, 1, 1, 2, 16, 128, 1024, 1)
#: built frames are cut to this size (four times the server's message limit)
MAX_BUILT = 4 * _server_harness.CONFIG.max_ws_message


def mask(data: bytes, key: bytes) -> bytes:
    if key == KEYS[0] or not data:
        return data
    size = len(data)
    stream = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")


def build_frame(spec: bytes) -> bytes:
    """A frame from a description.

    Byte 0 is the frame's first byte as it is (FIN, RSV1-3, opcode). Byte 1:
    bit 0 masks the payload with the key ``KEYS[bits 1-2]``; bits 3-4 choose
    the length field (0 the shortest, 1 always 16 bits, 2 always 64 bits, 3
    the shortest but claiming one byte more than follows); bits 5-7 repeat the
    payload ``REPEAT[...]`` times. The rest is the payload, unmasked.
    """
    if len(spec) < 2:
        return spec
    first, flags = spec[0], spec[1]
    payload = (spec[2:] * REPEAT[flags >> 5])[:MAX_BUILT]
    form = (flags >> 3) & 3
    claimed = len(payload) + (form == 3)
    masked = 0x80 if flags & 1 else 0
    if form == 2:
        length = bytes([masked | 127]) + claimed.to_bytes(8, "big")
    elif form == 1 or claimed >= 126:
        length = bytes([masked | 126]) + claimed.to_bytes(2, "big")
    else:
        length = bytes([masked | claimed])
    if not masked:
        return bytes([first]) + length + payload
    key = KEYS[(flags >> 1) & 3]
    return bytes([first]) + length + key + mask(payload, key)


def describe(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """The description :func:`build_frame` turns into this frame (zero key)."""
    return bytes([(0x80 if fin else 0) | opcode, 1 if masked else 0]) + payload


def _upgrade(_: int) -> bytes:
    return UPGRADE


def test_one_input(data: bytes) -> None:
    """One fuzz input; each invariant is an ``assert``."""
    _server_harness.run(data, websocket_good=True, prelude=_upgrade, build=build_frame)


if __name__ == "__main__":
    import _runner

    _server_harness.keep_loop()
    _runner.run("server_websocket", test_one_input, sys.argv, server=True)
