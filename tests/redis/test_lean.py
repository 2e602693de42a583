"""The lean connection of the bus's hot paths (bayeux_trio/redis/_lean.py).

Against real redis-servers: pipelines and their per-command errors (mapped as
coredis maps them), AUTH and SELECT from the URL, TLS (``rediss://``), a Unix
socket, a replica refused where a master is wanted. Against stand-in servers
on loopback: a Redis that stops answering fails the call in bounded time,
one that hangs up or sends garbage fails it too, and the next call connects
again; two pipelines at once are refused. Then the bus: its writer and
reader use the lean connection (not on a Cluster), it loads the scripts
again when Redis lost them, and it notices a Redis that stopped answering
and recovers once it answers again.

Replies are parsed by hiredis, which the test extra installs
(tests/redis/test_resp_hiredis.py): a simple string comes as bytes.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import signal
import socket
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import coredis
import coredis.exceptions
import pytest
import trio
import trio.testing
import trustme
from coredis.connection import Location, TCPLocation

from bayeux_core import EngineConfig
from bayeux_trio import BayeuxServer
from bayeux_trio.redis import RedisBus
from bayeux_trio.redis._lean import (
    Endpoint,
    LeanConnection,
    Link,
    endpoint_of,
    error_for,
    raise_first_error,
)
from bayeux_trio.redis._resp import ErrorReply
from tests._support.ci import unavailable
from tests._support.ports import HOST, free_port
from tests._support.waiting import eventually, wait_until
from tests.trio.helpers import bayeux, deliveries, fail_after, handshake, make_config

from ._support import namespace
from .conftest import REDIS_SERVER, RedisProcess

# coredis leaves anyio memory streams unclosed when a connection attempt
# fails (Redis down); the garbage collector then warns. Not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@contextlib.contextmanager
def own_redis(directory: Path, *args: str, unix: Path | None = None) -> Iterator[int]:
    """A redis-server of the test's own with ``args``; yields its TCP port."""
    if REDIS_SERVER is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    command = [REDIS_SERVER, "--port", str(port), "--bind", HOST, "--save", ""]
    command += ["--dir", str(directory), "--daemonize", "no", *args]
    if unix is not None:
        command += ["--unixsocket", str(unix)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def accepting() -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            return False

    try:
        wait_until(accepting, "redis-server to listen", timeout=10, interval=0.02)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def link_to(url: str, *, read_timeout: float = 5.0) -> Link:
    endpoint = endpoint_of(coredis.Redis.from_url(url, decode_responses=False))
    assert endpoint is not None
    return Link(endpoint, read_timeout=read_timeout)


# ------------------------------------------------------------ a real Redis


@fail_after(20)
async def test_a_pipeline_gets_each_commands_reply_in_order(redis_server: RedisProcess) -> None:
    key = namespace()
    link = link_to(redis_server.url)
    try:
        replies = await link.pipeline(
            [
                ("SET", key, b"v\r\n"),
                ("GET", key),
                ("INCR", key),
                ("HSET", f"{key}:h", "a", 1),
                ("XADD", f"{key}:s", "1-1", "c", "/x", "p", b"{}"),
                ("XREAD", "COUNT", 10, "STREAMS", f"{key}:s", "0-0"),
                ("EVALSHA", "0" * 40, 0),
                ("LPUSH", key, "x"),
                ("GET", f"{key}:none"),
            ]
        )
        assert replies[:2] == [b"OK", b"v\r\n"]
        assert replies[3:6] == [
            1,
            b"1-1",
            [[f"{key}:s".encode(), [[b"1-1", [b"c", b"/x", b"p", b"{}"]]]]],
        ]
        assert replies[8] is None
        # Errors come back as values, each in its place; they map as coredis maps them.
        errors = [replies[2], replies[6], replies[7]]
        assert all(isinstance(e, ErrorReply) for e in errors)
        mapped = [type(error_for(e)) for e in errors if isinstance(e, ErrorReply)]
        assert mapped == [
            coredis.exceptions.ResponseError,
            coredis.exceptions.NoScriptError,
            coredis.exceptions.WrongTypeError,
        ]
        with pytest.raises(coredis.exceptions.ResponseError, match="not an integer"):
            raise_first_error(replies)
        # An error reply leaves the connection as it was.
        assert await link.pipeline([("PING",)]) == [b"PONG"]
    finally:
        await link.aclose()


@fail_after(30)
async def test_values_larger_than_the_socket_buffers_go_both_ways(
    redis_server: RedisProcess,
) -> None:
    # A write the kernel takes in parts (it waits until the socket is
    # writable), and replies read in many receives.
    key = namespace()
    value = bytes(range(256)) * (32 * 1024)  # 8 MiB
    link = link_to(redis_server.url)
    try:
        assert await link.pipeline([("SET", key, value), ("STRLEN", key)]) == [b"OK", len(value)]
        replies = await link.pipeline([("GET", key), ("GET", key), ("PING",)])
        assert replies == [value, value, b"PONG"]
    finally:
        await link.aclose()


@fail_after(20)
async def test_expire_ends_only_the_call_it_names(redis_server: RedisProcess) -> None:
    link = link_to(redis_server.url)
    connection = await LeanConnection.open(link.endpoint)
    blocked = f"{namespace()}:s"
    try:
        assert not connection.expire(0)  # nothing under way
        assert await connection.pipeline([("PING",)]) == [b"PONG"]
        async with trio.open_nursery() as nursery:
            failure: list[BaseException] = []

            async def read() -> None:
                try:
                    await connection.pipeline([("XREAD", "BLOCK", 5000, "STREAMS", blocked, "$")])
                except TimeoutError as exc:
                    failure.append(exc)

            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            assert not connection.expire(1)  # the call before, not this one
            assert connection.expire(2)
            assert not connection.expire(2)  # once
        assert len(failure) == 1
        assert "did not answer" in str(failure[0])
        assert connection.closed
    finally:
        await connection.aclose()


@fail_after(20)
@pytest.mark.parametrize("level", ["link", "connection"])
async def test_one_pipeline_at_a_time(redis_server: RedisProcess, level: str) -> None:
    link = link_to(redis_server.url)
    user: Link | LeanConnection = link
    if level == "connection":
        user = await LeanConnection.open(link.endpoint)
    blocked = f"{namespace()}:s"
    try:
        async with trio.open_nursery() as nursery:
            first: list[Any] = []

            async def read() -> None:
                first.extend(
                    await user.pipeline([("XREAD", "BLOCK", 300, "STREAMS", blocked, "$")])
                )

            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await user.pipeline([("PING",)])
        assert first == [None]  # the first one was not disturbed
        assert await user.pipeline([("PING",)]) == [b"PONG"]
    finally:
        await user.aclose()


@fail_after(30)
async def test_auth_and_db_come_from_the_url(tmp_path: Path) -> None:
    acl = "user default off\nuser app on >s3cret ~* &* +@all\n"
    (tmp_path / "users.acl").write_text(acl)
    with own_redis(tmp_path, "--aclfile", str(tmp_path / "users.acl")) as port:
        link = link_to(f"redis://app:s3cret@{HOST}:{port}/3")
        try:
            assert await link.pipeline([("SET", "k", "in db 3")]) == [b"OK"]
        finally:
            await link.aclose()
        check = coredis.Redis.from_url(
            f"redis://app:s3cret@{HOST}:{port}/3", decode_responses=False
        )
        async with check:
            assert await check.get("k") == b"in db 3"
        wrong = link_to(f"redis://app:nope@{HOST}:{port}/0")
        with pytest.raises(coredis.exceptions.AuthenticationError):
            await wrong.pipeline([("PING",)])
        anonymous = link_to(f"redis://{HOST}:{port}/0")
        try:
            (refused,) = await anonymous.pipeline([("SET", "k", "v")])
            assert isinstance(refused, ErrorReply)
            assert refused.code == "NOAUTH"
        finally:
            await anonymous.aclose()
    gc.collect()


@fail_after(30)
async def test_tls_for_rediss_urls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert(HOST)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    tls_port = free_port()
    args = ["--tls-port", str(tls_port), "--tls-auth-clients", "no"]
    args += ["--tls-cert-file", str(tmp_path / "cert.pem")]
    args += ["--tls-key-file", str(tmp_path / "key.pem")]
    args += ["--tls-ca-cert-file", str(tmp_path / "ca.pem")]
    with own_redis(tmp_path, *args):
        url = f"rediss://{HOST}:{tls_port}/0?ssl_ca_certs={tmp_path / 'ca.pem'}"
        link = link_to(url)
        try:
            assert await link.pipeline([("PING",), ("SET", "k", "v")]) == [b"PONG", b"OK"]
        finally:
            await link.aclose()
        # A certificate the client does not trust: no connection.
        untrusted = link_to(f"rediss://{HOST}:{tls_port}/0")
        with pytest.raises(coredis.exceptions.ConnectionError, match="cannot connect"):
            await untrusted.pipeline([("PING",)])


@fail_after(30)
async def test_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    with own_redis(tmp_path, unix=path):
        link = link_to(f"unix://{path}?db=2")
        try:
            assert await link.pipeline([("SET", "k", "v"), ("CLIENT", "INFO")])
            (info,) = await link.pipeline([("CLIENT", "INFO")])
            assert isinstance(info, bytes)
            assert b" db=2 " in info
        finally:
            await link.aclose()


@fail_after(30)
async def test_a_replica_is_refused_where_a_master_is_wanted(
    redis_server: RedisProcess, tmp_path: Path
) -> None:
    with own_redis(tmp_path, "--replicaof", HOST, str(redis_server.port)) as port:
        location = TCPLocation(HOST, port)

        async def locate() -> Location:
            return location

        # Written to as a plain client, a replica refuses: READONLY -> ReadOnlyError.
        plain = Link(Endpoint(locate=locate), read_timeout=5)
        try:
            (refused,) = await plain.pipeline([("SET", "k", "v")])
            assert isinstance(refused, ErrorReply)
            assert isinstance(error_for(refused), coredis.exceptions.ReadOnlyError)
        finally:
            await plain.aclose()
        # Where a master is wanted (Sentinel), the connection is not even made.
        wanted = Link(Endpoint(locate=locate, master_only=True), read_timeout=5)
        with pytest.raises(coredis.exceptions.StalePrimaryError, match="not a master"):
            await wanted.pipeline([("PING",)])


@fail_after(30)
async def test_a_link_follows_its_endpoint_when_it_moves(
    redis_server: RedisProcess, tmp_path: Path
) -> None:
    with own_redis(tmp_path) as other:
        where = [TCPLocation(HOST, redis_server.port)]

        async def locate() -> Location:
            return where[0]

        link = Link(Endpoint(locate=locate, current=lambda: where[0]), read_timeout=5)
        try:
            assert await link.pipeline([("CONFIG", "GET", "port")]) == [
                [b"port", str(redis_server.port).encode()]
            ]
            where[0] = TCPLocation(HOST, other)
            assert await link.pipeline([("CONFIG", "GET", "port")]) == [
                [b"port", str(other).encode()]
            ]
            # and a reset (a READONLY seen) makes a new connection too
            (before,) = await link.pipeline([("CLIENT", "ID")])
            link.reset()
            (after,) = await link.pipeline([("CLIENT", "ID")])
            assert before != after
        finally:
            await link.aclose()


# ---------------------------------------------------------- stand-in servers


Handler = Callable[[trio.SocketStream], Awaitable[None]]


@contextlib.asynccontextmanager
async def stand_in(handler: Handler) -> Any:
    """A loopback server running ``handler`` per connection; yields (endpoint, counts)."""
    accepted: list[int] = []
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, _counting(handler, accepted), 0, host=HOST)
        listeners = await nursery.start(serve)
        port = listeners[0].socket.getsockname()[1]

        async def locate() -> Location:
            return TCPLocation(HOST, port)

        yield Endpoint(locate=locate, connect_timeout=0.5), accepted
        nursery.cancel_scope.cancel()


