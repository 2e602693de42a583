"""Byte framing for pushed messages, built once and shared by every recipient.

Server-to-client WebSocket frames are not masked, and we negotiate no
compression, so one text frame is the same bytes for every connection: a
publish to ten thousand WebSocket subscribers is framed once.
"""

from __future__ import annotations

__all__ = ["chunk", "ws_text_frame"]


def ws_text_frame(payload: bytes) -> bytes:
    """A single, final, unmasked WebSocket text frame (RFC 6455 section 5.2)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk (EventSource streams use chunked encoding)."""
    return b"%x\r\n%b\r\n" % (len(data), data)
