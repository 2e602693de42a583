"""Redis Sentinel: ``--engine redis+sentinel://...`` and what a failover does.

The failover tests start a real master, a replica and three sentinels
(:mod:`._sentinel_support`), two Bayeux nodes on them (one in this process,
one ``bayeux serve --engine redis+sentinel://...`` process), subscribers of
both transports on both nodes, and kill the master with SIGKILL while
acknowledged publishes flow. Once the sentinels have promoted the replica,
every client must keep working, and every publish acknowledged after the
failover (and every one acknowledged and replicated before it) must reach
every subscriber exactly once, in each publisher's order. What a failover may
lose or repeat in between is docs/redis.md's "Sentinel".

Under ``CI=true`` a missing ``redis-server``, ``redis-sentinel`` or Node.js
fails these tests; elsewhere they are skipped (:mod:`tests._support.ci`).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from bayeux_core import EngineConfig, PublishError
from bayeux_trio import BayeuxClient, BayeuxServer, ClientError, Subscription, open_client
from bayeux_trio.redis import RedisBus
from bayeux_trio.redis._bus import _redact
from bayeux_trio.redis._sentinel import SentinelURL, parse_sentinel_url
from tests._support.ci import unavailable
from tests._support.waiting import eventually, wait_for, wait_until
from tests.interop._support import ensure_node_modules
from tests.trio.helpers import fail_after, make_config

from ._sentinel_support import REDIS_SENTINEL, SERVICE, SentinelGroup, command
from ._support import Node, RoundRobin, check_exactly_once_in_order, namespace, start_nodes
from .conftest import REDIS_SERVER, RedisProcess

# coredis leaves anyio memory streams unclosed when a connection attempt
# fails (the master is down); the garbage collector then warns. Not ours.
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

CHANNEL = "/failover"
#: acknowledged publishes per publisher, before the kill and after the failover
PER_PHASE = 10

# ------------------------------------------------------------------- the URL


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/main",
            SentinelURL((("10.0.0.1", 26379), ("10.0.0.2", 26380)), "main"),
        ),
        (
            "redis+sentinel://sentinel.example/main",
            SentinelURL((("sentinel.example", 26379),), "main"),
        ),
        (
            "redis+sentinel://app:p%40ss@[::1]:5000,h:1/my%20master?db=3"
            "&sentinel_username=watch&sentinel_password=s3",
            SentinelURL(
                (("::1", 5000), ("h", 1)),
                "my master",
                db=3,
                username="app",
                password="p@ss",
                sentinel_username="watch",
                sentinel_password="s3",
            ),
        ),
        (
            "redis+sentinel://:only-a-password@h:1/m",
            SentinelURL((("h", 1),), "m", password="only-a-password"),
        ),
        (
            "redis+sentinel://h:1/m?sentinel_password=a+b%26c",
            SentinelURL((("h", 1),), "m", sentinel_password="a+b&c"),
        ),
    ],
)
def test_sentinel_urls_are_read(url: str, expected: SentinelURL) -> None:
    assert parse_sentinel_url(url) == expected


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis://h:1/0", "starts with redis+sentinel://"),
        ("redis+sentinel://h:1", "names the master after the hosts"),
        ("redis+sentinel://h:1/", "names the master after the hosts"),
        ("redis+sentinel://h:1/a/b", "names the master after the hosts"),
        ("redis+sentinel://h:1,,h:2/m", "host:port,host:port"),
        ("redis+sentinel://h:port/m", "bad port in sentinel address 'h:port'"),
        ("redis+sentinel://:1/m", "no host in sentinel address ':1'"),
        ("redis+sentinel://h:1/m?db=x", "db must be a number >= 0, not 'x'"),
        ("redis+sentinel://h:1/m?db=-1", "db must be a number >= 0"),
        ("redis+sentinel://h:1/m?password=x", "unknown option 'password'"),
        ("redis+sentinel://h:1/m?db=1&db=2", "option 'db' given twice"),
        ("redis+sentinel://h:1/m#x", "no #fragment"),
    ],
)
def test_bad_sentinel_urls_are_refused_saying_why(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        parse_sentinel_url(url)
    if url.startswith("redis+sentinel://"):  # refused when made, not when started
        with pytest.raises(ValueError, match=re.escape(complaint)):
            RedisBus(url)


def test_passwords_never_reach_the_log() -> None:
    url = "redis+sentinel://app:hunter2@h:1,h:2/main?db=2&sentinel_password=s3cr3t"
    settings = parse_sentinel_url(url)
    for text in (str(settings), repr(settings), _redact(url)):
        assert "hunter2" not in text
        assert "s3cr3t" not in text
    assert str(settings) == "redis+sentinel://app:***@h:1,h:2/main?db=2&sentinel_password=***"
    assert parse_sentinel_url(str(settings)).sentinels == settings.sentinels
    assert _redact("redis://:hunter2@h:1/0") == "redis://:***@h:1/0"
    assert _redact("redis://user:hunter2@h:1/0?x=1") == "redis://user:***@h:1/0"
    assert _redact("redis+cluster://u:hunter2@a:1,b:2") == "redis+cluster://u:***@a:1,b:2"
    assert _redact("redis://h:1/0") == "redis://h:1/0"


@fail_after(20)
async def test_the_command_line_refuses_a_bad_sentinel_url_without_its_password() -> None:
    bad = "redis+sentinel://app:hunter2@h:1,h:2"  # no master name
    result = await trio.run_process(
        [sys.executable, "-m", "bayeux_trio", "serve", "--port", "0", "--engine", bad],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "--engine: a Sentinel URL names the master after the hosts" in err
    assert "hunter2" not in err


# --------------------------------------------------- Redis lost the log's tail


@pytest.mark.parametrize("presence", [False, True])
@fail_after(30)
async def test_a_log_that_lost_its_tail_is_read_on_from_what_survived(
    redis_server: RedisProcess, nursery: trio.Nursery, presence: bool
) -> None:
    """What a node does when the new master lacks the last entries it read.

    The node reads an entry whose id is a minute ahead (as if appended by an
    old master whose clock ran ahead), then Redis loses it, as a promoted
    replica that never got it would, and the node's connections break.
    Entries appended afterwards have smaller ids: a node that read on from
    its old position would skip them all. With presence, the members view
    is rebuilt from Redis, as after Redis lost everything.
    """
    ns = namespace()
    engine = EngineConfig(presence=("/chat/**",) if presence else (), timeout=10)
    (server,) = await start_nodes(nursery, redis_server.url, 1, ns=ns, engine=engine)
    assert server.port is not None
    bus = server.bus
    assert isinstance(bus, RedisBus)
    subscriber = RoundRobin([server.port])
    await subscriber.handshake()
    await subscriber.subscribe("/tail")
    await subscriber.connect()
    publisher = RoundRobin([server.port])
    await publisher.handshake()
    await publisher.publish("/tail", {"p": 0, "n": 0})
    await subscriber.poll_until(1)
    log_key = f"{ns}:{{log}}"
    port = redis_server.port
    survivor = command(port, "XREVRANGE", log_key, "+", "-", "COUNT", 1)[0][0].decode()
    ahead = f"{int(time.time() * 1000) + 60_000}-0"
    command(port, "XADD", log_key, ahead, "k", "test")
    await wait_for(lambda: bus.stats["position"] == ahead, attempts=2000)
    command(port, "XDEL", log_key, ahead)
    command(port, "XSETID", log_key, survivor)
    command(port, "CLIENT", "KILL", "TYPE", "normal")
    await wait_for(lambda: bus.stats["lost_writes"] == 1, attempts=2000)
    assert bus.stats["position"] == survivor
    if presence:
        await wait_for(lambda: bus.stats["presence_rebuilt"] == 1, attempts=2000)
    for n in range(1, 4):
        await publisher.publish("/tail", {"p": 0, "n": n})
    with trio.fail_after(10):
        await subscriber.poll_until(4)
    check_exactly_once_in_order(subscriber.received, 1, 4)
    gc.collect()


# ---------------------------------------------------------------- a failover


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelGroup]:
    if REDIS_SERVER is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    if REDIS_SENTINEL is None:
        unavailable("redis-sentinel is not installed (apt-get install redis-sentinel)")
    group = SentinelGroup(REDIS_SERVER, REDIS_SENTINEL, tmp_path)
    try:
        group.start()
        yield group
    finally:
        group.stop()


@fail_after(30)
async def test_a_node_follows_a_master_replaced_without_dying(
    sentinels: SentinelGroup, nursery: trio.Nursery
) -> None:
    """``SENTINEL FAILOVER``: the old master lives on and breaks no
    connection, and stays a master until the sentinels reconfigure it (up to
    10 s later); the bus asks the sentinels every second and moves."""
    ns = namespace()
    (server,) = await start_nodes(nursery, sentinels.url, 1, ns=ns)
    assert server.port is not None
    bus = server.bus
    assert isinstance(bus, RedisBus)
    subscriber = RoundRobin([server.port])
    await subscriber.handshake()
    await subscriber.subscribe("/moved")
    await subscriber.connect()
    publisher = RoundRobin([server.port])
    await publisher.handshake()
    for n in range(3):
        await publisher.publish("/moved", {"p": 0, "n": n})
    await subscriber.poll_until(3)
    await trio.to_thread.run_sync(
        lambda: wait_until(sentinels.replicated, "the replica to catch up", timeout=10)
    )
    assert command(sentinels.sentinel_ports[0], "SENTINEL", "FAILOVER", SERVICE) == b"OK"
    await trio.to_thread.run_sync(sentinels.wait_failover, 20.0)
    log_key = f"{ns}:{{log}}"
    new_master = sentinels.replica_port

    def on_new_master(data: str) -> bool:
        entries = command(new_master, "XREVRANGE", log_key, "+", "-", "COUNT", 20)
        return any(data.encode() in b"".join(fields) for _, fields in entries)

    # Probes until one lands on the new master: the node has moved, within
    # a few seconds (the sentinels would reconfigure the old master later).
    with trio.move_on_after(4) as scope:
        probe = 0
        while True:
            await publisher.publish("/probe", f"probe-{probe}")
            if on_new_master(f"probe-{probe}"):
                break
            probe += 1
            await trio.sleep(0.1)
    assert not scope.cancelled_caught, "4 s after the failover, still on the old master"
    for n in range(3, 6):
        await publisher.publish("/moved", {"p": 0, "n": n})
        assert on_new_master(f'"n":{n}')
    with trio.fail_after(10):
        await subscriber.poll_until(6)
    check_exactly_once_in_order(subscriber.received, 1, 6)
    assert bus.stats["healthy"]
    gc.collect()


Received = dict[str, list[dict[str, Any]]]

# The npm faye 1.4.3 client as subscribers: one per (endpoint, transport),
# each delivery a JSON line on stdout; runs until its stdin closes.
FAYE_SUBSCRIBERS = r"""
'use strict';
const http = require('http');
const faye = require('faye');
const options = JSON.parse(process.argv[2]);
http.globalAgent = new http.Agent({ keepAlive: false });
function emit(event, fields) {
  process.stdout.write(JSON.stringify(Object.assign({ event: event }, fields || {})) + '\n');
}
process.on('uncaughtException', (e) => { emit('error', { message: String(e) }); process.exit(1); });
(async () => {
  const clients = [];
  for (const spec of options.subscribers) {
    const client = new faye.Client(spec.endpoint, { timeout: 5, retry: 1 });
    if (spec.transport === 'long-polling') client.disable('websocket');
    await client.subscribe(options.channel, (data) => emit('message', { client: spec.name, data }));
    clients.push(client);
  }
  emit('subscribed');
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
})().catch((e) => { emit('error', { message: String(e) }); process.exit(1); });
"""


@asynccontextmanager
async def python_subscribers(endpoints: list[str], received: Received) -> AsyncIterator[None]:
    """Our client, over WebSocket and long-polling, on each endpoint."""
    # The collecting tasks end with their clients, which the stack closes.
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        for i, endpoint in enumerate(endpoints):
            for transport in ("websocket", "long-polling"):
                name = f"python-{transport}-{i}"
                out = received[name] = []
                client = await stack.enter_async_context(
                    open_client(endpoint, transports=[transport], retry=0.1, max_retry=0.5)
                )
                subscription = await client.subscribe(CHANNEL)

                async def collect(sub: Subscription = subscription, out: list[Any] = out) -> None:
                    async for message in sub:
                        out.append(message.data)

                nursery.start_soon(collect)
        yield


@asynccontextmanager
async def faye_subscribers(
    endpoints: list[str], received: Received, script: Path
) -> AsyncIterator[None]:
    """The npm faye client, over WebSocket and long-polling, on each endpoint."""
    node_modules = await trio.to_thread.run_sync(ensure_node_modules)
    specs = []
    for i, endpoint in enumerate(endpoints):
        for transport in ("websocket", "long-polling"):
            name = f"faye-{transport}-{i}"
            received[name] = []
            specs.append({"name": name, "endpoint": endpoint, "transport": transport})
    await trio.Path(script).write_text(FAYE_SUBSCRIBERS)
    options = json.dumps({"channel": CHANNEL, "subscribers": specs})
    env = {**os.environ, "NODE_PATH": str(node_modules)}
    env.pop("http_proxy", None)
    env.pop("HTTP_PROXY", None)
    process = await trio.lowlevel.open_process(
        ["node", str(script), options],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    subscribed = trio.Event()
    errors: list[str] = []

    async def read_lines() -> None:
        assert process.stdout is not None
        buffer = b""
        async for chunk in process.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                event = json.loads(line)
                if event["event"] == "message":
                    received[event["client"]].append(event["data"])
                elif event["event"] == "subscribed":
                    subscribed.set()
                elif event["event"] == "error":
                    errors.append(event["message"])
                    subscribed.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_lines)
            with trio.fail_after(15):
                await subscribed.wait()
            assert not errors, errors
            yield
            await process.stdin.aclose()
            with trio.fail_after(5):
                await process.wait()
            assert not errors, errors
    finally:
        if process.returncode is None:
            process.kill()
            with trio.move_on_after(5):
                await process.wait()


def counted(received: Received, phase: str) -> dict[str, int]:
    return {
        name: sum(1 for d in got if isinstance(d, dict) and d.get("phase") == phase)
        for name, got in received.items()
    }


def phase_of(got: list[dict[str, Any]], phase: str) -> list[dict[str, Any]]:
    return [{"data": d} for d in got if isinstance(d, dict) and d.get("phase") == phase]


@pytest.mark.parametrize("subscribers", ["python", "faye"])
@fail_after(45)
async def test_every_client_keeps_working_across_a_failover(
    sentinels: SentinelGroup, nursery: trio.Nursery, tmp_path: Path, subscribers: str
) -> None:
    if subscribers == "faye":
        # Node.js and the pinned npm faye, or skip (fail under CI) before starting anything
        await trio.to_thread.run_sync(ensure_node_modules)
    url = sentinels.url
    # One node in this process, one `bayeux serve` on the same sentinels.
    process = Node(url, "--timeout", "5")
    try:
        local = BayeuxServer(
            make_config(engine=EngineConfig(timeout=5)), bus=RedisBus(url, request_timeout=8)
        )
        await nursery.start(local.serve)
        await trio.to_thread.run_sync(process.wait_listening)
        ports = [local.port, process.port]
        endpoints = [f"http://127.0.0.1:{port}/faye" for port in ports]
        received: Received = {}
        if subscribers == "python":
            subscribing = python_subscribers(endpoints, received)
        else:
            subscribing = faye_subscribers(endpoints, received, tmp_path / "subscribers.js")
        async with (
            subscribing,
            open_client(endpoints[0], transports=["long-polling"], retry=0.1) as first,
            open_client(endpoints[1], transports=["websocket"], retry=0.1) as second,
        ):
            await failover_under_load(sentinels, [first, second], received)
    finally:
        process.stop()
    gc.collect()


async def failover_under_load(
    sentinels: SentinelGroup, publishers: list[BayeuxClient], received: Received
) -> None:
    names = list(received)
    expected = len(publishers) * PER_PHASE
    started = trio.current_time()
    #: when each step ended, in seconds from the start (printed with -s)
    timeline: dict[str, float] = {}

    def mark(step: str) -> None:
        timeline[step] = round(trio.current_time() - started, 2)

    async def publish_phase(phase: str) -> None:
        async def one(p: int, client: BayeuxClient) -> None:
            for n in range(PER_PHASE):
                await client.publish(CHANNEL, {"p": p, "n": n, "phase": phase})

        async with trio.open_nursery() as inner:
            for p, client in enumerate(publishers):
                inner.start_soon(one, p, client)

    async def all_arrived(phase: str, seconds: float) -> None:
        def done() -> bool:
            return all(count >= expected for count in counted(received, phase).values())

        try:
            await eventually(done, seconds=seconds)
        except AssertionError:
            raise AssertionError(f"{phase}: {counted(received, phase)}") from None

    # Before: acknowledged and replicated, so none may be lost.
    await publish_phase("before")
    await all_arrived("before", 10)
    mark("before")
    await trio.to_thread.run_sync(
        lambda: wait_until(sentinels.replicated, "the replica to catch up", timeout=10)
    )

    # During: publishes flow while the master dies and the sentinels promote
    # the replica; some are refused (407) or lost, none may break a client.
    failed_over = trio.Event()
    during: list[tuple[int, int, str]] = []

    async def keep_publishing(p: int, client: BayeuxClient) -> None:
        n = 0
        while not failed_over.is_set():
            try:
                await client.publish(CHANNEL, {"p": p, "n": n, "phase": "during"})
                during.append((p, n, "acknowledged"))
            except (PublishError, ClientError) as exc:
                during.append((p, n, f"refused: {exc}"))
            n += 1
            await trio.sleep(0.02)

    async with trio.open_nursery() as inner:
        for p, client in enumerate(publishers):
            inner.start_soon(keep_publishing, p, client)
        await trio.sleep(0.3)
        await trio.to_thread.run_sync(sentinels.kill_master)
        took = await trio.to_thread.run_sync(sentinels.wait_failover, 30.0)
        failed_over.set()
    mark("failover")
    assert sentinels.master() == sentinels.replica_port
    assert took < 30

    # Every client works again: probes from each publisher, until every
    # subscriber has one of each.
    async def probe(p: int, client: BayeuxClient) -> None:
        for k in itertools.count():
            with contextlib.suppress(PublishError):  # a node still waiting for Redis
                await client.publish(CHANNEL, {"probe": k, "p": p})
            await trio.sleep(0.1)

    def unprobed() -> list[str]:
        return [
            name
            for name in names
            if {d["p"] for d in received[name] if "probe" in d} != set(range(len(publishers)))
        ]

    async with trio.open_nursery() as inner:
        for p, client in enumerate(publishers):
            inner.start_soon(probe, p, client)
        try:
            await eventually(lambda: not unprobed(), seconds=20)
        except AssertionError:
            raise AssertionError(f"probes missing at {unprobed()}") from None
        inner.cancel_scope.cancel()
    mark("probed")

    # After: acknowledged on the new master, each exactly once everywhere.
    await publish_phase("after")
    await all_arrived("after", 15)
    mark("after")
    await trio.sleep(0.3)  # a late duplicate would arrive now
    for name in names:
        for phase in ("before", "after"):
            try:
                check_exactly_once_in_order(
                    phase_of(received[name], phase), len(publishers), PER_PHASE
                )
            except AssertionError as exc:
                raise AssertionError(f"{name}, {phase} the failover: {exc}") from None
    acknowledged = sum(1 for *_, outcome in during if outcome == "acknowledged")
    print(
        f"failover in {took:.1f} s; during it {acknowledged} of {len(during)} publishes "
        f"acknowledged; deliveries of them per subscriber: {counted(received, 'during')}; "
        f"steps done at (s): {timeline}"
    )
