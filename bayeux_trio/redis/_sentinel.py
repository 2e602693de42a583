"""Redis Sentinel: the ``redis+sentinel://`` URL and the master's client.

A Redis that fails over moves the master to another address. The bus must
therefore not be given an address but a service name and the sentinels that
know where its master is. coredis asks them for each new connection
(``SentinelConnectionPool``) and checks the server it reached still says it
is a master (``ROLE``); the bus's own retries (docs/redis.md, "Faults") make
new connections after a failure, so they land on whichever master the
sentinels name by then. A master that lives on after the sentinels chose
another (a manual failover, a partition) breaks no connection, so the client
also asks the sentinels every second and closes its connections when the
master moved. What a failover can lose or repeat is in docs/redis.md,
"Sentinel".

The bus's own connections for its writer and reader (:mod:`._lean`) ask
through the same pool (``get_primary_location``), refuse a server whose
``ROLE`` is not master, and are replaced when the pool's location moves:
both clients follow the one answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import coredis
import coredis.exceptions
import trio
from coredis.connection import TCPLocation
from coredis.pool import SentinelConnectionPool
from coredis.retry import NoRetryPolicy

__all__ = ["SENTINEL_SCHEME", "SentinelURL", "parse_sentinel_url", "sentinel_client"]

log = logging.getLogger("bayeux.redis")

SENTINEL_SCHEME = "redis+sentinel://"
#: Sentinel's own port, when a host names none
DEFAULT_PORT = 26379
#: the query keys a URL may carry
_OPTIONS = ("db", "sentinel_username", "sentinel_password")
#: seconds to open a connection; a sentinel query also gives up after this
#: long (a sentinel that vanished without a reset), so the next one is asked
_TIMEOUT = 2.0
#: seconds between two questions to the sentinels about where the master is
FOLLOW_INTERVAL = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class SentinelURL:
    """What a ``redis+sentinel://`` URL says; ``str()`` hides its passwords."""

    #: (host, port) of each sentinel, in the order given
    sentinels: tuple[tuple[str, int], ...]
    #: the master's name, as in ``sentinel monitor <name> ...``
    service: str
    db: int = 0
    #: the master's (and its replicas') credentials
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    #: the sentinels' credentials, when they have their own (``requirepass``)
    sentinel_username: str | None = None
    sentinel_password: str | None = dataclasses.field(default=None, repr=False)

    def __str__(self) -> str:
        auth = ""
        if self.username is not None or self.password is not None:
            auth = quote(self.username or "", safe="")
            auth += ":***@" if self.password is not None else "@"
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
        query = [f"db={self.db}"] if self.db else []
        if self.sentinel_username is not None:
            query.append(f"sentinel_username={quote(self.sentinel_username, safe='')}")
        if self.sentinel_password is not None:
            query.append("sentinel_password=***")
        tail = "?" + "&".join(query) if query else ""
        return f"{SENTINEL_SCHEME}{auth}{hosts}/{quote(self.service, safe='')}{tail}"


def parse_sentinel_url(url: str) -> SentinelURL:
    """Read ``redis+sentinel://[user:password@]host:port[,host:port...]/name[?options]``.

    Options: ``db`` (default 0), ``sentinel_username`` and
    ``sentinel_password``. A host without a port is on 26379. User, password
    and name are percent-decoded. Raises :class:`ValueError` saying what is
    wrong, never quoting a password.
    """
    if not url.startswith(SENTINEL_SCHEME):
        raise ValueError(f"a Sentinel URL starts with {SENTINEL_SCHEME}")
    parts = urlsplit(url)
    if parts.fragment:
        raise ValueError("a Sentinel URL has no #fragment")
    auth, _, hosts = parts.netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if auth:
        user, colon, secret = auth.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(item) for item in hosts.split(","))
    service = unquote(parts.path.removeprefix("/"))
    if not service or "/" in service:
        raise ValueError(
            "a Sentinel URL names the master after the hosts: "
            "redis+sentinel://host:port[,host:port...]/mastername"
        )
    options: dict[str, str] = {}
    for pair in parts.query.split("&") if parts.query else ():
        # unquote, not unquote_plus: a "+" in a password stays a "+"
        key, _, value = (unquote(text) for text in pair.partition("="))
        if key not in _OPTIONS:
            raise ValueError(
                f"unknown option {key!r} in a Sentinel URL (known: {', '.join(_OPTIONS)})"
            )
        if key in options:
            raise ValueError(f"option {key!r} given twice in a Sentinel URL")
        options[key] = value
    db_text = options.get("db", "0")
    if not db_text.isdigit():
        raise ValueError(f"db must be a number >= 0, not {db_text!r}")
    return SentinelURL(
        sentinels=sentinels,
        service=service,
        db=int(db_text),
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
    )


