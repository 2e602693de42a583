"""Failover keeps order (issue 18): a node of a Redis cluster dies while messages flow.

Two ``bayeux serve`` nodes on one redis-server, clients in front of them
through loopback proxies (``_proxy``): a *pinning* one that sends its clients
to node A until it dies (so that WebSocket clients are on the node that is
killed, and move), and a *round-robin* one that sends every long-polling
request to the next node. npm faye 1.4.3 clients (default transports:
WebSocket after an HTTP handshake; and long-polling), our Python client, and
client.js in Chromium. docs/redis.md, "What each client gets when a node
dies", is the table these tests check.

* Subscribers: a backend publishes numbered messages to node B over HTTP;
  node A is SIGKILLed a third of the way in. Every subscriber gets every
  number, in order, and the backlog of a session that moved comes before any
  live message. A client without acknowledged delivery may get the last few
  numbers before the move again (the pushes of the last ``cursor_interval``,
  or a reply on its way out); ours with acknowledged delivery gets each
  exactly once.
* Publishers: clients publish to node A, which is SIGKILLed with publishes in
  flight (Redis paused, so that some are in the log without their replies)
  and restarted; the clients send again what got no reply, and the node that
  gets a copy recognises it: every subscriber gets each publish exactly
  once, and our clients' publishes in the order they were made.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from bayeux_core import MessageReceived, Reply
from bayeux_trio.client import BayeuxClient, open_client
from bayeux_trio.redis._bus import _strip
from tests._support.ports import HOST, free_port
from tests._support.processes import wait_listening
from tests._support.waiting import eventually
from tests.browser._support import PAGES, check_playwright, chromium_path, launch_chromium
from tests.interop._support import JS_DIR, ensure_node_modules
from tests.trio.helpers import HANDSHAKE, WsClient, bayeux, fail_after

from ._proxy import RoundRobinProxy
from ._support import start_nodes
from .conftest import RedisProcess

pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

SCRIPT = JS_DIR / "faye_failover.js"
CHANNEL = "/failover"
#: numbered messages the backend publishes, how many per second, and when node A dies
MESSAGES = 300
RATE = 150
KILL_AT = MESSAGES // 3
#: how far back (in messages) a Faye client may be replayed at a move: the
#: pushes of the last cursor_interval (50 ms) and of the kill's own pass
REPLAY_WINDOW = 30


class ServeProcess:
    """``bayeux serve --engine <url>`` on a fixed port, so that it can come back there."""

    def __init__(self, url: str, log: Path, *args: str) -> None:
        self.url = url
        self.args = args
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "bayeux_trio", "serve", "--port", str(self.port),
                    "--engine", self.url, "--log-level", "warning", *self.args,
                ],
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        assert wait_listening(self.port, timeout=30, process=self.process), self.log.read_text()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def endpoint(self) -> str:
        return endpoint(self.port)


def endpoint(port: int) -> str:
    return f"http://{HOST}:{port}/faye"


@pytest.fixture
def nodes(redis_server: RedisProcess, tmp_path: Path) -> Iterator[list[ServeProcess]]:
    url = redis_server.url.rsplit("/", 1)[0] + "/9"
    # The browser test's page (client.js and a harness) comes from the nodes.
    started = [
        ServeProcess(url, tmp_path / f"node{i}.log", "--static", str(PAGES)) for i in range(2)
    ]
    try:
        for node in started:
            node.start()
        yield started
    finally:
        for node in started:
            node.stop()


@pytest.fixture(scope="module")
def node_modules() -> Path:
    return ensure_node_modules()


class FayeClients:
    """A node process running npm faye clients (js/faye_failover.js); its events."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []

    def of(self, event: str, client: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["event"] == event and (client is None or e.get("client") == client)
        ]

    async def read(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                event = json.loads(line)
                self.events.append(event)
                assert event["event"] != "error", event


@asynccontextmanager
async def faye_clients(node_modules: Path, options: dict[str, Any]) -> AsyncIterator[FayeClients]:
    env = {**os.environ, "NODE_PATH": str(node_modules)}
    for name in ("http_proxy", "HTTP_PROXY"):
        env.pop(name, None)
    process = await trio.lowlevel.open_process(
        ["node", str(SCRIPT), json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        cwd=JS_DIR,
    )
    clients = FayeClients(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(clients.read)
            yield clients
            assert process.stdin is not None
            await process.stdin.aclose()
            with trio.fail_after(10):
                await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert clients.events[-1]["event"] == "done", clients.events[-3:]


def check_in_order(numbers: list[int], *, replays: bool, count: int = MESSAGES) -> None:
    """Every number below ``count``, each after its predecessor, backlog before live.

    With ``replays``, the sequence may go back a little (at most
    :data:`REPLAY_WINDOW`) and run on again from there: a client that moved
    getting the last pushes before the move again. Never a number ahead of
    the next one due (a live message before the backlog), never a gap.
    """
    high = -1
    previous = -1
    for i, n in enumerate(numbers):
        if n == previous + 1 and n <= high + 1:
            high = max(high, n)
        elif replays and n <= high and high - n < REPLAY_WINDOW:
            pass  # a replay starts
        else:
            around = numbers[max(0, i - 8) : i + 8]
            raise AssertionError(f"{n} after {previous} (highest so far {high}) at #{i}: {around}")
        previous = n
    assert high == count - 1, f"got up to {high} of {count}"


async def publish_numbers(port: int, kill: trio.Event) -> None:
    """The backend: MESSAGES numbered publishes to ``port``, RATE a second."""
    start = trio.current_time()
    for n in range(MESSAGES):
        if n == KILL_AT:
            kill.set()
        (reply,) = await bayeux(port, [{"channel": CHANNEL, "data": {"n": n}}])
        assert reply["successful"] is True, reply
        await trio.sleep_until(start + (n + 1) / RATE)


class Ours:
    """One of our Python clients, subscribed, collecting the numbers it gets."""

    def __init__(self, name: str, url: str, transport: str, *, ack: bool) -> None:
        self.name = name
        self.url = url
        self.transport = transport
        self.ack = ack
        self.numbers: list[int] = []
        #: (p, n) of each delivery, when a list is given
        self.collect: list[tuple[str, int]] | None = None

    def _received(self, message: MessageReceived) -> None:
        data = message.data
        if self.collect is not None:
            self.collect.append((data["p"], data["n"]))
        else:
            self.numbers.append(data["n"])

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        client: BayeuxClient
        async with open_client(
            self.url, transports=[self.transport], ack=self.ack, retry=0.5, max_retry=1.0
        ) as client:
            await client.subscribe(CHANNEL, self._received)
            task_status.started()
            await trio.sleep_forever()


def numbers_of(faye: FayeClients, name: str) -> list[int]:
    return [e["data"]["n"] for e in faye.of("message", name)]


@fail_after(40)
async def test_a_session_that_moves_gets_its_backlog_before_live_messages(
    nodes: list[ServeProcess], node_modules: Path
) -> None:
    a, b = nodes
    with (
        RoundRobinProxy([a.port, b.port], rotate=False) as pinned,
        RoundRobinProxy([a.port, b.port]) as hopping,
    ):
        # WebSocket clients on node A until it dies; long-polling ones on
        # both nodes, each request on the next.
        faye_specs = [
            {"name": f"faye-ws{i}", "endpoint": endpoint(pinned.port), "transport": "websocket"}
            for i in range(6)
        ] + [
            {"name": f"faye-lp{i}", "endpoint": endpoint(hopping.port), "transport": "long-polling"}
            for i in range(2)
        ]
        ours = [
            Ours("ours-ws-ack", endpoint(pinned.port), "websocket", ack=True),
            Ours("ours-lp-ack", endpoint(hopping.port), "long-polling", ack=True),
            Ours("ours-ws", endpoint(pinned.port), "websocket", ack=False),
            Ours("ours-lp", endpoint(hopping.port), "long-polling", ack=False),
        ]
        options = {"channel": CHANNEL, "subscribers": faye_specs, "lifetime": 60_000}
        async with faye_clients(node_modules, options) as faye, trio.open_nursery() as nursery:
            await eventually(lambda: len(faye.of("subscribed")) == len(faye_specs), seconds=15)
            for client in ours:
                await nursery.start(client.run)
            kill = trio.Event()

            async def killer() -> None:
                await kill.wait()
                a.kill()

            nursery.start_soon(killer)
            await publish_numbers(b.port, kill)

            def missing() -> dict[str, list[int]]:
                got = {s["name"]: numbers_of(faye, s["name"]) for s in faye_specs}
                got.update({c.name: c.numbers for c in ours})
                lacking = {name: sorted(set(range(MESSAGES)) - set(n)) for name, n in got.items()}
                return {name: lack[:10] for name, lack in lacking.items() if lack}

            try:
                await eventually(lambda: not missing(), seconds=10)
            except AssertionError:
                raise AssertionError(f"lost: {missing()} (logs: {a.log}, {b.log})") from None
            await trio.sleep(0.3)  # a late copy would show
            nursery.cancel_scope.cancel()
    # The WebSocket clients were on node A, and moved.
    assert all(faye.of("transport_down", s["name"]) for s in faye_specs[:6])
    got = {s["name"]: (numbers_of(faye, s["name"]), True) for s in faye_specs}
    # Our client with acknowledged delivery gets each message exactly once.
    got.update({c.name: (c.numbers, not c.ack) for c in ours})
    failures = []
    for name, (numbers, replays) in got.items():
        try:
            check_in_order(numbers, replays=replays)
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    assert not failures, "\n".join(failures)


#: each publisher's publishes, and how often it makes one
PUBLISHES = 150
EVERY = 0.01


@contextmanager
def redis_paused(redis: RedisProcess) -> Iterator[None]:
    """Stop redis-server (SIGSTOP) for the block: writes sent meanwhile wait in its socket."""
    assert redis.process is not None
    redis.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        redis.process.send_signal(signal.SIGCONT)


async def publish_in_order(client: BayeuxClient, name: str) -> None:
    """PUBLISHES publishes, one every EVERY seconds, each made before the
    previous one's reply came (so that some are in flight when a node dies)."""

    async def one(n: int, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        # Handed to the client before the next one: client.publish does
        # that before its first checkpoint.
        await client.publish(CHANNEL, {"p": name, "n": n})

    async with trio.open_nursery() as nursery:
        for n in range(PUBLISHES):
            await nursery.start(one, n)
            await trio.sleep(EVERY)


@fail_after(45)
async def test_publishes_resent_to_a_restarted_node_reach_subscribers_once(
    nodes: list[ServeProcess], node_modules: Path, redis_server: RedisProcess
) -> None:
    a, b = nodes
    subscribers = [
        {"name": "faye-ws", "endpoint": b.endpoint, "transport": "websocket"},
        {"name": "faye-lp", "endpoint": b.endpoint, "transport": "long-polling"},
    ]
    publishers = [
        {"name": f"faye-{kind}", "endpoint": a.endpoint, "transport": transport,
         "count": PUBLISHES, "every": int(EVERY * 1000)}
        for kind, transport in (("ws", "websocket"), ("lp", "long-polling"))
    ]  # fmt: skip
    ours = [
        Ours("ours-ws", b.endpoint, "websocket", ack=True),
        Ours("ours-lp", b.endpoint, "long-polling", ack=True),
    ]
    names = ["faye-ws", "faye-lp", "ours-ws", "ours-lp"]
    received: dict[str, list[tuple[str, int]]] = {o.name: [] for o in ours}
    async with trio.open_nursery() as nursery:
        for client in ours:
            client.collect = received[client.name]
            await nursery.start(client.run)
        options = {"channel": CHANNEL, "subscribers": subscribers, "lifetime": 60_000}
        async with faye_clients(node_modules, options) as faye:
            await eventually(lambda: len(faye.of("subscribed")) == len(subscribers), seconds=15)
            options = {"channel": CHANNEL, "publishers": publishers, "lifetime": 60_000}
            async with (
                faye_clients(node_modules, options) as faye_publisher,
                open_client(a.endpoint, transports=["websocket"], retry=0.5) as ws,
                open_client(a.endpoint, transports=["long-polling"], retry=0.5) as lp,
                trio.open_nursery() as publishing,
            ):
                publishing.start_soon(publish_in_order, ws, "ours-ws")
                publishing.start_soon(publish_in_order, lp, "ours-lp")
                await trio.sleep(PUBLISHES * EVERY / 3)
                # Node A dies with publishes in its pipeline to Redis: Redis
                # takes them once it runs again, but their replies are lost.
                with redis_paused(redis_server):
                    await trio.sleep(0.3)
                    a.kill()
                await trio.to_thread.run_sync(a.start)
                expected = {(p, n) for p in names for n in range(PUBLISHES)}

                def everyone_has_all() -> bool:
                    faye_done = all(
                        {(e["data"]["p"], e["data"]["n"]) for e in faye.of("message", s["name"])}
                        >= expected
                        for s in subscribers
                    )
                    return faye_done and all(set(received[o.name]) >= expected for o in ours)

                await eventually(everyone_has_all, seconds=20)
                await trio.sleep(0.5)  # a late copy would show
            publishing_events = faye_publisher.events
        nursery.cancel_scope.cancel()
    assert all(e["ok"] for e in publishing_events if e["event"] == "published")
    got = {s["name"]: [(e["data"]["p"], e["data"]["n"]) for e in faye.of("message", s["name"])]
           for s in subscribers}  # fmt: skip
    got.update(received)
    for name, pairs in got.items():
        copies = sorted({pair for pair in pairs if pairs.count(pair) > 1})
        assert not copies, f"{name} got these publishes twice: {copies}"
        # Our clients' publishes arrive in the order they were made.
        for publisher in ("ours-ws", "ours-lp"):
            numbers = [n for p, n in pairs if p == publisher]
            assert numbers == sorted(numbers), f"{name} from {publisher}: {numbers}"


#: client.js in the page (tests/browser/pages: client.js and harness.js's
#: until()): two clients (WebSocket, long-polling), once connected, each
#: publish {p, n} PUBLISHES times, one every `every` ms without waiting for
#: replies; window.published collects [p, n, true or the error] as they come
START_PUBLISHING = """
async ({endpoint, count, every, channel}) => {
  window.published = [];
  const clients = [];
  for (const transport of ['websocket', 'long-polling']) {
    const client = new Faye.Client(endpoint, {retry: 0.5});
    if (transport === 'long-polling') {
      client.disable('websocket');
      client.disable('eventsource');
    }
    // Publishing starts on the transport the client keeps, so that the
    // WebSocket client is on its WebSocket when the node dies.
    await new Promise((resolve) => client.connect(resolve));
    await until(() => client._dispatcher.connectionType === transport, 10000, transport);
    clients.push([transport === 'websocket' ? 'js-ws' : 'js-lp', client]);
  }
  for (const [name, client] of clients) {
    let n = 0;
    const next = () => {
      const m = n++;
      client.publish(channel, {p: name, n: m}).then(
        () => window.published.push([name, m, true]),
        (error) => window.published.push([name, m, String(error)]));
      if (n < count) setTimeout(next, every);
    };
    next();
  }
}
"""


def browser_publishes(page_url: str, endpoint: str, started: Callable[[], None]) -> list[Any]:
    """Run client.js publishers in Chromium (in this thread) until every
    publish has its result; call ``started`` once they publish."""
    with launch_chromium() as browser:
        page = browser.new_page()
        page.goto(page_url)
        page.evaluate(
            START_PUBLISHING,
            {"endpoint": endpoint, "count": PUBLISHES, "every": EVERY * 1000, "channel": CHANNEL},
        )
        started()
        deadline = time.monotonic() + 30
        while page.evaluate("window.published.length") < 2 * PUBLISHES:
            assert time.monotonic() < deadline, page.evaluate("window.published.length")
            page.wait_for_timeout(50)
        published: list[Any] = page.evaluate("window.published")
        page.close()
        return published


@fail_after(45)
async def test_client_js_keeps_its_publishes_in_order_across_a_restart(
    nodes: list[ServeProcess], redis_server: RedisProcess
) -> None:
    check_playwright()
    chromium_path()
    a, b = nodes
    ours = [
        Ours("ours-ws", b.endpoint, "websocket", ack=True),
        Ours("ours-lp", b.endpoint, "long-polling", ack=True),
    ]
    received: dict[str, list[tuple[str, int]]] = {o.name: [] for o in ours}
    result: list[Any] = []
    async with trio.open_nursery() as nursery:
        for client in ours:
            client.collect = received[client.name]
            await nursery.start(client.run)
        publishing = trio.Event()
        token = trio.lowlevel.current_trio_token()

        async def run_browser() -> None:
            def started() -> None:
                trio.from_thread.run_sync(publishing.set, trio_token=token)

            result.extend(
                await trio.to_thread.run_sync(
                    browser_publishes, f"http://{HOST}:{a.port}/index.html", a.endpoint, started
                )
            )

        nursery.start_soon(run_browser)
        await publishing.wait()
        await trio.sleep(PUBLISHES * EVERY / 3)
        with redis_paused(redis_server):
            await trio.sleep(0.3)
            a.kill()
        await trio.to_thread.run_sync(a.start)
        expected = {(p, n) for p in ("js-ws", "js-lp") for n in range(PUBLISHES)}
        await eventually(lambda: all(set(r) >= expected for r in received.values()), seconds=25)
        await trio.sleep(0.5)  # a late copy would show
        nursery.cancel_scope.cancel()
    assert [r for r in result if r[2] is not True] == []
    disorder = []
    for name, pairs in received.items():
        copies = sorted({pair for pair in pairs if pairs.count(pair) > 1})
        assert not copies, f"{name} got these publishes twice: {copies}"
        for publisher in ("js-ws", "js-lp"):
            numbers = [n for p, n in pairs if p == publisher]
            if numbers != sorted(numbers):
                disorder.append(f"{name} from {publisher}: {numbers}")
    assert not disorder, "\n".join(disorder)


@pytest.mark.parametrize(
    ("ext", "kept"),
    [({"ack": 3}, None), ({"ack": 3, "timesync": {"tc": 1}}, {"timesync": {"tc": 1}})],
)
def test_a_reply_sent_without_its_deliveries_loses_its_batch_number(
    ext: dict[str, Any], kept: dict[str, Any] | None
) -> None:
    # A node that lost the session (or Redis) sends the connect reply without
    # its batch; the client must not count that batch as received, or it
    # would drop it when the next owner sends it under the same number.
    delivery = b'{"channel":"/a","data":1}'
    connect = {"channel": "/meta/connect", "successful": True, "ext": ext}
    body = b"[" + orjson.dumps(connect) + b"," + delivery + b"]"
    (stripped,) = orjson.loads(_strip(Reply(1, body, "c", (delivery,))).body)
    assert stripped.get("ext") == kept
    assert stripped["successful"] is True


@fail_after(30)
async def test_a_queued_message_of_an_acknowledging_websocket_session_survives_a_move(
    redis_server: RedisProcess, nursery: trio.Nursery
) -> None:
    # A session with acknowledged delivery on a WebSocket gets its deliveries
    # in numbered connect replies, not pushes: one that arrives between two
    # batches waits in its queue. The record's cursor must stay at the end of
    # the last batch sent, or the node that takes the session over counts the
    # queued message into that batch, which the client acknowledges (or drops
    # as a copy): the message would be lost.
    a, b = await start_nodes(nursery, redis_server.url, 2)
    assert a.port
    assert b.port
    bus = a.bus
    assert bus is not None
    async with await WsClient.connect(a.port) as ws:
        await ws.send_json([{**HANDSHAKE, "ext": {"ack": True}}])
        (shaken,) = await ws.receive_json()
        assert shaken["ext"]["ack"] is True, shaken
        client_id = shaken["clientId"]
        await ws.send_json(
            [{"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/q"}]
        )
        (subscribed,) = await ws.receive_json()
        assert subscribed["successful"] is True, subscribed
        connect = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"}
        await ws.send_json([{**connect, "ext": {"ack": 0}}])
        (published,) = await bayeux(b.port, [{"channel": "/q", "data": {"n": 0}}])
        assert published["successful"] is True
        received: list[int] = []
        batch = 0
        while not received:
            reply, *deliveries = await ws.receive_json()
            batch = reply.get("ext", {}).get("ack", batch)
            received += [d["data"]["n"] for d in deliveries]
            if not received:
                await ws.send_json([{**connect, "ext": {"ack": batch}}])
        assert (batch, received) == (1, [0])
        # The next message waits in node A's queue (no connect to carry it);
        # then A's writes settle.
        (published,) = await bayeux(b.port, [{"channel": "/q", "data": {"n": 1}}])
        assert published["successful"] is True
        session = a.engine.store.get(client_id)
        assert session is not None
        await eventually(lambda: len(session.queue) == 1, seconds=5)
        await eventually(lambda: not bus.stats["pending_writes"], seconds=5)
        # The client moves to node B, acknowledging batch 1.
        moved = {**connect, "connectionType": "long-polling", "advice": {"timeout": 0}}
        reply, *deliveries = await bayeux(b.port, [{**moved, "ext": {"ack": batch}}])
    assert reply["successful"] is True, reply
    assert [d["data"]["n"] for d in deliveries] == [1], (reply, deliveries)
    assert reply["ext"]["ack"] == 2