def _counting(handler: Handler, accepted: list[int]) -> Handler:
    async def run(stream: trio.SocketStream) -> None:
        accepted.append(1)
        await handler(stream)

    return run


async def _silent(stream: trio.SocketStream) -> None:
    """Reads what comes and never answers (a Redis that stopped)."""
    while await stream.receive_some():
        pass


@pytest.mark.parametrize("watched", [False, True], ids=["cancel-scope", "watched"])
@fail_after(20)
async def test_a_redis_that_stops_answering_fails_the_call(watched: bool) -> None:
    # Watched, no call has a cancel scope: the watcher alone ends it.
    async with stand_in(_silent) as (endpoint, accepted), trio.open_nursery() as nursery:
        link = Link(endpoint, read_timeout=0.3)
        if watched:
            nursery.start_soon(link.watch)
            await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(TimeoutError, match=r"did not answer within 0\.3 s"):
            await link.pipeline([("XREAD", "BLOCK", 1000, "STREAMS", "log", "0-0")])
        # The next call does not use the connection whose reply may still come.
        with pytest.raises(TimeoutError):
            await link.pipeline([("PING",)])
        assert len(accepted) == 2
        await link.aclose()
        nursery.cancel_scope.cancel()


@fail_after(20)
async def test_a_watched_link_serves_calls_that_answer_in_time(redis_server: RedisProcess) -> None:
    link = link_to(redis_server.url, read_timeout=0.2)
    blocked = f"{namespace()}:s"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.watch)
        await trio.testing.wait_all_tasks_blocked()
        # Calls one after the other for longer than the timeout, each well
        # within it: the watcher tells them apart and ends none.
        end = trio.current_time() + 0.6
        while trio.current_time() < end:
            replies = await link.pipeline([("XREAD", "BLOCK", 30, "STREAMS", blocked, "$")])
            assert replies == [None]
        connection = link._connection
        assert connection is not None
        assert connection.watched
        assert not connection.closed
        nursery.cancel_scope.cancel()
    await link.aclose()


