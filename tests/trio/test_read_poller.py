"""The hub's read poller (``_output.ReadPoller``): plaintext HTTP connections
wait for their next request on an edge-triggered epoll of the hub's own.

* the server: requests larger than one read, pipelined, are all answered
  (a read that filled its buffer must not wait for another edge); the
  poller registers a connection's socket once and forgets it when the
  connection ends;
* the poller alone, on a socket pair: a wait ends when bytes arrive, on
  cancellation (keeping a report it had not acted on), when the socket is
  forgotten (``ClosedResourceError``), and when the poller stops (later waits
  go through trio).
"""

from __future__ import annotations

import contextvars
import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing

from bayeux_core import Session
from bayeux_trio import BayeuxServer
from bayeux_trio.server import _http
from bayeux_trio.server._reads import ReadPoller

from .helpers import (
    HANDSHAKE,
    HOST,
    HttpClient,
    fail_after,
    make_config,
    post_json,
    raw_exchange,
    raw_post,
    start_server,
    wait_for,
)

SUBSCRIBE = "/meta/subscribe"
CONNECT = "/meta/connect"


async def running_poller(nursery: trio.Nursery) -> ReadPoller:
    """A ReadPoller whose task waits on its epoll."""
    poller = ReadPoller()
    nursery.start_soon(poller.run)
    await trio.testing.wait_all_tasks_blocked()
    return poller


def _publish(size: int) -> bytes:
    return json.dumps([{"channel": "/a/b", "data": "x" * size}]).encode()


@fail_after(20)
async def test_requests_larger_than_a_read_are_all_answered(nursery: trio.Nursery) -> None:
    # Each read takes at most 64 KiB; what stays in the kernel raises no new
    # edge, so the connection must read on before it waits.
    server = await start_server(nursery, make_config())
    assert server.port is not None
    stream = raw_post(_publish(150_000)) * 4 + raw_post(_publish(10), b"Connection: close\r\n")
    received = await raw_exchange(server.port, stream)
    assert received.count(b"HTTP/1.1 200 OK") == 5
    assert received.count(b'"successful":true') == 5


@fail_after(20)
async def test_a_connection_is_registered_once_and_forgotten(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config())
    assert server.port is not None
    reads = server.hub.reads
    async with await trio.open_tcp_stream(HOST, server.port) as stream:
        for _ in range(3):
            await stream.send_all(raw_post(_publish(10)))
            received = b""
            while not received.endswith(b"}]"):
                chunk = await stream.receive_some(65536)
                assert chunk
                received += chunk
        assert len(reads._registered) == 1
        assert len(reads._waiters) == 1  # the connection waits on the poller
    for _ in range(500):  # the server sees the close, then forgets the socket
        if not reads._registered and not reads._waiters:
            break
        await trio.sleep(0.01)
    assert not reads._registered
    assert not reads._waiters


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    left.setblocking(False)
    yield left, right
    left.close()
    right.close()


@fail_after(10)
async def test_a_wait_ends_when_bytes_arrive(
    nursery: trio.Nursery, pair: tuple[socket.socket, socket.socket]
) -> None:
    left, right = pair
    poller = await running_poller(nursery)
    await poller.wait(left)  # registering: what came before counts as ready
    with pytest.raises(BlockingIOError):
        left.recv(10)
    woken = trio.Event()

    async def reader() -> None:
        await poller.wait(left)
        woken.set()

    nursery.start_soon(reader)
    await trio.testing.wait_all_tasks_blocked()
    assert not woken.is_set()
    right.send(b"hello")
    await woken.wait()
    assert left.recv(10) == b"hello"
    # a read that may have left bytes behind does not wait
    right.send(b"more")
    with trio.fail_after(1):
        await poller.wait(left, drained=False)
    assert left.recv(10) == b"more"


@fail_after(10)
async def test_a_wait_is_cancelled_and_then_forgotten(
    nursery: trio.Nursery, pair: tuple[socket.socket, socket.socket]
) -> None:
    left, _ = pair
    poller = await running_poller(nursery)
    await poller.wait(left)
    with trio.move_on_after(0.05) as scope:
        await poller.wait(left)
    assert scope.cancelled_caught
    assert not poller._waiters
    ended: list[BaseException] = []

    async def reader() -> None:
        try:
            await poller.wait(left)
        except trio.ClosedResourceError as exc:
            ended.append(exc)

    nursery.start_soon(reader)
    await trio.testing.wait_all_tasks_blocked()
    poller.forget(left)
    await trio.testing.wait_all_tasks_blocked()
    assert len(ended) == 1
    assert not poller._registered


