"""A lean Redis connection for the bus's two hot paths (docs/redis.md, "Hot paths").

The writer's pipeline and the reader's ``XREAD`` run once per batch of
publishes. Through coredis each of those round trips cost about 0.2 ms of
CPU (its request objects, connection tasks, cancel scopes, telemetry) against
0.05 ms for a bare trio socket (``bench/redis_bench.py``). This module is
that bare socket with :mod:`._resp` on it: one write per pipeline, then read
exactly as many replies as commands were sent. Everything else the bus does
stays on coredis.

Failures become the exceptions the bus already handles (``_RETRYABLE`` in
:mod:`._bus`), so its retries, backoff and outage reports are unchanged: a
connection that cannot be made, breaks, or speaks garbage raises
:class:`coredis.exceptions.ConnectionError` (or its ``ProtocolError``); one
that does not answer in time raises :class:`TimeoutError`; either way the
connection is closed, and :class:`Link` makes a new one on the next call. An
error reply is not a failure of the connection: :func:`raise_first_error`
turns it into the exception coredis would raise (``NOSCRIPT`` ->
``NoScriptError``, ``READONLY`` -> ``ReadOnlyError``, ...).
"""

from __future__ import annotations

import dataclasses
import math
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence

import coredis
import coredis.exceptions
import trio
from coredis.connection import Location, TCPLocation, UnixDomainSocketLocation
from coredis.parser import Parser as _CoredisParser
from coredis.pool import SentinelConnectionPool

from ._resp import NEED_DATA, Arg, ErrorReply, ProtocolError, Reply, encode_many, make_parser

__all__ = [
    "Endpoint",
    "LeanConnection",
    "Link",
    "endpoint_of",
    "error_for",
    "raise_first_error",
]

#: bytes asked of the socket per read (trio's own default)
_RECEIVE = 65536
#: seconds to connect, when the client does not say
_CONNECT_TIMEOUT = 2.0
#: coredis' table of error codes to exceptions, so that ours match its
_ERRORS = _CoredisParser()


def error_for(reply: ErrorReply) -> coredis.exceptions.RedisError:
    """The exception coredis raises for this error reply."""
    return _ERRORS.parse_error(reply.message)