@fail_after(20)
async def test_a_connection_that_cannot_be_set_up_in_time_fails() -> None:
    async with stand_in(_silent) as (endpoint, _):
        setup = Endpoint(locate=endpoint.locate, password="x", connect_timeout=0.3)
        with pytest.raises(coredis.exceptions.ConnectionError, match=r"within 0\.3 s"):
            await LeanConnection.open(setup)


@fail_after(20)
async def test_a_closed_port_is_a_connection_error() -> None:
    port = free_port()

    async def locate() -> Location:
        return TCPLocation(HOST, port)

    with pytest.raises(coredis.exceptions.ConnectionError, match="cannot connect"):
        await Link(Endpoint(locate=locate), read_timeout=1).pipeline([("PING",)])


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (b"", coredis.exceptions.ConnectionError, "closed the connection"),
        (b"+PONG\r\n+PONG\r\n", coredis.exceptions.ProtocolError, "more replies"),
        (b"?what\r\n", coredis.exceptions.ProtocolError, "reply type"),
        (b"$5\r\nab", coredis.exceptions.ConnectionError, "closed the connection"),
    ],
)
@fail_after(20)
async def test_a_hang_up_or_garbage_fails_the_call_and_the_next_connects_again(
    answer: bytes, error: type[Exception], match: str
) -> None:
    async def answer_then_hang_up(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        if answer:
            await stream.send_all(answer)
        await stream.aclose()

    async with stand_in(answer_then_hang_up) as (endpoint, accepted):
        link = Link(endpoint, read_timeout=5.0)
        with pytest.raises(error, match=match):
            await link.pipeline([("PING",)])
        with pytest.raises(error, match=match):
            await link.pipeline([("PING",)])
        assert len(accepted) == 2
        await link.aclose()
    assert issubclass(error, coredis.exceptions.ConnectionError)  # the bus retries these


# ------------------------------------------------------------------ the bus


async def _publish_and_receive(port: int, data: Any) -> None:
    subscriber = await handshake(port)
    await bayeux(
        port, [{"channel": "/meta/subscribe", "clientId": subscriber, "subscription": "/lean"}]
    )
    await bayeux(
        port,
        [{"channel": "/meta/connect", "clientId": subscriber, "connectionType": "long-polling"}],
    )
    publisher = await handshake(port)
    (reply,) = await bayeux(port, [{"channel": "/lean", "clientId": publisher, "data": data}])
    assert reply["successful"] is True, reply
    replies = await bayeux(
        port,
        [{"channel": "/meta/connect", "clientId": subscriber, "connectionType": "long-polling"}],
    )
    assert [m["data"] for m in deliveries(replies)] == [data]


@fail_after(60)
async def test_the_bus_writes_and_reads_on_lean_connections(
    redis_server: RedisProcess, nursery: trio.Nursery
) -> None:
    bus = RedisBus(redis_server.url, namespace=namespace())
    node = BayeuxServer(make_config(engine=EngineConfig(timeout=2)), bus=bus)
    await nursery.start(node.serve)
    assert node.port is not None
    await _publish_and_receive(node.port, 1)
    links = [bus._write_link, bus._read_link]
    assert all(link is not None and link._connection is not None for link in links)
    # Redis lost its scripts (a restart would): the writer loads them again.
    flush = coredis.Redis.from_url(redis_server.url, decode_responses=False)
    async with flush:
        await flush.script_flush()
    await _publish_and_receive(node.port, 2)
    assert bus.healthy


def test_a_cluster_keeps_coredis_on_every_path() -> None:
    cluster: Any = coredis.RedisCluster(startup_nodes=[TCPLocation(HOST, 7000)])
    assert endpoint_of(cluster) is None


@fail_after(90)
async def test_the_bus_notices_a_redis_that_stopped_answering(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """SIGSTOP: connections stay open and nothing answers. The reader's XREAD
    fails after its bound (the bus reports the outage), and once Redis
    answers again everything works."""
    own = RedisProcess(tmp_path)
    own.start()
    try:
        bus = RedisBus(own.url, namespace=namespace(), request_timeout=1.0)
        node = BayeuxServer(make_config(engine=EngineConfig(timeout=2)), bus=bus)
        await nursery.start(node.serve)
        assert node.port is not None
        await _publish_and_receive(node.port, "before")
        assert own.process is not None
        own.process.send_signal(signal.SIGSTOP)
        try:
            await eventually(lambda: not bus.healthy, seconds=15)
            assert "read" in bus.stats["outage"]["error"] or "write" in bus.stats["outage"]["error"]
        finally:
            own.process.send_signal(signal.SIGCONT)
        await eventually(lambda: bus.healthy, seconds=15)
        await _publish_and_receive(node.port, "after")
    finally:
        own.stop()
    gc.collect()