@fail_after(10)
async def test_a_report_survives_a_wait_cancelled_at_its_checkpoint(
    nursery: trio.Nursery, pair: tuple[socket.socket, socket.socket]
) -> None:
    # A held connect answered while its task is about to read: the wait is
    # cancelled at its checkpoint, and the bytes that arrived meanwhile (a
    # pipelined request) raise no new edge. The next wait must find them.
    left, right = pair
    poller = await running_poller(nursery)
    await poller.wait(left)  # registered
    right.send(b"pipelined")
    await trio.testing.wait_all_tasks_blocked()  # the poller took the edge
    assert poller._ready
    with trio.CancelScope() as scope:
        scope.cancel()
        await poller.wait(left)
    assert scope.cancelled_caught
    with trio.fail_after(1):
        await poller.wait(left)
    assert left.recv(100) == b"pipelined"


@fail_after(10)
async def test_a_descriptor_reused_after_a_close_without_forget_is_registered_again(
    nursery: trio.Nursery,
) -> None:
    poller = await running_poller(nursery)
    old, old_peer = socket.socketpair()
    old.setblocking(False)
    await poller.wait(old)
    fd = old.fileno()
    # Closed without forget: the kernel drops the registration, the poller
    # still lists the descriptor, and the next socket may get its number.
    old.close()
    old_peer.close()
    new, new_peer = socket.socketpair()
    if new.fileno() != fd:
        os.dup2(new.fileno(), fd)
        new.close()
        new = socket.socket(fileno=fd)
    try:
        new.setblocking(False)
        await poller.wait(new)  # a new socket: registered, reported ready
        new_peer.send(b"hello")
        with trio.fail_after(2):  # would wait forever on a stale registration
            await poller.wait(new)
        assert new.recv(10) == b"hello"
        new.close()
        poller.forget(new)  # closed first: what it left is dropped all the same
        assert not poller._registered
    finally:
        new.close()
        new_peer.close()


@fail_after(10)
async def test_waits_go_through_trio_once_the_poller_stops(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    poller = ReadPoller()
    woken = trio.Event()

    async def reader() -> None:
        await poller.wait(left)
        woken.set()

    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as inner:
            inner.start_soon(poller.run)
            await trio.testing.wait_all_tasks_blocked()
            await poller.wait(left)
            outer.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert poller._waiters
            inner.cancel_scope.cancel()
        await woken.wait()  # released when the poller stopped
        # and from now on trio's own wait
        with trio.move_on_after(0.05) as scope:
            await poller.wait(left)
        assert scope.cancelled_caught
        right.send(b"x")
        with trio.fail_after(1):
            await poller.wait(left)


# ------------------------------------------------------ served in place


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, str]]:
    """What each ``_serve_inline`` call returned, and what it left the task."""
    calls: list[tuple[bool, str]] = []
    serve_inline = _http.HttpConnection._serve_inline

    def spy(self: _http.HttpConnection) -> bool:
        served = serve_inline(self)
        calls.append((served, type(self._handed).__name__))
        return served

    monkeypatch.setattr(_http.HttpConnection, "_serve_inline", spy)
    return calls


async def _spied_server(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, **config: Any
) -> tuple[list[tuple[bool, str]], BayeuxServer, int]:
    """A server whose ``_serve_inline`` calls are recorded (see ``_spy``)."""
    calls = _spy(monkeypatch)
    server = await start_server(nursery, make_config(**config))
    assert server.port is not None
    return calls, server, server.port


async def _bayeux(client: HttpClient, messages: object) -> list[dict[str, Any]]:
    response = await client.request(
        "POST",
        "/faye",
        headers=[("content-type", "application/json")],
        body=json.dumps(messages).encode(),
    )
    assert response.status == 200, response
    replies: list[dict[str, Any]] = json.loads(response.body)
    return replies


