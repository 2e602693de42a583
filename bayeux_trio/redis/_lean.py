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
    """

    __slots__ = ("_busy", "_parser", "_stream", "closed", "location", "read_timeout")

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        read_timeout: float = math.inf,
        location: Location | None = None,
    ) -> None:
        self._stream = stream
        self._parser = make_parser()
        self._busy = False
        self.closed = False
        #: seconds Redis has to answer a whole pipeline; then the connection
        #: is closed and TimeoutError raised
        self.read_timeout = read_timeout
        #: where it is connected (compared with the endpoint's ``current``)
        self.location = location

    @classmethod
    async def open(cls, endpoint: Endpoint, *, read_timeout: float = math.inf) -> LeanConnection:
        """Connect, authenticate, select the db; check the role if asked.

        All within the endpoint's ``connect_timeout``. Raises
        :class:`coredis.exceptions.ConnectionError` if Redis cannot be
        reached, the exception of the error reply if it refuses.
        """
        location: Location | None = None
        stream: trio.abc.Stream | None = None
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
            if stream is not None:
                await trio.aclose_forcefully(stream)
            raise coredis.exceptions.ConnectionError(
                f"no connection to Redis at {_where(location)} within {endpoint.connect_timeout} s"
            ) from None
        except (OSError, trio.BrokenResourceError) as exc:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            raise coredis.exceptions.ConnectionError(
                f"cannot connect to Redis at {_where(location)}: {exc}"
            ) from exc
        except BaseException:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            raise

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Reply]:
        """Send ``commands`` in one write and return their replies, in order.

        Error replies are returned, not raised (see :func:`raise_first_error`).
        Redis must answer them all within :attr:`read_timeout`, or the
        connection is closed and :class:`TimeoutError` raised. Raises
        :class:`trio.BusyResourceError` if another pipeline is under way.
        """
        if self._busy:
            raise trio.BusyResourceError("another pipeline is using this Redis connection")
        if self.closed:
            raise coredis.exceptions.ConnectionError("the Redis connection is closed")
        self._busy = True
        done = False
        try:
            with trio.move_on_after(self.read_timeout):
                replies = await self._exchange(encode_many(commands), len(commands))
                done = True
                return replies
            raise TimeoutError(f"Redis did not answer within {self.read_timeout} s")
        except TimeoutError:
            raise
        except ProtocolError as exc:
            raise coredis.exceptions.ProtocolError(f"Redis sent bad data: {exc}") from exc
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
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
        stream = self._stream
        parser = self._parser
        await stream.send_all(data)
        replies: list[Reply] = []
        while len(replies) < count:
            reply = parser.next_reply()
            if reply is NEED_DATA:
                received = await stream.receive_some(_RECEIVE)
                if not received:
                    raise coredis.exceptions.ConnectionError("Redis closed the connection")
                parser.feed(received)
                continue
            replies.append(reply)
        if parser.pending:
            raise ProtocolError("more replies than commands")
        return replies

    async def aclose(self) -> None:
        """Close the connection (at once: no goodbye to Redis)."""
        if not self.closed:
            self.closed = True
            await trio.aclose_forcefully(self._stream)


class Link:
    """The lean connection to an endpoint: made at the first call, made
    again after one failed, or when the endpoint moved (Sentinel).

    One pipeline at a time, as for the connection; no retries (the bus's).
    """

    __slots__ = ("_busy", "_connection", "_stale", "endpoint", "read_timeout")

    def __init__(self, endpoint: Endpoint, *, read_timeout: float) -> None:
        self.endpoint = endpoint
        #: see :attr:`LeanConnection.read_timeout`
        self.read_timeout = read_timeout
        self._connection: LeanConnection | None = None
        self._stale = False
        self._busy = False

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
