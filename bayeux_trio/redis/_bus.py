"""The Redis bus: many server processes as one Bayeux server (docs/redis.md).

Each node keeps the sessions it owns in its local engine; Redis keeps the log
(one stream, each publish stored once) and one record per session (owner,
epoch, cursor, state, subscriptions), with a TTL. The hub hands every pass of
engine actions to :meth:`RedisBus.intercept`: the Redis writes they imply go
out in one pipeline, in order, and the pass's replies wait for it.

The writer's pipelines and the reader's ``XREAD`` run on lean connections of
their own (:mod:`._lean`, :mod:`._resp`); everything else, and everything on
a Redis Cluster, on coredis (docs/redis.md, "Hot paths").
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

import coredis
import coredis.exceptions
import orjson
import trio
from coredis.connection import TCPLocation
from coredis.retry import NoRetryPolicy
from coredis.tokens import PureToken

from bayeux_core import (
    PRESENCE_PREFIX,
    Action,
    Broadcast,
    Close,
    Deliver,
    Disconnected,
    Handshaken,
    Message,
    MessageKind,
    PresenceEntered,
    PresenceExited,
    Reply,
    SessionExpired,
    Subscribed,
    Unsubscribed,
    claimed_sessions,
    fail_without_backend,
    matches,
    message_kind,
    presence_delivery,
    presence_probe,
    recovery_offset,
    refuse_without_backend,
)

from ._lean import Link, endpoint_of, error_for, raise_first_error
from ._nodes import NodeReporter
from ._resp import Arg, ErrorReply
from ._resp import Reply as RespReply
from ._scripts import (
    APPEND,
    CLAIM,
    PRESENCE_APPLY,
    PRESENCE_DUE,
    PRESENCE_RESCORE,
    PRESENCE_SNAPSHOT,
    PRESENCE_VANISH,
    SENT,
    UPDATE,
)
from ._sentinel import SENTINEL_SCHEME, parse_sentinel_url, sentinel_client

if TYPE_CHECKING:
    from coredis.response.types import StreamEntry

    from bayeux_trio.server import Hub

__all__ = ["RedisBus"]

log = logging.getLogger("bayeux.redis")

T = TypeVar("T")
StreamId = tuple[int, int]

_RETRYABLE = (
    coredis.exceptions.ConnectionError,
    TimeoutError,
    OSError,
    # a cluster whose slots are not all served (a master down, a failover)
    coredis.exceptions.ClusterDownError,
    coredis.exceptions.TryAgainError,
    # a Sentinel failover: no master named yet, a named one that was demoted
    # meanwhile, or writes to a master demoted under an open connection
    coredis.exceptions.SentinelError,
    coredis.exceptions.ReadOnlyError,
)
_PAGE = 1000
#: seconds without anything to write after which the reader reads for itself
#: again (see RedisBus._ride): another node's message is at most this late
#: when this node's writer has just stopped
_RIDE_IDLE = 0.002
#: a log id (ms, seq) as one history offset: ms * _SEQ_SPAN + seq (Redis makes
#: far fewer than a million entries in one millisecond)
_SEQ_SPAN = 1 << 20
#: entries scanned at the log's tail to find our own appends after a failed write
_RECOVERY_SCAN = 10_000
#: publish ids kept per client to recognise a copy it sends again: a client
#: may make many more publishes while the node it sent the first copy to is
#: down, and send its copies again in any order (docs/redis.md)
_RECENT = "1000"
#: how long the node that takes a session over waits for the last owner to
#: say that its last reply went out, before replaying that reply (seconds)
_SENT_WAIT = 0.1
#: the same wait in the first seconds after an outage: every node's writer
#: comes back on its own retry schedule (up to 2 s apart, see _retry), and the
#: last owner's note may still be on its way (seconds)
_SENT_WAIT_RECOVERING = 2.5
_RECOVERING = 5.0
#: how long the reader's XREAD blocks in Redis (ms), and the longest the lean
#: connection waits for its answer beyond that before it gives the read up
#: as failed (a Redis that stopped answering); the writer's pipelines get the
#: same margin in all (docs/redis.md, "Hot paths")
_BLOCK_MS = 1000
_ANSWER_MARGIN = 4.0
#: what a request gets when Redis cannot be reached in time (docs/redis.md, Faults)
PUBLISH_REFUSED = "407::Redis unreachable"
REFUSED = "503::Redis unreachable"


_Client = coredis.Redis[bytes] | coredis.RedisCluster[bytes]
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def _connect(url: str) -> _Client:
    """A coredis client for ``url``: a Redis Cluster for ``redis+cluster://``,
    the master the sentinels name for ``redis+sentinel://`` (:mod:`._sentinel`).

    ``redis+cluster://[user:password@]host:port[,host:port...]`` names one or
    more startup nodes; the client finds the others and follows slot moves.
    Every retry is ours (:meth:`RedisBus._retry`).
    """
    if url.startswith(SENTINEL_SCHEME):
        return sentinel_client(url)
    if url.startswith(CLUSTER_SCHEMES):
        scheme, rest = url.split("://", 1)
        netloc = rest.split("/", 1)[0]
        auth, _, hosts = netloc.rpartition("@")
        user, _, password = auth.partition(":") if ":" in auth else ("", "", auth)
        nodes = []
        for host_port in hosts.split(","):
            parsed = urlsplit(f"//{host_port}")
            nodes.append(TCPLocation(parsed.hostname or "127.0.0.1", parsed.port or 6379))
        return coredis.RedisCluster(
            startup_nodes=nodes,
            username=unquote(user) or None,
            password=unquote(password) or None,
            ssl=scheme.startswith("rediss"),
            decode_responses=False,
            retry_policy=NoRetryPolicy(),
            connect_timeout=2.0,
        )
    return coredis.Redis.from_url(
        url, decode_responses=False, retry_policy=NoRetryPolicy(), connect_timeout=2.0
    )


def _redact(url: str) -> str:
    """``url`` without its passwords, for the log."""
    if url.startswith(SENTINEL_SCHEME):
        return str(parse_sentinel_url(url))
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    auth, at, hosts = netloc.rpartition("@")
    if at:
        user, colon, _ = auth.partition(":")
        netloc = f"{user}:***@{hosts}" if colon else f"***@{hosts}"
    return f"{scheme}{sep}{netloc}{slash}{tail.split('?', 1)[0]}"


def _parse(raw: bytes | str) -> StreamId:
    if isinstance(raw, bytes):
        # (int() reads ASCII digits from bytes too: no decoding)
        ms, _, seq = raw.partition(b"-")
        return int(ms), int(seq or 0)
    text_ms, _, text_seq = raw.partition("-")
    return int(text_ms), int(text_seq or 0)


def _fields(entry: StreamEntry) -> dict[bytes, bytes]:
    return {
        k if isinstance(k, bytes) else k.encode(): v if isinstance(v, bytes) else v.encode()
        for k, v in entry.field_values.items()
    }


#: one log entry as the reader uses it: its id and its fields
_Entry = tuple[bytes | str, dict[bytes, bytes]]


def _entries(reply: RespReply) -> list[_Entry]:
    """The entries of a raw ``XREAD`` reply of one stream,
    ``[[key, [[id, [field, value, ...]], ...]]]`` (or nil: none came)."""
    if reply is None:
        return []
    if type(reply) is ErrorReply:
        raise error_for(reply)
    out: list[_Entry] = []
    streams: Any = reply
    try:
        for _key, entries in streams:
            for entry_id, flat in entries:
                it = iter(flat)
                out.append((entry_id, dict(zip(it, it, strict=True))))
    except (TypeError, ValueError):
        raise coredis.exceptions.ProtocolError(f"not a stream read: {reply!r:.100}") from None
    return out


class _Commands:
    """A pipeline's commands, queued as on a coredis pipeline (the same
    calls), as the argument lists the lean connection sends."""

    __slots__ = ("commands",)

    def __init__(self) -> None:
        self.commands: list[tuple[Arg, ...]] = []

    def evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Arg]) -> None:
        self.commands.append(("EVALSHA", sha, len(keys), *keys, *args))

    def hset(self, key: str, mapping: dict[str, str | bytes]) -> None:
        command: list[Arg] = ["HSET", key]
        for field, value in mapping.items():
            command += (field, value)
        self.commands.append(tuple(command))

    def pexpire(self, key: str, milliseconds: int) -> None:
        self.commands.append(("PEXPIRE", key, milliseconds))


def _offset(stream_id: StreamId) -> int:
    """A log id as the history offset every node gives it (docs/delivery.md)."""
    return stream_id[0] * _SEQ_SPAN + min(stream_id[1], _SEQ_SPAN - 1)


def _json(value: Any) -> bytes:
    """``value`` as JSON (an extension's ``info``); null if it cannot be encoded."""
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return b"null"


def _fmt(stream_id: StreamId) -> str:
    return f"{stream_id[0]}-{stream_id[1]}"


def _refused_reply(reply: Reply) -> Reply:
    """``reply`` (without deliveries) with each acknowledgement that needed
    Redis turned into a failure, as the engine words one
    (:func:`bayeux_core.fail_without_backend`)."""
    if reply.messages:
        reply = _strip(reply)
    body = fail_without_backend(reply.body, error=REFUSED, publish_error=PUBLISH_REFUSED)
    return Reply(reply.conn, body)


def _strip(reply: Reply) -> Reply:
    """The reply without its deliveries (they are at the end of the array).

    With acknowledged delivery, its connect reply loses the batch's number
    too: the client must not count as received a batch that never came (the
    node that has the session next sends it under that number).
    """
    joined = b",".join(reply.messages)
    head = reply.body[: len(reply.body) - len(joined) - 1]
    if head.endswith(b","):
        head = head[:-1]
    body = head + b"]"
    if b'"ack"' in body:
        answers = orjson.loads(body)
        for answer in answers:
            ext = answer.get("ext")
            if message_kind(answer) is MessageKind.CONNECT and type(ext) is dict:
                ext.pop("ack", None)
                if not ext:
                    del answer["ext"]
        body = orjson.dumps(answers)
    return Reply(reply.conn, body)


class _Presence:
    """One presence change of a session: it entered (``join`` set) or left a channel."""

    __slots__ = ("channel", "info", "join", "leave", "seq", "user")

    def __init__(
        self,
        channel: str,
        user: str = "",
        info: bytes = b"null",
        join: bytes | None = None,
        leave: bytes = b"",
    ) -> None:
        self.channel = channel
        self.user = user
        self.info = info
        self.join = join
        self.leave = leave
        #: its number in this node's changes, given when first sent (kept for retries)
        self.seq = 0


def _counted(passes: list[_Pass]) -> int:
    """How many of ``passes`` count as pending writes: not those that only say
    that replies went out (a node that stops without them costs the next owner
    of those sessions a short wait, see RedisBus._handed_out)."""
    return sum(1 for work in passes if work.held or work.ops or work.xadds or not work.sent)


#: presence exits of sessions a pipeline deleted, for the next pipeline
_Endings = list[tuple[str, list[_Presence]]]


class _Ops:
    """What one pass changes in one session record."""

    __slots__ = (
        "batch",
        "create",
        "cursor",
        "delete",
        "epoch",
        "handed",
        "identity",
        "presence",
        "subs",
    )

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.create: str | None = None
        #: user and info (JSON) for a new record, when an extension set them
        self.identity: dict[str, bytes] | None = None
        self.cursor = ""
        #: with acknowledged delivery: the number of the batch ``cursor`` ends
        self.batch = ""
        #: the deliveries up to ``cursor`` were pushed already (not in a
        #: reply that waits for this write)
        self.handed = False
        self.delete = False
        self.subs: list[str] = []
        self.presence: list[_Presence] = []


class _Pass:
    """The writes of one hub pass, and the actions waiting for them."""

    __slots__ = ("held", "ops", "senders", "sent", "xadds")

    def __init__(self) -> None:
        self.xadds: list[dict[bytes, bytes]] = []
        #: for the appends (by index) that a client may send again: its
        #: clientId and the publish's id (JSON), to append them once (APPEND)
        self.senders: dict[int, tuple[str, bytes]] = {}
        self.ops: dict[str, _Ops] = {}
        self.held: list[Action] = []
        #: replies that went out after their cursor writes: (clientId, cursor)
        self.sent: list[tuple[str, str]] = []


class RedisBus:
    """Share one Bayeux server between processes through Redis.

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``),
            ``redis+cluster://host:port[,host:port...]`` for a Redis Cluster,
            or ``redis+sentinel://host:port[,host:port...]/mastername`` for
            the master a group of Redis Sentinels names (docs/redis.md).
        namespace: prefix of every key, so that clusters can share a Redis.
        ring_size: recent log entries kept in memory for adoptions.
        cursor_interval: how often WebSocket/EventSource cursors are written.
        retention: seconds of log kept; default twice the session TTL.
        ttl_margin: seconds a session record outlives the engine's own expiry
            (which is ``timeout + interval + session_timeout`` after a connect).
        request_timeout: longest a request waits for Redis: a claim that has
            not got through by then, or a pass whose writes have not, is
            answered with an error (``503::Redis unreachable``, a publish
            ``407::Redis unreachable``). A shorter outage is waited out.
        presence_sweep: with presence (``EngineConfig.presence``), how often
            this node looks for sessions whose record expired (their node
            died) to make them leave their channels (docs/redis.md, "Presence").
    """

    #: the cluster's nodes as this one reads them (bayeux_trio.redis._nodes), once running
    _nodes: NodeReporter | None = None

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "bayeux",
        ring_size: int = 10_000,
        cursor_interval: float = 0.05,
        retention: float | None = None,
        ttl_margin: float = 10.0,
        request_timeout: float = 5.0,
        presence_sweep: float = 1.0,
    ) -> None:
        if not (math.isfinite(request_timeout) and request_timeout > 0):
            raise ValueError("request_timeout must be a positive number of seconds")
        if not (math.isfinite(presence_sweep) and presence_sweep > 0):
            raise ValueError("presence_sweep must be a positive number of seconds")
        if url.startswith(SENTINEL_SCHEME):
            parse_sentinel_url(url)  # refuse a bad one now, not when the server starts
        self.url = url
        self.request_timeout = request_timeout
        self.namespace = namespace
        self.node = secrets.token_hex(8)
        self.log_key = f"{namespace}:{{log}}"
        self.cursor_interval = cursor_interval
        self._retention = retention
        self._ttl_margin = ttl_margin
        #: False while Redis cannot be reached
        self.healthy = True
        #: wall-clock time the current outage began, and its last error
        self._down_since: float | None = None
        #: when (trio's clock) Redis was last reachable again after an outage
        self._recovered_at = -math.inf
        self._error = ""
        self._hub: Hub | None = None
        self._client: _Client | None = None
        #: the lean connections of the writer's pipelines and the reader's
        #: XREAD (none on a Redis Cluster: coredis does it all there)
        self._write_link: Link | None = None
        self._read_link: Link | None = None
        self._pos: StreamId = (0, 0)
        self._pos_str = "0-0"
        self._ring: collections.deque[tuple[StreamId, str | None, bytes]] = collections.deque(
            maxlen=ring_size
        )
        #: every entry after this id, up to _pos, is in the ring
        self._floor: StreamId = (0, 0)
        #: set (and dropped) when the reader's position moves, if anyone waits
        self._advanced: trio.Event | None = None
        self._epochs: dict[str, int] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._outbox: list[_Pass] = []
        self._writing = 0
        #: written passes whose replies wait for the next pipeline (the
        #: presence exits of the sessions they deleted), and their failures
        self._carried: list[_Pass] = []
        self._carried_failed: dict[str, bool] = {}
        #: the scripts the writer's pipelines call by their SHA alone (a
        #: Script object in a coredis pipeline costs a SCRIPT EXISTS round
        #: trip each time), loaded on start and again when Redis lost them
        self._pipelined: list[Any] = []
        self._scripts_lost = True
        self._wake = trio.Event()
        #: sessions being taken back after a lost race (_resubscribe)
        self._resubscribing = 0
        self._nursery: trio.Nursery | None = None
        self._pushed: dict[str, StreamId] = {}
        #: held replies that carry deliveries, per session, and held pushes,
        #: per stream: a push to a session must not overtake them (_stall)
        self._replying: dict[str, int] = {}
        self._stalled: dict[int, int] = {}
        self._seq = itertools.count(1)
        self._last_ms = 0
        self._ttl_ms = 60_000
        self._claims = 0
        self._adoptions = 0
        #: the cluster's history epoch, once shared with the engine
        self._history_epoch: str | None = None
        # Presence (docs/redis.md, "Presence"): keys under <ns>:{log}:p
        self.presence_sweep = presence_sweep
        self._presence = False
        self._p = f"{self.log_key}:p"
        #: the presence generation the engine's members view belongs to
        self._generation = b""
        #: set once the view is known to match Redis; replaced while in doubt
        self._synced = trio.Event()
        self._synced.set()
        #: the view must be checked against Redis (an outage, a new generation)
        self._stale = False
        self._vanished = 0
        self._resyncs = 0
        #: Redis failed since the log was last checked (see _check_log)
        self._unchecked = False
        #: the writer's pipelines read the log for the reader (see _ride)
        self._riding = False
        #: pipelines that read the log for the reader (a count, for tests)
        self._rides = 0
        #: set when a ride ends
        self._ride_over = trio.Event()
        #: a writer's pipeline is out, its replies not in
        self._in_flight = False
        #: what the last pipeline read of the log, for the writer to take
        self._read_ahead: list[_Entry] | None = None
        self._lost_writes = 0

    # ------------------------------------------------------------- wiring

    def attach(self, hub: Hub) -> None:
        """Called by the server: this bus sees each of ``hub``'s passes first."""
        self._hub = hub
        hub.intercept = self.intercept
        cfg = hub.engine.config
        ttl = cfg.timeout + cfg.interval + cfg.session_expiry + self._ttl_margin
        self._ttl_ms = math.ceil(ttl * 1000)
        self._presence = bool(cfg.presence)

    @property
    def stats(self) -> dict[str, Any]:
        """Counters for health checks (``bayeux_trio.ops._health``) and tests."""
        outage: dict[str, Any] | None = None
        if self._down_since is not None:
            outage = {
                "since": round(self._down_since, 3),
                "seconds": round(time.time() - self._down_since, 3),
                "error": self._error,
            }
        return {
            "engine": "redis",
            "node": self.node,
            "healthy": self.healthy,
            "outage": outage,
            "position": self._pos_str,
            "sessions": len(self._epochs),
            "claims": self._claims,
            "adoptions": self._adoptions,
            # (without the notes that replies went out: SENT)
            "pending_writes": _counted(self._outbox)
            + self._writing
            + bool(self._pushed)
            + self._resubscribing,
            # sessions of dead nodes made to leave by this node's sweeper, and
            # members views rebuilt from Redis (it lost its data)
            "presence_vanished": self._vanished,
            "presence_rebuilt": self._resyncs,
            # times the log was found shorter than read (Redis lost writes)
            "lost_writes": self._lost_writes,
        }

    @property
    def nodes(self) -> NodeReporter | None:
        """Who is in the cluster, as this node last read it; None until it runs."""
        return self._nodes

    def record_key(self, client_id: str) -> str:
        return f"{self.namespace}:s:{{{client_id}}}"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, then read the log and write to Redis until cancelled."""
        if self._hub is None:
            raise RuntimeError("attach the bus to a server first")
        client = _connect(self.url)
        async with client, self._links(client):
            self._client = client
            self._claim = client.register_script(CLAIM)
            self._update = client.register_script(UPDATE)
            self._append = client.register_script(APPEND)
            self._sent = client.register_script(SENT)
            self._pipelined = [self._update, self._append, self._sent]
            if self._presence:
                self._apply = client.register_script(PRESENCE_APPLY)
                self._pipelined.append(self._apply)
                self._vanish = client.register_script(PRESENCE_VANISH)
                self._due = client.register_script(PRESENCE_DUE)
                self._rescore = client.register_script(PRESENCE_RESCORE)
                self._snapshot = client.register_script(PRESENCE_SNAPSHOT)
                # The members view and the log position from one atomic read:
                # the reader goes on from exactly where the view stands.
                last_id = await self._resync(start=True)
                if last_id is not None:
                    self._set_pos(last_id)
                    self._last_ms = self._pos[0]
            else:
                last = await self._retry("start", lambda: client.xrevrange(self.log_key, count=1))
                if last:
                    self._set_pos(_parse(last[0].identifier))
                    self._last_ms = self._pos[0]
            self._floor = self._pos
            if self._hub.engine.config.history:
                # One epoch per log, kept beside it: every node numbers the
                # same message alike, so a position is good on any node.
                key = f"{self.log_key}:history"
                await self._retry(
                    "history",
                    lambda: client.set(key, secrets.token_hex(4), condition=PureToken.NX),
                )
                epoch = await self._retry("history", lambda: client.get(key))
                if epoch is not None:
                    self._history_epoch = epoch.decode()
                    self._hub.share_history(self._history_epoch, _offset(self._pos))
            log.info("node %s on %s, log at %s", self.node, _redact(self.url), self._pos_str)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._reader)
                nursery.start_soon(self._writer)
                for link in (self._write_link, self._read_link):
                    if link is not None:
                        # their calls' deadlines, without a cancel scope each
                        nursery.start_soon(link.watch)
                nursery.start_soon(self._flusher)
                if self._presence:
                    nursery.start_soon(self._sweeper)
                self._nodes = NodeReporter(self)
                nursery.start_soon(self._nodes.run)
                task_status.started()

    @contextlib.asynccontextmanager
    async def _links(self, client: _Client) -> AsyncIterator[None]:
        """The writer's and the reader's lean connections (see :mod:`._lean`),
        for as long as the bus runs; none on a Redis Cluster."""
        endpoint = endpoint_of(client)
        if endpoint is None:
            yield
            return
        timeout = _BLOCK_MS / 1000 + _ANSWER_MARGIN
        self._write_link = Link(endpoint, read_timeout=timeout)
        self._read_link = Link(endpoint, read_timeout=timeout)
        try:
            yield
        finally:
            await self._write_link.aclose()
            await self._read_link.aclose()

    # ---------------------------------------------------- before the engine

    def ready_now(self, messages: Sequence[Message]) -> bool:
        """True when :meth:`prepare` has nothing to await for ``messages``
        (plain publishes, subscribes of a session this node holds), so the
        engine may take them without a coroutine."""
        return self._before_engine(messages) is None

    def _before_engine(
        self, messages: Sequence[Message]
    ) -> tuple[dict[str, bool], StreamId | None, bool] | None:
        """What :meth:`prepare` must await: the sessions to claim, the log
        position to reach, whether to wait for a resync; None: nothing."""
        connecting = claimed_sessions(messages)
        recover: StreamId | None = None
        epoch = self._history_epoch
        if epoch is not None:
            for message in messages:
                offset = recovery_offset(message, epoch)
                if offset is None:
                    continue
                since = divmod(offset, _SEQ_SPAN)
                if since[0] <= self._pos[0] + 60_000:
                    recover = since if recover is None else max(recover, since)
        # A members list must come from a view that matches Redis: after an
        # outage, wait until the reader has checked it (_resync).
        watching = not self._synced.is_set() and any(
            presence_probe(message) is not None for message in messages
        )
        if recover is None and not connecting and not watching:
            return None  # publishes: nothing to await
        return connecting, recover, watching

    async def prepare(self, messages: Sequence[Message]) -> None:
        """Own every session a batch names before the engine sees it.

        Which sessions those are, and which messages need Redis, is
        :mod:`bayeux_core`'s call (:func:`~bayeux_core.claimed_sessions`,
        :func:`~bayeux_core.recovery_offset`). Should the claims not get
        through to Redis within ``request_timeout``, the messages that need
        Redis are refused instead (:func:`~bayeux_core.refuse_without_backend`).
        """
        plan = self._before_engine(messages)
        if plan is None:
            return
        connecting, recover, watching = plan
        try:
            with trio.fail_after(self.request_timeout):
                if watching:
                    await self._synced.wait()
                if recover is not None:
                    # Recover only once this node has read as far as the
                    # position (it may come from a node further along); a
                    # position beyond is refused by the engine as bad.
                    with trio.move_on_after(1.0):
                        await self._reach(recover)
                for client_id, connect in connecting.items():
                    await self._take(client_id, connect=connect)
        except trio.TooSlowError:
            refuse_without_backend(messages, error=REFUSED, publish_error=PUBLISH_REFUSED)

    async def claim(self, client_id: str, *, connect: bool = False) -> None:
        """Make this node the owner of ``client_id``'s session, if it exists.

        Gives up after ``request_timeout`` while Redis is unreachable (logged):
        the session is then here only if it was already.
        """
        try:
            with trio.fail_after(self.request_timeout):
                await self._take(client_id, connect=connect)
        except trio.TooSlowError:
            log.warning("claim of session %s... given up: Redis unreachable", client_id[:6])

    async def _take(
        self, client_id: str, *, connect: bool = False, subs: Sequence[str] = ()
    ) -> None:
        """Claim ``client_id`` (see :meth:`claim`), retrying until Redis answers.

        ``subs`` are subscription changes (as in the ``UPDATE`` script) to
        record in the same atomic step.
        """
        lock = self._locks.get(client_id)
        if lock is None:
            lock = self._locks[client_id] = trio.Lock()
        try:
            async with lock:
                await self._claim_once(client_id, connect, subs)
        finally:
            if lock.statistics().tasks_waiting == 0 and self._locks.get(client_id) is lock:
                del self._locks[client_id]

    async def _claim_once(self, client_id: str, connect: bool, changes: Sequence[str] = ()) -> None:
        hub = self._hub
        assert hub is not None
        assert self._client is not None
        engine = hub.engine
        self._claims += 1
        local = engine.store.get(client_id)
        epoch = self._epochs.get(client_id, 0) if local is not None else 0
        # Nothing waiting, nor in flight: everything up to here is handed out.
        idle = (
            self._pos_str
            if local is not None
            and not local.queue
            and not local.unacked
            and client_id not in self._replying
            else ""
        )
        args = [self.node, str(epoch), idle, str(self._ttl_ms), "1" if connect else "0", *changes]
        key = self.record_key(client_id)
        result: list[Any] = await self._retry("claim", lambda: self._claim(keys=[key], args=args))
        status = int(result[0])
        if status == 1:
            return
        if engine.store.get(client_id) is not None:
            self._evict(client_id)
        if status == 0:
            return
        new_epoch = int(result[1])
        cursor = _parse(result[2] or b"0-0")
        connected = result[3] == b"c"
        previous = result[4]
        user = result[5].decode() if result[5] else None
        info = orjson.loads(result[6]) if result[6] else None
        access = orjson.loads(result[7]) if result[7] else None
        #: with acknowledged delivery: the last batch's number, and where it starts
        batch = int(result[8]) if result[8] else None
        start = _parse(result[9]) if batch is not None and result[9] else cursor
        handed = _parse(result[10]) if result[10] else cursor
        subs = {result[i].decode(): _parse(result[i + 1]) for i in range(11, len(result) - 1, 2)}
        self._adoptions += 1
        if previous != self.node.encode():
            evict = _Pass()
            evict.xadds.append(
                {
                    b"k": b"evict",
                    b"i": client_id.encode(),
                    b"n": self.node.encode(),
                    b"g": str(new_epoch).encode(),
                }
            )
            self._enqueue(evict)
        if batch is None and handed < cursor:
            cursor = await self._handed_out(client_id, handed, cursor)
        await self._wait_position(cursor)
        entries = await self._backlog(min(start, cursor), subs)
        # From here to adopt(): no await, so the reader goes on from exactly
        # where the backlog ends.
        acked: tuple[int, list[bytes]] | None = None
        if batch is not None:
            # The last batch may not have reached the client: it is sent
            # again, under its number, unless the client acknowledges it.
            acked = (batch, [payload for entry_id, payload in entries if entry_id <= cursor])
            backlog = [payload for entry_id, payload in entries if entry_id > cursor]
        else:
            backlog = [payload for _, payload in entries]
        if engine.store.get(client_id) is not None:
            self._evict(client_id)
        self._epochs[client_id] = new_epoch
        hub.adopt(
            client_id,
            subscriptions=list(subs),
            backlog=backlog,
            connected=connected,
            user=user,
            info=info,
            access=access,
            acked=acked,
        )

    async def _handed_out(self, client_id: str, handed: StreamId, cursor: StreamId) -> StreamId:
        """Where to replay from, when the last owner's last reply may not have gone out.

        Its cursor write came before the reply was sent; once sent, the node
        says so (SENT). A node that lives does that at once: wait a little
        for it. A node that died before sending its reply never does: replay
        that reply (the client gets those deliveries again, or for the first
        time, rather than never).
        """
        client = self._client
        assert client is not None
        key = self.record_key(client_id)
        recovering = trio.current_time() - self._recovered_at < _RECOVERING
        with trio.move_on_after(
            _SENT_WAIT_RECOVERING if recovering or not self.healthy else _SENT_WAIT
        ):
            while True:
                await trio.sleep(0.005 if not recovering else 0.02)
                raw = await self._retry("claim", lambda: client.hget(key, "d"))
                if raw is None or _parse(raw) >= cursor:
                    return cursor
        log.info("session %s...: its last reply may be lost; sending it again", client_id[:6])
        return handed

    async def _wait_position(self, target: StreamId) -> None:
        """Wait (a little) until the reader has passed ``target``."""
        with trio.move_on_after(5.0):
            await self._reach(target)

    async def _reach(self, target: StreamId) -> None:
        """Wait until the reader has passed ``target`` (woken by each read)."""
        while self._pos < target:
            advanced = self._advanced
            if advanced is None:
                advanced = self._advanced = trio.Event()
            await advanced.wait()

    async def _backlog(
        self, cursor: StreamId, subs: dict[str, StreamId]
    ) -> list[tuple[StreamId, bytes]]:
        """The publishes after ``cursor`` the session wants, up to the reader's
        position, with their log ids.

        Ends without awaiting after its last look at the ring buffer.
        """
        client = self._client
        assert client is not None
        assert self._hub is not None
        # With shared history, as the reader's route() numbers them.
        number = self._hub.numbered
        out: list[tuple[StreamId, bytes]] = []
        pos = cursor

        def wanted(entry_id: StreamId, channel: str) -> bool:
            return any(
                start < entry_id and matches(pattern, channel) for pattern, start in subs.items()
            )

        while pos < self._floor:
            start = "(" + _fmt(pos)
            page = await self._retry(
                "replay",
                lambda start=start: client.xrange(  # type: ignore[misc]
                    self.log_key, start, "+", count=_PAGE
                ),
            )
            if not page:
                log.warning("log entries after %s are gone (trimmed)", _fmt(pos))
                pos = self._floor
                break
            for entry in page:
                entry_id = _parse(entry.identifier)
                if entry_id > self._pos:
                    pos = max(pos, self._pos)
                    break
                fields = _fields(entry)
                channel = fields.get(b"c")
                if channel is not None and wanted(entry_id, channel.decode()):
                    out.append(
                        (entry_id, number(channel.decode(), fields[b"p"], _offset(entry_id)))
                    )
                pos = entry_id
        if subs:
            for entry_id, channel_name, payload in self._ring:
                if entry_id > pos and channel_name is not None and wanted(entry_id, channel_name):
                    out.append((entry_id, number(channel_name, payload, _offset(entry_id))))
        return out

    def _evict(self, client_id: str) -> None:
        hub = self._hub
        assert hub is not None
        self._epochs.pop(client_id, None)
        self._pushed.pop(client_id, None)
        hub.evict(client_id)

    # ------------------------------------------------------- the hub's pass

    def intercept(self, actions: list[Action]) -> list[Action]:
        """Split a pass: writes for Redis, actions to run now, replies to hold."""
        run: list[Action] = []
        held: list[Action] = []
        work: _Pass | None = None
        pos = self._pos_str
        epochs = self._epochs
        #: the streams whose pushes wait behind held deliveries (computed
        #: at the first push of the pass, when any are held)
        stalled: set[int] | None = None
        assert self._hub is not None

        def ops(client_id: str) -> _Ops | None:
            nonlocal work
            epoch = epochs.get(client_id)
            if epoch is None:
                return None
            if work is None:
                work = _Pass()
            found = work.ops.get(client_id)
            if found is None:
                found = work.ops[client_id] = _Ops(epoch)
            return found

        for action in actions:
            kind = type(action)
            if kind is Broadcast:
                broadcast: Broadcast = action  # type: ignore[assignment]
                if work is None:
                    work = _Pass()
                if broadcast.client_id is not None:
                    work.senders[len(work.xadds)] = (
                        broadcast.client_id,
                        _json(broadcast.message_id),
                    )
                work.xadds.append(
                    {
                        b"c": broadcast.channel.encode(),
                        b"p": broadcast.payload,
                        b"u": f"{self.node}:{next(self._seq)}".encode(),
                    }
                )
                continue
            if kind is Reply or kind is Close:
                if kind is Reply:
                    reply: Reply = action  # type: ignore[assignment]
                    if reply.client_id is not None and reply.messages:
                        found = ops(reply.client_id)
                        if found is not None:
                            found.cursor = pos
                            session = self._hub.engine.store.get(reply.client_id)
                            if session is not None and session.ack:
                                found.batch = str(session.batch)
                            # Held until the cursor is stored: the session's
                            # pushes wait behind it.
                            self._replying[reply.client_id] = (
                                self._replying.get(reply.client_id, 0) + 1
                            )
                            if stalled is not None:
                                stream = self._stream_of(reply.client_id)
                                if stream is not None:
                                    stalled.add(stream)
                held.append(action)
                continue
            if kind is Deliver:
                if not (self._replying or self._stalled):
                    run.append(action)
                    continue
                if stalled is None:
                    stalled = self._stalls()
                deliver: Deliver = action  # type: ignore[assignment]
                late = [conn for conn in deliver.conns if conn in stalled]
                if not late:
                    run.append(action)
                    continue
                if len(late) < len(deliver.conns):
                    ready = [conn for conn in deliver.conns if conn not in stalled]
                    run.append(Deliver(deliver.payload, ready))
                    deliver = Deliver(deliver.payload, late)
                for conn in late:
                    self._stalled[conn] = self._stalled.get(conn, 0) + 1
                if work is None:
                    work = _Pass()
                held.append(deliver)
                continue
            if kind is PresenceEntered or kind is PresenceExited:
                found = ops(action.client_id)  # type: ignore[attr-defined]
                if found is not None:
                    found.presence.append(self._presence_change(action))  # type: ignore[arg-type]
                continue  # for the bus alone
            if kind is Handshaken:
                client_id = action.client_id  # type: ignore[attr-defined]
                epochs[client_id] = 1
                found = ops(client_id)
                assert found is not None
                found.create = pos
                session = self._hub.engine.store.get(client_id)
                if session is not None:
                    identity: dict[str, bytes] = {}
                    if (
                        session.user is not None
                        or session.info is not None
                        or session.access is not None
                    ):
                        identity["f"] = _json(session.info)
                    if session.user is not None:
                        identity["u"] = session.user.encode()
                    if session.access is not None:
                        identity["a"] = _json(session.access)
                    if session.ack:
                        # Acknowledged delivery: no batch sent yet.
                        identity["b"] = b"0"
                        identity["k"] = pos.encode()
                    if identity:
                        found.identity = identity
            elif kind is Subscribed or kind is Unsubscribed:
                found = ops(action.client_id)  # type: ignore[attr-defined]
                if found is not None:
                    channel = action.channel  # type: ignore[attr-defined]
                    if kind is Subscribed:
                        found.subs += ["+", channel, pos]
                    else:
                        found.subs += ["-", channel]
            elif kind is Disconnected or kind is SessionExpired:
                client_id = action.client_id  # type: ignore[attr-defined]
                found = ops(client_id)
                if found is not None:
                    found.delete = True
                epochs.pop(client_id, None)
                self._pushed.pop(client_id, None)
            run.append(action)
        if work is None:
            return run + held
        work.held = held
        self._enqueue(work)
        return run

    def _stream_of(self, client_id: str) -> int | None:
        """The stream connection of a session of this node, if it has one."""
        assert self._hub is not None
        session = self._hub.engine.store.get(client_id)
        return session.stream if session is not None else None

    def _stalls(self) -> set[int]:
        """The streams whose pushes must wait: those of sessions with a held
        reply carrying deliveries, and those with held pushes.

        A session's deliveries must reach it in order whichever connections
        carry them: a connect reply carrying its backlog (held until its
        cursor is stored) and then a push of a newer message to its new
        WebSocket would otherwise arrive the wrong way round.
        """
        stalled = set(self._stalled)
        for client_id in self._replying:
            stream = self._stream_of(client_id)
            if stream is not None:
                stalled.add(stream)
        return stalled

    def _release(self, actions: list[Action]) -> None:
        """Held ``actions`` are about to run: the pushes behind them may go."""
        if not (self._replying or self._stalled):
            return
        replying = self._replying
        stalled = self._stalled
        for action in actions:
            kind = type(action)
            if kind is Reply:
                client_id = action.client_id  # type: ignore[attr-defined]
                if client_id is not None and action.messages:  # type: ignore[attr-defined]
                    left = replying.get(client_id, 0) - 1
                    if left > 0:
                        replying[client_id] = left
                    else:
                        replying.pop(client_id, None)
            elif kind is Deliver:
                for conn in action.conns:  # type: ignore[attr-defined]
                    left = stalled.get(conn, 0) - 1
                    if left > 0:
                        stalled[conn] = left
                    else:
                        stalled.pop(conn, None)

    @staticmethod
    def _presence_change(action: PresenceEntered | PresenceExited) -> _Presence:
        channel = action.channel
        if isinstance(action, PresenceExited):
            return _Presence(channel)
        user, info = action.user, action.info
        encoded = _json(info)
        if encoded == b"null":
            info = None
        return _Presence(
            channel,
            user,
            encoded,
            orjson.dumps(presence_delivery(channel, "join", user, info)),
            orjson.dumps(presence_delivery(channel, "leave", user, info)),
        )

    def _enqueue(self, work: _Pass) -> None:
        self._outbox.append(work)
        self._wake.set()

    # ------------------------------------------------------------ the writer

    async def _writer(self) -> None:
        # Presence exits of sessions a pipeline deleted: written by the next
        # pipeline, together with the passes that came meanwhile, and the
        # deleting passes' replies wait for them (docs/redis.md, "Presence").
        endings: _Endings = []
        while True:
            if not endings:
                if self._riding:
                    # The reader rides along: it reads on its own again
                    # if nothing comes to write for a while.
                    with trio.move_on_after(_RIDE_IDLE):
                        await self._wake.wait()
                    if not self._wake.is_set():
                        self._end_ride()
                await self._wake.wait()
            self._wake = trio.Event()
            passes, self._outbox = self._outbox, []
            if not passes and not endings:
                continue
            # counted in stats until their replies are out
            self._writing = _counted(passes) + _counted(self._carried)
            try:
                failed, endings = await self._write_all(passes, endings)
                self._settle()
                if endings:
                    self._carried, self._carried_failed = passes, failed
                else:
                    self._finish(passes, failed)
                read, self._read_ahead = self._read_ahead, None
                if read is not None:
                    if self._stale or self._unchecked:
                        self._end_ride()  # (the reader reads it again)
                    else:
                        self._consume(read)
            finally:
                self._writing = _counted(self._carried)

    def _settle(self) -> None:
        """Send the replies of the passes that waited for their exits."""
        if self._carried:
            carried, self._carried = self._carried, []
            self._finish(carried, self._carried_failed)

    async def _write_all(
        self, passes: list[_Pass], endings: Sequence[tuple[str, list[_Presence]]] = ()
    ) -> tuple[dict[str, bool], _Endings]:
        """Write ``passes`` (after ``endings``) until Redis takes them; give
        their replies up in time.

        Once the writes have failed for ``request_timeout``, the held replies
        go out refused (:meth:`_give_up`), and so do, at each further failed
        attempt (backoff up to 2 s), those of the passes that came meanwhile,
        which join ``passes``; the writes that remain are retried until Redis
        answers. The passes waiting for ``endings`` wrote all theirs: their
        replies go out as they are.
        """
        delay = 0.1
        recovering = False
        give_up_at = trio.current_time() + self.request_timeout
        given_up = False
        while True:
            try:
                result = await self._write(passes, recovering=recovering, endings=endings)
            except coredis.exceptions.NoScriptError:
                # Redis lost its script cache (a restart): load them, and
                # write again, as after a pipeline that failed halfway.
                log.info("Redis lost the scripts: loading them again")
                self._scripts_lost = True
                recovering = True
                continue
            except _RETRYABLE as exc:
                self._down("write", exc)
                self._end_ride()
                recovering = True
                if given_up or trio.current_time() >= give_up_at:
                    given_up = True
                    more, self._outbox = self._outbox, []
                    passes += more
                    self._settle()
                    self._writing = _counted(passes)
                    self._give_up(passes)
                with trio.move_on_at(give_up_at if not given_up else math.inf):
                    await trio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._up()
            return result

    def _give_up(self, passes: list[_Pass]) -> None:
        """Answer the held replies of ``passes`` now, refused; undo what they announced.

        A refused publish is not appended later, a refused handshake or
        subscription change not recorded, a connect's cursor not moved past
        the messages it no longer carries: those sessions are dropped here (a
        claim takes them back from their record). Deletions, evictions and
        passes that hold no reply (cursors of pushes) are still written.
        """
        released: list[Action] = []
        dropped: list[str] = []
        for work in passes:
            if not work.held:
                continue
            work.xadds = [fields for fields in work.xadds if b"c" not in fields]
            work.senders = {}
            for client_id, ops in work.ops.items():
                if not ops.delete:
                    # The subscription changes they belong to are not recorded.
                    ops.presence = []
                if ops.create is not None or ops.subs or ops.cursor:
                    ops.create = None
                    ops.subs = []
                    ops.cursor = ""
                    dropped.append(client_id)
            self._release(work.held)
            for action in work.held:
                released.append(_refused_reply(action) if type(action) is Reply else action)
            work.held = []
        if not released:
            return
        hub = self._hub
        assert hub is not None
        log.warning("%d replies refused: Redis unreachable", len(released))
        hub.execute(released)
        for client_id in dropped:
            if client_id in self._epochs:
                self._evict(client_id)

    def _minid(self) -> str:
        """Log entries before this id may be trimmed (the retention, in Redis' clock)."""
        retention_ms = self._retention * 1000 if self._retention is not None else 2 * self._ttl_ms
        return f"{max(0, self._last_ms - int(retention_ms))}-0"

    async def _write(
        self,
        passes: list[_Pass],
        *,
        recovering: bool,
        endings: Sequence[tuple[str, list[_Presence]]] = (),
    ) -> tuple[dict[str, bool], _Endings]:
        """One pipeline for these passes and the exits of ``endings``.

        Returns the sessions whose fenced writes failed, and the presence
        exits of the sessions this pipeline deleted, for the next one.
        """
        client = self._client
        assert client is not None
        link = self._write_link
        if self._scripts_lost:
            if link is not None:
                # On the connection that calls them: the same server even
                # while a Sentinel failover moves the master.
                raise_first_error(
                    await link.pipeline([("SCRIPT", "LOAD", s.script) for s in self._pipelined])
                )
            else:
                for script in self._pipelined:
                    await client.script_load(script.script)
            self._scripts_lost = False
        present: set[bytes] = set()
        if recovering:
            # A failed pipeline may have been applied in part: do not append twice.
            if link is not None:
                (tail,) = await link.pipeline(
                    [("XREVRANGE", self.log_key, "+", "-", "COUNT", _RECOVERY_SCAN)]
                )
                if type(tail) is ErrorReply:
                    raise error_for(tail)
                found = [fields for _, fields in _entries([[b"", tail]])]
            else:
                found = [
                    _fields(e) for e in await client.xrevrange(self.log_key, count=_RECOVERY_SCAN)
                ]
            present = {u for fields in found if (u := fields.get(b"u")) is not None}
        minid = self._minid()
        ttl = str(self._ttl_ms)
        kinds: list[tuple[str, str]] = []
        #: every presence change of this pipeline, in order, for one script
        #: call at its end: first the exits of the sessions that the last
        #: pipeline deleted (each numbered before this pipeline's own changes)
        changes: list[tuple[str, _Presence]] = []
        for client_id, exits in endings:
            for change in exits:
                if not change.seq:
                    change.seq = next(self._seq)
                changes.append((client_id, change))
        #: presence changes of sessions this pipeline deletes: made only once
        #: the (fenced) deletion got through, so a node that lost the session
        #: cannot make its user leave (docs/redis.md, "Presence")
        ending: _Endings = []
        #: the appends not yet queued: consecutive passes' appends go in one
        #: APPEND call, queued before the next other command (order kept)
        run: list[str | bytes] = []
        run_keys: list[str] = [self.log_key]

        def flush(pipe: Any) -> None:
            if run:
                pipe.evalsha(
                    self._append.sha, keys=list(run_keys), args=[minid, _RECENT, ttl, *run]
                )
                kinds.append(("x", ""))
                run.clear()
                del run_keys[1:]

        # The lean connection takes the same calls as a coredis pipeline.
        recorder = _Commands() if link is not None else None
        pipeline: contextlib.AbstractAsyncContextManager[Any] = (
            contextlib.nullcontext(recorder)
            if recorder is not None
            else client.pipeline(transaction=False)
        )
        async with pipeline as pipe:
            for work in passes:
                senders = work.senders
                for i, fields in enumerate(work.xadds):
                    if fields.get(b"u", b"") in present:
                        continue
                    sender = senders.get(i) if senders else None
                    if sender is not None:
                        # Appended unless the client sent it before, to any node.
                        client_id, message_id = sender
                        run_keys.append(f"{self.log_key}:r:{client_id}")
                        run += (str(len(run_keys)), message_id)
                    else:
                        run += ("0", "")
                    run.append(str(2 * len(fields)))
                    for name, value in fields.items():
                        run += (name, value)
                if work.sent or work.ops:
                    flush(pipe)
                for client_id, cursor in work.sent:
                    pipe.evalsha(self._sent.sha, keys=[self.record_key(client_id)], args=[cursor])
                    kinds.append(("-", ""))
                for client_id, ops in work.ops.items():
                    key = self.record_key(client_id)
                    if ops.create is not None:
                        record: dict[str, str | bytes] = {
                            "o": self.node,
                            "g": "1",
                            "c": ops.create,
                            "d": ops.create,
                            "t": "h",
                        }
                        if ops.identity is not None:
                            record.update(ops.identity)
                        pipe.hset(key, record)
                        pipe.pexpire(key, self._ttl_ms)
                        kinds += [("-", ""), ("-", "")]
                    if ops.cursor or ops.subs or ops.delete:
                        update = [
                            self.node,
                            str(ops.epoch),
                            ttl,
                            ops.cursor,
                            "1" if ops.delete else "0",
                            ops.batch,
                            "1" if ops.handed else "0",
                            *ops.subs,
                        ]
                        pipe.evalsha(self._update.sha, keys=[key], args=update)
                        kinds.append(("u", client_id))
                    if ops.presence:
                        if ops.delete:
                            ending.append((client_id, ops.presence))
                        else:
                            for change in ops.presence:
                                if not change.seq:
                                    change.seq = next(self._seq)
                                changes.append((client_id, change))
            flush(pipe)
            if changes:
                self._apply_presence(pipe, changes, minid)
                kinds.append(("-", ""))
        results: Sequence[Any]
        if recorder is not None:
            assert link is not None
            commands = recorder.commands
            # The reader rides along (see _ride): read the log after our writes.
            reading = self._riding
            if reading and (self._stale or self._unchecked):
                # After an outage the reader checks the log before reading.
                self._end_ride()
                reading = False
            if reading:
                commands.append(("XREAD", "COUNT", _PAGE, "STREAMS", self.log_key, self._pos_str))
            if commands:
                self._in_flight = True
                try:
                    results = await link.pipeline(commands)
                finally:
                    self._in_flight = False
            else:
                results = []
            # As a coredis pipeline: every command ran, the first error is raised.
            raise_first_error(results)
            if reading:
                read = _entries(results[-1])
                results = results[:-1]
                self._rides += 1
                if not self._riding or self._stale or self._unchecked:
                    self._end_ride()  # (left for the reader to read again)
                else:
                    # Taken once this pipeline's replies are out (_writer):
                    # a publisher's reply does not wait for its fan-out.
                    self._read_ahead = read
                    if len(read) >= _PAGE:
                        self._end_ride()  # more to read: the reader's turn
        else:
            results = pipe.results or ()
        failed: dict[str, bool] = {}
        for (kind, client_id), result in zip(kinds, results, strict=False):
            if kind == "x" and isinstance(result, list):
                for entry_id in reversed(result):
                    if isinstance(entry_id, bytes):
                        self._last_ms = max(self._last_ms, _parse(entry_id)[0])
                        break
            elif kind == "u" and result == 0:
                failed[client_id] = True
        ending = [(client_id, exits) for client_id, exits in ending if client_id not in failed]
        return failed, ending

    def _apply_presence(self, pipe: Any, changes: list[tuple[str, _Presence]], minid: str) -> None:
        """Queue one script call on ``pipe`` for these enters and exits, in
        order (docs/redis.md, "Presence")."""
        p = self._p
        keys = [self.log_key, f"{p}a", f"{p}z", f"{p}n:{self.node}"]
        args: list[str | bytes] = [
            str(2 * self._ttl_ms),
            minid,
            PRESENCE_PREFIX,
            str(self._ttl_ms),
        ]
        for client_id, change in changes:
            keys += (f"{p}:{change.channel}", f"{p}c:{client_id}")
            if change.join is None:
                args += ("x", str(change.seq), change.channel, client_id)
            else:
                args += (
                    "e",
                    str(change.seq),
                    change.channel,
                    client_id,
                    change.user,
                    change.info,
                    change.join,
                    change.leave,
                )
        pipe.evalsha(self._apply.sha, keys=keys, args=args)

    def _finish(self, passes: list[_Pass], failed: dict[str, bool]) -> None:
        hub = self._hub
        assert hub is not None
        # Subscription changes the engine accepted but another node's claim
        # fenced out: they must not be acknowledged and then forgotten.
        resubscribe: dict[str, list[str]] = {}
        for work in passes:
            for client_id, ops in work.ops.items():
                if ops.subs and not ops.delete and client_id in failed:
                    resubscribe.setdefault(client_id, []).extend(ops.subs)
        for client_id in failed:
            # Not ours any more (or gone): the new owner replays what we held.
            log.debug("lost session %s... to another node", client_id[:6])
            self._evict(client_id)
        held: list[Action] = []
        delayed: list[Action] = []
        sent = _Pass()
        for work in passes:
            out = delayed if resubscribe and not resubscribe.keys().isdisjoint(work.ops) else held
            self._release(work.held)
            for action in work.held:
                if type(action) is not Reply or not action.messages:
                    out.append(action)
                elif failed and action.client_id in failed:
                    out.append(_strip(action))
                else:
                    out.append(action)
                    receiver = action.client_id
                    written = work.ops.get(receiver) if receiver is not None else None
                    if receiver is not None and written is not None and not written.batch:
                        sent.sent.append((receiver, written.cursor))
        if held:
            hub.execute(held)
        if sent.sent:
            # Said in the next pipeline (the node taking a session over waits for it).
            self._enqueue(sent)
        if resubscribe:
            assert self._nursery is not None
            self._resubscribing += 1
            self._nursery.start_soon(self._resubscribe, resubscribe, delayed)

    async def _resubscribe(self, changes: dict[str, list[str]], replies: list[Action]) -> None:
        """Take sessions back with their fenced-out subscription changes, then reply.

        The claim records the changes atomically with the takeover, so the
        acknowledged subscription is in force wherever the session goes next.
        """
        hub = self._hub
        assert hub is not None
        try:
            for client_id, subs in changes.items():
                log.debug("taking session %s... back to record its subscriptions", client_id[:6])
                await self._take(client_id, subs=subs)
        finally:
            self._resubscribing -= 1
            if replies:
                hub.execute(replies)

    async def _flusher(self) -> None:
        """Write the cursors of sessions that got pushed deliveries, every so often."""
        while True:
            await trio.sleep(self.cursor_interval)
            if not self._pushed:
                continue
            pushed, self._pushed = self._pushed, {}
            # Pushes held behind a reply (_stalls) have not gone out yet:
            # their cursors wait for the next round.
            waiting = self._stalls() if self._replying or self._stalled else None
            work = _Pass()
            for client_id, entry_id in pushed.items():
                epoch = self._epochs.get(client_id)
                if epoch is None:
                    continue
                if waiting and self._stream_of(client_id) in waiting:
                    self._pushed.setdefault(client_id, entry_id)
                    continue
                ops = work.ops[client_id] = _Ops(epoch)
                ops.cursor = _fmt(entry_id)
                ops.handed = True
            if work.ops:
                self._enqueue(work)

    # ------------------------------------------------------------ the reader

    def _set_pos(self, entry_id: StreamId) -> None:
        self._pos = entry_id
        self._pos_str = _fmt(entry_id)

    async def _reader(self) -> None:
        while True:
            if self._unchecked:
                await self._check_log()
            if self._stale:
                await self._resync()
            if self._riding:
                await self._ride()
                continue
            found = await self._retry("read", self._read_log)
            if not found or self._stale or self._unchecked:
                continue  # after an outage: check the log and the members view first
            self._consume(found)
            if (self._in_flight or self._outbox) and self._write_link is not None:
                # Under load: the writer's pipelines read what it appends,
                # and the rest, instead of waking this task after each.
                self._start_ride()

    async def _ride(self) -> None:
        """Wait while the writer's pipelines read the log (each one ends
        with an ``XREAD`` that does not block): one round trip a batch
        instead of two. The writer ends the ride once it has had nothing to
        write for ``_RIDE_IDLE`` (or a read filled a page, or Redis failed),
        and this task reads (and blocks) on its own again."""
        await self._ride_over.wait()

    def _start_ride(self) -> None:
        self._riding = True
        self._ride_over = trio.Event()

    def _end_ride(self) -> None:
        if self._riding:
            self._riding = False
            self._ride_over.set()

    def _consume(self, found: list[_Entry]) -> None:
        """Take the log's entries in order: route the deliveries, act on
        evictions, move the position on."""
        hub = self._hub
        assert hub is not None
        ring = self._ring
        route = hub.route
        now = trio.current_time()
        pos = start = self._pos
        full = ring.maxlen is not None
        for identifier, fields in found:
            entry_id = _parse(identifier)
            if entry_id <= pos:
                continue
            if full and len(ring) == ring.maxlen:
                self._floor = ring[0][0]
            # (self._pos moves with each entry; its string once at the
            # end: nothing reads it in between but an eviction's pass)
            self._pos = pos = entry_id
            channel = fields.get(b"c")
            if channel is not None:
                name = channel.decode()
                payload = fields[b"p"]
                ring.append((entry_id, name, payload))
                routed = route(name, payload, now=now, offset=_offset(entry_id))
                for session in routed:
                    # Pushed down its stream, so its cursor moves on. An
                    # acknowledging session's deliveries wait in its queue
                    # for a numbered batch instead: its cursor moves with
                    # the batches (intercept), else a new owner would count
                    # queued messages into the last batch sent, and lose them.
                    if session.stream is not None and not session.ack:
                        self._pushed[session.client_id] = entry_id
                continue
            ring.append((entry_id, None, b""))
            if fields.get(b"k") == b"evict":
                self._set_pos(entry_id)
                self._on_evict(fields)
        if pos != start:
            self._set_pos(pos)
        hub.pump()
        advanced = self._advanced
        if advanced is not None:
            self._advanced = None
            advanced.set()

    async def _read_log(self) -> list[_Entry]:
        """The log's next entries after the reader's position (an ``XREAD``
        that blocks up to a second), on the lean connection but on a Cluster."""
        link = self._read_link
        if link is not None:
            (reply,) = await link.pipeline(
                [
                    (
                        "XREAD",
                        "COUNT",
                        _PAGE,
                        "BLOCK",
                        _BLOCK_MS,
                        "STREAMS",
                        self.log_key,
                        self._pos_str,
                    )
                ]
            )
            return _entries(reply)
        client = self._client
        assert client is not None
        found = await client.xread({self.log_key: self._pos_str}, count=_PAGE, block=_BLOCK_MS)
        if not found:
            return []
        return [
            (entry.identifier, _fields(entry)) for entries in found.values() for entry in entries
        ]

    async def _check_log(self) -> None:
        """After an outage: if the entry at this node's position is gone from
        a log that still holds earlier ones, Redis lost writes (a Sentinel
        failover to a replica that lacked them, a restart without them), and
        the reader goes on from the last entry that survived.

        Read on from the old position, entries appended meanwhile would be
        skipped for as long as their ids (the new master's clock) stay below
        it. The ring forgets the lost entries, and the members view is
        rebuilt from Redis, as when Redis lost everything (docs/redis.md).
        Trimming cannot look like a loss: it removes the oldest entries, so
        an earlier one survives only if the one at the position does.
        """
        client = self._client
        assert client is not None
        self._unchecked = False
        if self._pos == (0, 0):
            return
        pos = self._pos_str
        before = await self._retry(
            "read", lambda: client.xrevrange(self.log_key, end=pos, start="-", count=1)
        )
        if not before:
            # Nothing up to the position: trimmed, or an empty log (Redis
            # lost it all, and then every later entry is new).
            empty = not await self._retry("read", lambda: client.xlen(self.log_key))
            survivor = (0, 0) if empty else self._pos
        else:
            survivor = _parse(before[0].identifier)
        if survivor == self._pos:
            return
        log.warning(
            "Redis lost writes (a failover or restart): the log's entries after %s "
            "up to %s are gone; reading on from %s",
            _fmt(survivor),
            pos,
            _fmt(survivor),
        )
        ring = self._ring
        while ring and ring[-1][0] > survivor:
            ring.pop()
        self._floor = min(self._floor, survivor)
        self._set_pos(survivor)
        self._lost_writes += 1
        if self._presence:
            self._generation = b""  # a generation no snapshot has: rebuild
            self._doubt()

    def _on_evict(self, fields: dict[bytes, bytes]) -> None:
        if fields.get(b"n") == self.node.encode():
            return
        client_id = fields[b"i"].decode()
        epoch = self._epochs.get(client_id)
        if epoch is not None and epoch < int(fields[b"g"]):
            self._evict(client_id)

    # ------------------------------------------------------------- presence

    async def _resync(self, *, start: bool = False) -> StreamId | None:
        """Check the engine's members view against Redis; rebuild it if Redis lost it.

        The snapshot script reads every member and the log's last id in one
        step, and names the presence generation (made anew, and kept, by
        whichever node first finds none: Redis lost its data). At the start,
        or when the generation changed, the view becomes the snapshot's. The
        reader goes on from where it was: entries up to the snapshot's id
        that it reads again are in the view already, and the engine sends
        such repeats to no one. Returns the snapshot's log id.
        """
        hub = self._hub
        assert hub is not None
        p = self._p
        fresh = secrets.token_hex(8)
        result: list[Any] = await self._retry(
            "presence",
            lambda: self._snapshot(keys=[self.log_key, f"{p}a", f"{p}g"], args=[fresh, f"{p}:"]),
        )
        self._stale = False
        generation, last = result[0], result[1]
        if start or generation != self._generation:
            members: dict[str, dict[str, Any]] = {}
            for channel, flat in result[2:]:
                rows = sorted(
                    (_parse(flat[i + 1]), flat[i].decode(), flat[i + 2])
                    for i in range(0, len(flat), 3)
                )
                members[channel.decode()] = {user: orjson.loads(info) for _, user, info in rows}
            hub.engine.reset_presence(members)
            if not start:
                self._resyncs += 1
                log.warning(
                    "presence: Redis lost its state; members view rebuilt (%d channels)",
                    len(members),
                )
            self._generation = generation
        self._synced.set()
        return _parse(last) if last else None

    def _doubt(self) -> None:
        """The members view may no longer match Redis: check before trusting it."""
        self._stale = True
        if self._synced.is_set():
            self._synced = trio.Event()

    async def _sweeper(self) -> None:
        """Make the sessions of dead nodes leave, every ``presence_sweep`` seconds."""
        while True:
            await trio.sleep(self.presence_sweep)
            await self._sweep()

    async def _sweep(self, batch: int = 500) -> int:
        """One look at the sessions due for a check; the leaves it made.

        A session whose record is gone (expired: its node died, or ended it
        and died before saying so) leaves every channel it was in; one that
        lives is looked at again when its record would expire. Every node
        sweeps; the scripts make each leave once.
        """
        client = self._client
        assert client is not None
        p = self._p
        due: list[bytes] = await self._retry(
            "sweep", lambda: self._due(keys=[f"{p}z", f"{p}g"], args=[str(batch)])
        )
        if due[0] != self._generation:
            self._doubt()
        ids = [cid.decode() for cid in due[1:]]
        if not ids:
            return 0

        async def ttls() -> tuple[Any, ...]:
            async with client.pipeline(transaction=False) as pipe:
                for cid in ids:
                    pipe.pttl(self.record_key(cid))
            return pipe.results or ()

        found = await self._retry("sweep", ttls)
        alive: list[str] = []
        gone: list[str] = []
        for cid, ttl in zip(ids, found, strict=True):
            if ttl == -2:
                gone.append(cid)
            else:
                alive += [cid, str(ttl if ttl > 0 else self._ttl_ms)]
        minid = self._minid()

        async def act() -> tuple[Any, ...]:
            async with client.pipeline(transaction=False) as pipe:
                if alive:
                    self._rescore(keys=[f"{p}z"], args=alive, client=pipe)
                for cid in gone:
                    self._vanish(
                        keys=[self.log_key, f"{p}c:{cid}", f"{p}a", f"{p}z"],
                        args=[cid, minid, PRESENCE_PREFIX, f"{p}:"],
                        client=pipe,
                    )
            return pipe.results or ()

        results = await self._retry("sweep", act)
        left = sum(int(r) for r in results[1 if alive else 0 :])
        if left:
            log.info("presence: %d leaves of %d expired sessions", left, len(gone))
        self._vanished += left
        return left

    # ------------------------------------------------------------- outages

    async def _retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` until Redis answers; log the outage once each way.

        On a request's path, the caller bounds this with a deadline.
        """
        delay = 0.1
        while True:
            try:
                result = await call()
            except _RETRYABLE as exc:
                self._down(what, exc)
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._up()
            return result

    def _down(self, what: str, exc: BaseException) -> None:
        self._error = f"{what}: {type(exc).__name__}: {exc}"
        # The log must be checked before it is read on (_check_log).
        self._unchecked = True
        if isinstance(exc, coredis.exceptions.ReadOnlyError) and self._client is not None:
            # A master demoted under open connections (a Sentinel failover):
            # new ones ask the sentinels where the master is now.
            self._client.connection_pool.disconnect()
            for link in (self._write_link, self._read_link):
                if link is not None:
                    link.reset()
        if self._presence:
            self._doubt()
        if self.healthy:
            self.healthy = False
            self._down_since = time.time()
            log.warning("Redis unreachable (%s); retrying", self._error)

    def _up(self) -> None:
        if not self.healthy:
            self.healthy = True
            down = time.time() - (self._down_since or time.time())
            self._down_since = None
            self._recovered_at = trio.current_time()
            log.warning("Redis reachable again after %.1f s", down)