@fail_after(20)
async def test_requests_are_answered_in_place(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, _, port = await _spied_server(nursery, monkeypatch)
    async with await HttpClient.connect(port) as client:
        for n in range(5):
            (reply,) = await _bayeux(client, [{"channel": "/a/b", "data": n}])
            assert reply["successful"] is True
    # the first request is read by the task (the socket was new to the poller)
    assert calls[:4] == [(True, "NoneType")] * 4


async def _held_in_place(
    server: BayeuxServer, client: HttpClient, calls: list[tuple[bool, str]]
) -> Session:
    """A subscriber on ``client`` whose second connect the poller left pending."""
    (shake,) = await _bayeux(client, [HANDSHAKE])
    client_id = shake["clientId"]
    (subscribed,) = await _bayeux(
        client, [{"channel": SUBSCRIBE, "clientId": client_id, "subscription": "/a/b"}]
    )
    assert subscribed["successful"] is True
    connect = {"channel": CONNECT, "clientId": client_id, "connectionType": "long-polling"}
    await _bayeux(client, [connect])  # the first connect is answered at once
    calls.clear()
    body = json.dumps([connect]).encode()
    await client.send_request(
        "POST", "/faye", headers=[("content-type", "application/json")], body=body
    )
    session = server.engine.store.get(client_id)
    assert session is not None
    await wait_for(lambda: session.held is not None)
    await trio.testing.wait_all_tasks_blocked()
    # dispatched and left pending in place: the task was not woken
    assert calls == [(True, "NoneType")]
    return session


@fail_after(20)
async def test_a_connect_held_in_place_is_answered_without_the_task(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, server, port = await _spied_server(nursery, monkeypatch)
    async with await HttpClient.connect(port) as client:
        await _held_in_place(server, client, calls)
        await post_json(port, [{"channel": "/a/b", "data": "hello"}])
        head = await client.read_head()
        assert head.status_code == 200
        replies = json.loads(await client.read_body())
        assert {"channel": "/a/b", "data": "hello"} in [
            {"channel": r["channel"], "data": r.get("data")} for r in replies
        ]
        # and the connection goes on, its next request answered in place too
        calls.clear()
        (reply,) = await _bayeux(client, [{"channel": "/a/b", "data": 2}])
        assert reply["successful"] is True
        assert calls == [(True, "NoneType")]


@fail_after(20)
async def test_a_connect_pending_in_place_outlasts_the_idle_timeout(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The idle deadline armed for an earlier wait passes while the connect
    # is held: the wait goes on (no head was due), the reply comes, and the
    # connection serves its next request.
    calls, server, port = await _spied_server(nursery, monkeypatch, idle_timeout=0.3)
    async with await HttpClient.connect(port) as client:
        session = await _held_in_place(server, client, calls)
        await trio.sleep(0.8)
        assert session.held is not None
        await post_json(port, [{"channel": "/a/b", "data": "late"}])
        head = await client.read_head()
        assert head.status_code == 200
        replies = json.loads(await client.read_body())
        assert "late" in [r.get("data") for r in replies]
        (reply,) = await _bayeux(client, [{"channel": "/a/b", "data": 2}])
        assert reply["successful"] is True
        # and idle again, the connection is closed in time
        with trio.fail_after(2):
            assert await client.stream.receive_some(100) == b""


@fail_after(20)
async def test_a_client_gone_while_its_connect_is_pending_in_place_is_noticed(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, server, port = await _spied_server(nursery, monkeypatch)
    client = await HttpClient.connect(port)
    session = await _held_in_place(server, client, calls)
    await client.aclose()
    # the end of the input wakes the task, which drops the held connect
    await wait_for(lambda: session.held is None)
    assert calls[-1] == (False, "bytes")
    assert not server.hub.reads._waiters


@fail_after(20)
async def test_shutdown_answers_a_connect_pending_in_place_and_closes(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, server, port = await _spied_server(nursery, monkeypatch)
    async with await HttpClient.connect(port) as client:
        await _held_in_place(server, client, calls)
        nursery.start_soon(server.close)
        head = await client.read_head()
        assert head.status_code == 200
        await client.read_body()
        # the task was woken to end the connection after the reply
        assert await client.stream.receive_some(100) == b""


@fail_after(20)
async def test_a_refusal_in_place_is_answered_by_the_task(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, _, port = await _spied_server(nursery, monkeypatch)
    async with await HttpClient.connect(port) as client:
        await _bayeux(client, [{"channel": "/a/b", "data": 1}])
        calls.clear()
        response = await client.request(
            "POST", "/faye", headers=[("content-type", "application/json")], body=b"not json"
        )
        assert response.status == 400
        assert calls == [(False, "bytes")]  # the bytes read, handed to the task
        (reply,) = await _bayeux(client, [{"channel": "/a/b", "data": 2}])
        assert reply["successful"] is True


_WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="poller")


@fail_after(10)
async def test_a_serve_callback_runs_in_the_waiters_context(
    nursery: trio.Nursery, pair: tuple[socket.socket, socket.socket]
) -> None:
    # what the connection task set (the admin API's peer address) holds for
    # the requests the poller serves in its place
    left, right = pair
    poller = await running_poller(nursery)
    await poller.wait(left)
    seen: list[str] = []

    def serve() -> bool:
        seen.append(_WHO.get())
        left.recv(10)
        return len(seen) < 2  # the second time, wake the task

    async def waiter() -> None:
        _WHO.set("connection")
        await poller.wait(left, serve=serve)

    async with trio.open_nursery() as inner:
        inner.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(2):
            right.send(b"x")
            await trio.testing.wait_all_tasks_blocked()
    assert seen == ["connection", "connection"]