def raise_first_error(replies: Sequence[Reply]) -> None:
    """Raise the first error reply of a pipeline, as a coredis pipeline does
    (after every command ran)."""
    for reply in replies:
        if type(reply) is ErrorReply:
            raise error_for(reply)


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a lean connection goes, and how it introduces itself."""

    #: the server's address now (a Sentinel client asks the sentinels)
    locate: Callable[[], Awaitable[Location]]
    #: the address as last known, without asking (a Sentinel pool's
    #: ``location``, which its follower keeps current); None when it never moves
    current: Callable[[], Location | None] | None = None
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    db: int = 0
    client_name: str | None = None
    ssl_context: ssl.SSLContext | None = None
    connect_timeout: float = _CONNECT_TIMEOUT
    #: refuse a server that is not a master (``ROLE``), as coredis does for
    #: Sentinel (set for an endpoint that moves)
    master_only: bool = False


def endpoint_of(client: coredis.Redis[bytes] | coredis.RedisCluster[bytes]) -> Endpoint | None:
    """The endpoint of ``client``'s connections (its URL's address, credentials,
    db and TLS, as coredis parsed them); None for a Redis Cluster, which
    keeps coredis (it routes each key to its master)."""
    if isinstance(client, coredis.RedisCluster):
        return None
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    timeout = kwargs.get("connect_timeout")
    username = kwargs.get("username")
    password = kwargs.get("password")
    name = kwargs.get("client_name")
    context = kwargs.get("ssl_context")

    def endpoint(
        locate: Callable[[], Awaitable[Location]],
        current: Callable[[], Location | None] | None = None,
    ) -> Endpoint:
        return Endpoint(
            locate=locate,
            current=current,
            username=str(username) if username is not None else None,
            password=str(password) if password is not None else None,
            db=int(kwargs.get("db") or 0),
            client_name=str(name) if name is not None else None,
            ssl_context=context if isinstance(context, ssl.SSLContext) else None,
            connect_timeout=float(timeout) if timeout else _CONNECT_TIMEOUT,
            master_only=current is not None,
        )

    if isinstance(pool, SentinelConnectionPool):
        # Asking moves the pool's own location too (and closes coredis'
        # connections if the master moved): both clients follow one answer.
        return endpoint(pool.get_primary_location, lambda: pool.location)
    location = pool.location
    if location is None:
        raise ValueError("the Redis client has no address")

    async def fixed() -> Location:
        return location

    return endpoint(fixed)


class LeanConnection:
    """One connection to Redis: :meth:`pipeline` at a time, no retries.

    Open it with :meth:`open`. Any failure closes it (:attr:`closed`); an
    error reply does not.

    A plaintext connection (TCP or a Unix socket) is read and written on its
    socket directly, as the HTTP fast path reads its clients: wait, then one
    ``recv``, without trio's stream wrappers or a first read that finds
    nothing (Redis has not answered a pipeline we just sent). TLS goes
    through trio's stream.
    """

    __slots__ = (
        "_busy",
        "_calls",
        "_expired",
        "_full",
        "_parser",
        "_sock",
        "_stream",
        "closed",
        "location",
        "read_timeout",
        "watched",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        read_timeout: float = math.inf,
        location: Location | None = None,
    ) -> None:
        self._stream = stream
        #: the plaintext socket, taken over from ``stream``; None for TLS
        self._sock: socket.socket | None = None
        if isinstance(stream, trio.SocketStream):
            taken = stream.socket
            self._sock = socket.socket(taken.family, taken.type, taken.proto, fileno=taken.detach())
            self._sock.setblocking(False)
        self._parser = make_parser()
        self._busy = False
        #: pipelines started, for a watcher to tell one call from the next
        self._calls = 0
        #: a watcher ended the call under way: it raises TimeoutError
        self._expired = False
        #: the last read on the socket filled its buffer
        self._full = False
        self.closed = False
        #: seconds Redis has to answer a whole pipeline; then the connection
        #: is closed and TimeoutError raised
        self.read_timeout = read_timeout
        #: where it is connected (compared with the endpoint's ``current``)
        self.location = location
        #: a :meth:`Link.watch` task enforces ``read_timeout`` (plaintext
        #: only): the calls need no cancel scope of their own
        self.watched = False

    @classmethod
    async def open(cls, endpoint: Endpoint, *, read_timeout: float = math.inf) -> LeanConnection:
        """Connect, authenticate, select the db; check the role if asked.

        All within the endpoint's ``connect_timeout``. Raises
        :class:`coredis.exceptions.ConnectionError` if Redis cannot be
        reached, the exception of the error reply if it refuses.
        """
        location: Location | None = None
        stream: trio.abc.Stream | None = None
        connection: LeanConnection | None = None
        try:
            with trio.fail_after(endpoint.connect_timeout):
                location = await endpoint.locate()
                stream = await _open_stream(location, endpoint)
                connection = cls(stream, read_timeout=read_timeout, location=location)
                setup: list[tuple[Arg, ...]] = []
                if endpoint.password is not None:
                    if endpoint.username:
                        setup.append(("AUTH", endpoint.username, endpoint.password))
                    else:
                        setup.append(("AUTH", endpoint.password))
                if endpoint.db:
                    setup.append(("SELECT", endpoint.db))
                if endpoint.client_name is not None:
                    setup.append(("CLIENT", "SETNAME", endpoint.client_name))
                if endpoint.master_only:
                    setup.append(("ROLE",))
                if setup:
                    replies = await connection.pipeline(setup)
                    raise_first_error(replies)
                    role = replies[-1]
                    if endpoint.master_only and not (
                        isinstance(role, list) and role and role[0] == b"master"
                    ):
                        raise coredis.exceptions.StalePrimaryError(
                            f"{_where(location)} is not a master (ROLE: {role!r:.60})"
                        )
                return connection
        except trio.TooSlowError:
            await _discard(connection, stream)
            raise coredis.exceptions.ConnectionError(
                f"no connection to Redis at {_where(location)} within {endpoint.connect_timeout} s"
            ) from None
        except (OSError, trio.BrokenResourceError) as exc:
            await _discard(connection, stream)
            raise coredis.exceptions.ConnectionError(
                f"cannot connect to Redis at {_where(location)}: {exc}"
            ) from exc
        except BaseException:
            await _discard(connection, stream)
            raise

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Reply]:
        """Send ``commands`` in one write and return their replies, in order.

        Error replies are returned, not raised (see :func:`raise_first_error`).
        Redis must answer them all within :attr:`read_timeout` (a watched
        connection: up to a quarter more, see :meth:`Link.watch`), or the
        connection is closed and :class:`TimeoutError` raised. Raises
        :class:`trio.BusyResourceError` if another pipeline is under way.
        """
        if self._busy:
            raise trio.BusyResourceError("another pipeline is using this Redis connection")
        if self.closed:
            raise coredis.exceptions.ConnectionError("the Redis connection is closed")
        self._busy = True
        self._calls += 1
        done = False
        sock = self._sock
        try:
            if sock is not None and self.watched:
                # A trio cancel scope per call was a tenth of a round trip's
                # CPU: the watcher closes a connection that overstays instead.
                replies = await self._exchange_socket(sock, encode_many(commands), len(commands))
                done = True
                return replies
            with trio.move_on_after(self.read_timeout):
                data = encode_many(commands)
                if sock is not None:
                    replies = await self._exchange_socket(sock, data, len(commands))
                else:
                    replies = await self._exchange(data, len(commands))
                done = True
                return replies
            raise TimeoutError(f"Redis did not answer within {self.read_timeout} s")
        except TimeoutError:
            raise
        except ProtocolError as exc:
            raise coredis.exceptions.ProtocolError(f"Redis sent bad data: {exc}") from exc
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if self._expired:
                raise TimeoutError(f"Redis did not answer within {self.read_timeout} s") from None
            raise coredis.exceptions.ConnectionError(
                f"Redis connection lost: {exc or type(exc).__name__}"
            ) from exc
        finally:
            self._busy = False
            if not done:
                # Replies may still be on their way: the connection is out
                # of step for good (a failure, a timeout, a cancellation).
                await self.aclose()

    async def _exchange(self, data: bytes, count: int) -> list[Reply]:
        """A pipeline through the trio stream (TLS)."""
        stream = self._stream
        await stream.send_all(data)
        return await self._replies(count, lambda: stream.receive_some(_RECEIVE))

    async def _exchange_socket(self, sock: socket.socket, data: bytes, count: int) -> list[Reply]:
        """A pipeline on the plaintext socket.

        Every call waits at least once (the first reply cannot be there
        before the commands went out), so it is a checkpoint, as the
        stream's is.
        """
        sent = _send_some(sock, data)
        if sent < len(data):
            view = memoryview(data)
            while sent < len(view):
                await trio.lowlevel.wait_writable(sock)
                sent += _send_some(sock, view[sent:])
        self._full = False
        return await self._replies(count, lambda: self._receive(sock))

    async def _receive(self, sock: socket.socket) -> bytes:
        """The next bytes on the plaintext socket: wait, then one ``recv``
        (no wait after a read that filled its buffer: more may be there)."""
        while True:
            if not self._full:
                await trio.lowlevel.wait_readable(sock)
            try:
                received = sock.recv(_RECEIVE)
            except BlockingIOError:
                self._full = False
                continue
            self._full = len(received) == _RECEIVE
            return received

    async def _replies(
        self, count: int, receive: Callable[[], Awaitable[bytes | bytearray]]
    ) -> list[Reply]:
        """Parse ``count`` replies from what ``receive`` brings."""
        parser = self._parser
        replies: list[Reply] = []
        while len(replies) < count:
            reply = parser.next_reply()
            if reply is NEED_DATA:
                received = await receive()
                if not received:
                    raise coredis.exceptions.ConnectionError("Redis closed the connection")
                parser.feed(received)
                continue
            replies.append(reply)
        if parser.pending:
            raise ProtocolError("more replies than commands")
        return replies

    def expire(self, calls: int) -> bool:
        """End call number ``calls`` if it is still under way: it raises
        :class:`TimeoutError` and the connection closes (what a watcher
        does to a call that overstays). True if it did."""
        sock = self._sock
        if not self._busy or self._calls != calls or sock is None or self._expired:
            return False
        self._expired = True
        trio.lowlevel.notify_closing(sock)  # the waiting call raises
        return True

    async def aclose(self) -> None:
        """Close the connection (at once: no goodbye to Redis)."""
        if not self.closed:
            self.closed = True
            sock = self._sock
            if sock is None:
                await trio.aclose_forcefully(self._stream)
                return
            trio.lowlevel.notify_closing(sock)
            sock.close()
            await trio.lowlevel.checkpoint()


async def _discard(connection: LeanConnection | None, stream: trio.abc.Stream | None) -> None:
    """Close what :meth:`LeanConnection.open` made (the connection owns the socket once made)."""
    if connection is not None:
        await connection.aclose()
    elif stream is not None:
        await trio.aclose_forcefully(stream)


def _send_some(sock: socket.socket, data: bytes | memoryview) -> int:
    try:
        return sock.send(data)
    except BlockingIOError:
        return 0


class Link:
    """The lean connection to an endpoint: made at the first call, made
    again after one failed, or when the endpoint moved (Sentinel).

    One pipeline at a time, as for the connection; no retries (the bus's).
    """

    __slots__ = ("_busy", "_connection", "_stale", "_watched", "endpoint", "read_timeout")

    def __init__(self, endpoint: Endpoint, *, read_timeout: float) -> None:
        self.endpoint = endpoint
        #: see :attr:`LeanConnection.read_timeout`
        self.read_timeout = read_timeout
        self._connection: LeanConnection | None = None
        self._stale = False
        self._busy = False
        self._watched = False

    async def watch(self) -> None:
        """Enforce :attr:`read_timeout` from this task while it runs (start
        it in a nursery), so that the calls need no cancel scope each.

        It looks every quarter of ``read_timeout``: a call still under way
        that it saw at least ``read_timeout`` before fails with
        :class:`TimeoutError` (after ``read_timeout`` to 1.25 times it),
        and its connection closes, as without a watcher.
        """
        interval = self.read_timeout / 4
        #: the call under way at the last look, and when it was first seen
        seen: tuple[LeanConnection, int] | None = None
        since = 0.0
        self._watched = True
        try:
            while True:
                await trio.sleep(interval)
                connection = self._connection
                if connection is None or not connection._busy:
                    seen = None
                    continue
                now = trio.current_time()
                call = (connection, connection._calls)
                if call != seen:
                    seen, since = call, now
                elif now - since >= self.read_timeout and connection.expire(call[1]):
                    seen = None
        finally:
            self._watched = False

    def reset(self) -> None:
        """Use a new connection from the next call on (the server was demoted)."""
        self._stale = True

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Reply]:
        """:meth:`LeanConnection.pipeline` on the current connection."""
        # (checked here too: two callers must not both make a connection)
        if self._busy:
            raise trio.BusyResourceError("another pipeline is using this Redis connection")
        self._busy = True
        try:
            connection = self._connection
            current = self.endpoint.current
            if connection is not None and (
                connection.closed
                or self._stale
                or (current is not None and current() != connection.location)
            ):
                self._connection = None
                await connection.aclose()
                connection = None
            if connection is None:
                self._stale = False
                connection = self._connection = await LeanConnection.open(
                    self.endpoint, read_timeout=self.read_timeout
                )
            connection.watched = self._watched
            return await connection.pipeline(commands)
        finally:
            self._busy = False

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.aclose()


async def _open_stream(location: Location, endpoint: Endpoint) -> trio.abc.Stream:
    stream: trio.abc.Stream
    if isinstance(location, UnixDomainSocketLocation):
        stream = await trio.open_unix_socket(location.path)
    else:
        assert isinstance(location, TCPLocation)
        stream = await trio.open_tcp_stream(location.host, location.port)
    if endpoint.ssl_context is not None:
        host = location.host if isinstance(location, TCPLocation) else None
        tls = trio.SSLStream(stream, endpoint.ssl_context, server_hostname=host)
        try:
            await tls.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        stream = tls
    return stream


def _where(location: Location | None) -> str:
    if isinstance(location, TCPLocation):
        return f"{location.host}:{location.port}"
    if isinstance(location, UnixDomainSocketLocation):
        return location.path
    return "(unknown address)"