def _host_port(item: str) -> tuple[str, int]:
    if not item:
        raise ValueError("a Sentinel URL lists its sentinels as host:port,host:port")
    parsed = urlsplit(f"//{item}")
    try:
        port = parsed.port
    except ValueError:
        raise ValueError(f"bad port in sentinel address {item!r}") from None
    if not parsed.hostname:
        raise ValueError(f"no host in sentinel address {item!r}")
    return parsed.hostname, port if port is not None else DEFAULT_PORT


class _Primary(coredis.Redis[bytes]):
    """The master's client; entering it also opens the sentinels' clients,
    which its pool asks for the master's address at each new connection,
    and follows the master (:func:`_follow`)."""

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[_Primary]:
        pool = self.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        async with (
            pool.sentinel_manager,
            super().__asynccontextmanager__(),
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_follow, pool)
            try:
                yield self
            finally:
                nursery.cancel_scope.cancel()


async def _follow(pool: SentinelConnectionPool) -> None:
    """Ask the sentinels where the master is, every :data:`FOLLOW_INTERVAL`.

    When it moved, the pool closes its connections (coredis does that in
    ``get_primary_location``): commands in flight fail, the bus retries them,
    and the new connections go to the new master. Without this, a master
    that the sentinels replaced without it dying keeps taking writes, which
    are lost when it is made a replica. Sentinels that cannot be asked are
    the bus's outage to report, not this task's.
    """
    while True:
        await trio.sleep(FOLLOW_INTERVAL)
        before = pool.location
        try:
            after = await pool.get_primary_location()
        except (coredis.exceptions.RedisError, OSError, TimeoutError):
            continue
        if before is not None and after != before:
            log.warning(
                "Sentinel: the master of %s moved from %s to %s",
                pool.service_name,
                before,
                after,
            )


def sentinel_client(url: str | SentinelURL) -> coredis.Redis[bytes]:
    """A client of the master the sentinels of ``url`` name (``async with`` it).

    Every connection asks the sentinels afresh, and refuses a server that is
    no longer a master (coredis' ``StalePrimaryError``). Every retry is the
    bus's, as for the other URLs.
    """
    settings = parse_sentinel_url(url) if isinstance(url, str) else url
    sentinel_kwargs: dict[str, Any] = {"connect_timeout": _TIMEOUT, "stream_timeout": _TIMEOUT}
    if settings.sentinel_username is not None:
        sentinel_kwargs["username"] = settings.sentinel_username
    if settings.sentinel_password is not None:
        sentinel_kwargs["password"] = settings.sentinel_password
    sentinel = coredis.Sentinel(
        [TCPLocation(host, port) for host, port in settings.sentinels],
        sentinel_kwargs=sentinel_kwargs,
        decode_responses=False,
        retry_policy=NoRetryPolicy(),
        connect_timeout=_TIMEOUT,
        db=settings.db,
        username=settings.username,
        password=settings.password,
    )
    return sentinel.primary_for(settings.service, redis_class=_Primary)
