"""One transport contract, three transports: a plaintext socket, memory streams, TLS.

:func:`bayeux_trio.server._output.open_output` gives a plaintext
``trio.SocketStream`` a :class:`SocketOutput` (the stdlib socket, taken from
trio) and any other stream a :class:`StreamOutput`; the connections rely on
the same behaviour from both. Each test runs on a socketpair, on a memory
stream pair, and on ``trio.SSLStream`` over a memory stream pair (a trustme
certificate).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import trio
import trio.testing
import trustme

from bayeux_trio.server._output import (
    DrainCount,
    Output,
    SocketOutput,
    StreamOutput,
    open_output,
)

KINDS = ["socket", "memory", "tls"]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@dataclass
class Link:
    output: Output
    #: the peer's end
    peer: trio.abc.Stream
    count: DrainCount
    nursery: trio.Nursery
    broken: list[str]


async def _tls_pair(ca: trustme.CA) -> tuple[trio.abc.Stream, trio.abc.Stream]:
    client_raw, server_raw = trio.testing.memory_stream_pair()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("bayeux.test").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    server = trio.SSLStream(server_raw, server_context, server_side=True, https_compatible=True)
    client = trio.SSLStream(
        client_raw, client_context, server_hostname="bayeux.test", https_compatible=True
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        nursery.start_soon(client.do_handshake)
    return server, client


@pytest.fixture(params=KINDS)
async def link(
    request: pytest.FixtureRequest, ca: trustme.CA, nursery: trio.Nursery
) -> AsyncIterator[Link]:
    kind: str = request.param
    ours: trio.abc.Stream
    if kind == "socket":
        a, b = socket.socketpair()
        ours = trio.SocketStream(trio.socket.from_stdlib_socket(b))
        peer: trio.abc.Stream = trio.SocketStream(trio.socket.from_stdlib_socket(a))
    elif kind == "memory":
        peer, ours = trio.testing.memory_stream_pair()
    else:
        ours, peer = await _tls_pair(ca)
    count = DrainCount()
    output = open_output(ours, max_buffer=100_000, count=count)
    broken: list[str] = []
    output.on_broken = lambda: broken.append("broken")
    if kind == "socket":
        assert isinstance(output, SocketOutput)
        assert output.socket is not None
        assert isinstance(ours, trio.SocketStream)
        assert ours.socket.fileno() == -1  # the socket now belongs to the output
    else:
        assert isinstance(output, StreamOutput)
        assert output.socket is None
    try:
        yield Link(output, peer, count, nursery, broken)
    finally:
        await output.aclose()
        await trio.aclose_forcefully(peer)


async def read_exactly(stream: trio.abc.Stream, size: int) -> bytes:
    data = bytearray()
    for _ in range(10_000):
        if len(data) >= size:
            break
        chunk = await stream.receive_some(65536)
        assert chunk, "EOF too soon"
        data += chunk
    return bytes(data)


async def read_to_eof(stream: trio.abc.Stream) -> bytes:
    data = bytearray()
    for _ in range(10_000):
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


@pytest.mark.parametrize("size", [10, 300_000])
async def test_flush_sends_everything_in_order(link: Link, size: int) -> None:
    """Small: gone at once (or by one writer); large: the rest drains meanwhile."""
    link.output.max_buffer = 10 * size
    parts = [bytes([n % 251]) * (size // 10) for n in range(10)]
    for part in parts:
        assert link.output.write(part)
    link.output.flush(link.nursery)
    received = await read_exactly(link.peer, size)
    assert received == b"".join(parts)
    with trio.fail_after(10):
        await link.output.wait_flushed()
    assert link.output.pending == 0
    assert link.count.active == 0
    assert not link.output.broken


async def test_wait_flushed_sends_what_no_flush_sent(link: Link) -> None:
    link.output.write(b"hello")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.output.wait_flushed)
        assert await read_exactly(link.peer, 5) == b"hello"
    assert link.count.active == 0


async def test_receive_and_the_end_of_input(link: Link) -> None:
    await link.peer.send_all(b"ping")
    assert await link.output.receive() == b"ping"
    await trio.aclose_forcefully(link.peer)
    with trio.fail_after(10):
        # (TLS too: https_compatible takes a close without close_notify as EOF.)
        assert await link.output.receive() == b""


async def test_wake_ends_a_read_in_progress(link: Link) -> None:
    async def wake_soon() -> None:
        await trio.testing.wait_all_tasks_blocked()
        link.output.wake()

    link.nursery.start_soon(wake_soon)
    with trio.fail_after(10), pytest.raises(trio.BrokenResourceError):
        await link.output.receive()


async def test_a_reader_too_far_behind_is_cut_off_once(link: Link) -> None:
    link.output.max_buffer = 1000
    assert link.output.write(b"x" * 600)
    assert not link.output.write(b"x" * 600)
    assert link.output.broken
    assert link.output.pending == 0
    assert not link.output.write(b"more")
    link.output.fail()
    assert link.broken == ["broken"]


async def test_send_eof_then_close(link: Link, request: pytest.FixtureRequest) -> None:
    kind = request.node.callspec.params["link"]
    link.output.write(b"bye")
    await link.output.wait_flushed()
    await link.output.send_eof()
    if kind != "tls":
        # A half-close: the peer reads what was sent, then EOF, and may
        # still send (lingering close).
        assert await read_to_eof(link.peer) == b"bye"
        await link.peer.send_all(b"late")
        assert await link.output.receive() == b"late"
    else:
        assert await read_exactly(link.peer, 3) == b"bye"  # TLS: no half-close
    await link.output.aclose()
    assert await read_to_eof(link.peer) == b""


async def test_a_write_to_a_closed_peer_breaks_the_output(link: Link) -> None:
    await trio.aclose_forcefully(link.peer)
    with trio.fail_after(10):
        for _ in range(100):
            if not link.output.write(b"x" * 10_000):
                break
            link.output.flush(link.nursery)
            await link.output.wait_flushed()
    assert link.output.broken
    assert link.broken == ["broken"]
    assert link.count.active == 0
