"""``publish_sync`` and the ``bayeux publish`` / ``bayeux subscribe`` commands,
called as a user would: from plain Python and as subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from bayeux_trio import PublishError, publish_sync
from tests._support.ports import free_port
from tests.interop.auth_ext import TOKENS, WRONG_TOKEN_ERROR, ServerAuth
from tests.trio.helpers import fail_after, start_server

from .support import HOST
from .test_client import RefuseLocked

ROOT = Path(__file__).resolve().parents[2]
BAYEUX = [sys.executable, "-m", "bayeux_trio"]


async def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        list(args), cwd=ROOT, stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
    )


def nowhere() -> str:
    """A URL nothing listens on."""
    return f"http://{HOST}:{free_port()}/faye"


# ------------------------------------------------------------- publish_sync


@fail_after(30)
async def test_publish_sync_from_plain_python(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, extensions=[RefuseLocked()])
    received: list[object] = []
    server.get_client()  # the server's own client listens
    await server.get_client().subscribe("/news", lambda channel, data: received.append(data))
    script = (
        "import sys\n"
        "from bayeux_trio import PublishError, publish_sync\n"
        "publish_sync(sys.argv[1], '/news', {'from': 'a script'}, timeout=10)\n"
        "try:\n"
        "    publish_sync(sys.argv[1], '/locked/door', 1, timeout=10)\n"
        "except PublishError as exc:\n"
        "    print('refused:', exc.error)\n"
    )
    done = await run(sys.executable, "-c", script, server.url)
    assert done.returncode == 0, done.stderr.decode()
    assert received == [{"from": "a script"}]
    assert done.stdout.decode().strip() == f"refused: {RefuseLocked.ERROR}"


@fail_after(30)
async def test_publish_sync_in_a_worker_thread(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, extensions=[RefuseLocked()])
    received: list[object] = []
    await server.get_client().subscribe("/news", lambda channel, data: received.append(data))
    for transports in (["websocket"], ["long-polling"]):
        call = functools.partial(
            publish_sync, server.url, "/news", transports, transports=transports
        )
        await trio.to_thread.run_sync(call)
    assert received == [["websocket"], ["long-polling"]]
    with pytest.raises(PublishError) as caught:
        await trio.to_thread.run_sync(publish_sync, server.url, "/locked/door", 1)
    assert caught.value.error == RefuseLocked.ERROR
    unreachable = functools.partial(publish_sync, nowhere(), "/news", 1, timeout=0.5)
    with pytest.raises(TimeoutError, match="cannot connect"):
        await trio.to_thread.run_sync(unreachable)


async def test_publish_sync_refuses_to_block_an_event_loop() -> None:
    with pytest.raises(RuntimeError):
        publish_sync(nowhere(), "/news", 1)  # inside trio

    async def from_asyncio() -> None:
        publish_sync(nowhere(), "/news", 1)

    with pytest.raises(RuntimeError, match="blocks"):
        await trio.to_thread.run_sync(asyncio.run, from_asyncio())


# ------------------------------------------------------------ bayeux publish


@fail_after(30)
async def test_cli_publish(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, extensions=[RefuseLocked()])
    received: list[object] = []
    await server.get_client().subscribe("/news", lambda channel, data: received.append(data))

    done = await run(*BAYEUX, "publish", server.url, "/news", '{"text": "hi"}')
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    done = await run(
        *BAYEUX, "publish", server.url, "/news", "-", "--transport", "long-polling", stdin=b"[1, 2]"
    )
    assert done.returncode == 0, done.stderr.decode()
    assert received == [{"text": "hi"}, [1, 2]]

    refused = await run(*BAYEUX, "publish", server.url, "/locked/door", "true")
    assert refused.returncode == 1
    assert refused.stderr.decode() == (
        f"bayeux: the server refused the publish: {RefuseLocked.ERROR}\n"
    )

    bad = await run(*BAYEUX, "publish", server.url, "/news", "{not json")
    assert bad.returncode == 2
    assert "the message is not JSON" in bad.stderr.decode()

    unreachable = await run(*BAYEUX, "publish", nowhere(), "/news", "1", "--timeout", "0.5")
    assert unreachable.returncode == 3
    assert "no acknowledgement" in unreachable.stderr.decode()
    assert "cannot connect" in unreachable.stderr.decode()
    assert received == [{"text": "hi"}, [1, 2]]


# ---------------------------------------------------------- bayeux subscribe


class _Lines:
    """Reads a subprocess pipe line by line (bounded by the test's fail_after)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def line(self) -> str | None:
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


@contextlib.asynccontextmanager
async def subscriber(*args: str) -> AsyncIterator[tuple[trio.Process, _Lines, _Lines]]:
    """``bayeux subscribe ARGS`` running, with its stdout and stderr lines."""
    process = await trio.lowlevel.open_process(
        [*BAYEUX, "subscribe", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        yield process, _Lines(process.stdout), _Lines(process.stderr)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            await process.stdout.aclose()
            await process.stderr.aclose()


@fail_after(30)
async def test_cli_subscribe_prints_json_lines_as_they_come(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    async with subscriber(server.url, "/a", "/b/**", "--count", "3", "--timeout", "25") as (
        process,
        out,
        err,
    ):
        assert await err.line() == "bayeux: subscribed to /a"
        assert await err.line() == "bayeux: subscribed to /b/**"
        server.publish("/a", 1)
        # Flushed line by line: the first arrives while the command still runs.
        assert json.loads(await out.line() or "") == {"channel": "/a", "data": 1}
        assert process.returncode is None
        server.publish("/zzz", "not subscribed")
        server.publish("/b/c/d", {"x": 2})
        server.publish("/a", "three")
        server.publish("/a", "one too many")
        rest = [await out.line() for _ in range(3)]
        assert [json.loads(line) if line else None for line in rest] == [
            {"channel": "/b/c/d", "data": {"x": 2}},
            {"channel": "/a", "data": "three"},
            None,  # it stopped after --count 3
        ]
        assert await process.wait() == 0


@fail_after(30)
async def test_cli_subscribe_timeout_refusal_and_ext(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, extensions=[ServerAuth()])
    timed_out = await run(
        *BAYEUX, "subscribe", server.url, "/a", "--count", "2", "--timeout", "0.5"
    )
    assert timed_out.returncode == 3
    assert timed_out.stdout == b""
    assert "with 0 of 2 messages" in timed_out.stderr.decode()

    bounded = await run(*BAYEUX, "subscribe", server.url, "/a", "--timeout", "0.3", "--quiet")
    assert (bounded.returncode, bounded.stdout, bounded.stderr) == (0, b"", b"")

    refused = await run(*BAYEUX, "subscribe", server.url, "/private/chat", "--timeout", "10")
    assert refused.returncode == 1
    assert WRONG_TOKEN_ERROR in refused.stderr.decode()

    token = json.dumps({"authToken": TOKENS["/private/chat"]})
    async with subscriber(
        server.url, "/private/chat", "--count", "1", "--ext", token, "--transport", "long-polling"
    ) as (process, out, err):
        assert await err.line() == "bayeux: subscribed to /private/chat"
        server.publish("/private/chat", "secret", ext={"note": 1})
        line = json.loads(await out.line() or "")
        assert line == {"channel": "/private/chat", "data": "secret", "ext": {"note": 1}}
        assert await process.wait() == 0

    usage = await run(*BAYEUX, "subscribe", server.url, "/a", "--count", "0")
    assert usage.returncode == 2
    usage = await run(*BAYEUX, "subscribe", server.url, "/a", "--ext", "[1]")
    assert usage.returncode == 2
    assert "--ext must be a JSON object" in usage.stderr.decode()


@fail_after(30)
async def test_cli_subscribe_to_an_unreachable_server_fails() -> None:
    # Even without --count, a --timeout spent never reaching the server is a failure.
    url = nowhere()
    unreachable = await run(*BAYEUX, "subscribe", url, "/a", "--timeout", "0.5")
    assert unreachable.returncode == 3
    assert unreachable.stdout == b""
    assert f"could not reach {url}" in unreachable.stderr.decode()


@pytest.mark.parametrize(
    ("command", "channel", "reason"),
    [
        ("publish", "/meta/foo", "/meta channels"),
        ("publish", "/meta", "/meta channels"),
        ("publish", "/messages/*", "a pattern"),
        ("publish", "/messages/**", "a pattern"),
        ("publish", "no-slash", "not a channel"),
        ("publish", "/a//b", "not a channel"),
        ("subscribe", "/meta/foo", "/meta channels"),
        ("subscribe", "/meta/*", "/meta channels"),
        ("subscribe", "no-slash", "not a channel"),
        ("subscribe", "/a/*/b", "not a channel"),
    ],
)
@fail_after(30)
async def test_cli_refuses_an_invalid_channel_in_one_line(
    command: str, channel: str, reason: str
) -> None:
    args = [channel, "1"] if command == "publish" else ["/fine", channel]
    done = await run(*BAYEUX, command, nowhere(), *args, "--timeout", "5")
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert "Traceback" not in stderr
    (line,) = stderr.splitlines()
    assert line.startswith("bayeux: ")
    assert repr(channel) in line
    assert reason in line
    assert done.stdout == b""


@fail_after(30)
async def test_cli_subscribe_to_a_server_that_never_answers_fails(nursery: trio.Nursery) -> None:
    # Connections are accepted but never answered: no subscription is acknowledged.
    listeners = await trio.open_tcp_listeners(0, host=HOST)
    port = listeners[0].socket.getsockname()[1]

    async def hold(stream: trio.SocketStream) -> None:
        async with stream:
            while await stream.receive_some(65536):
                pass

    nursery.start_soon(trio.serve_listeners, hold, listeners)
    silent = await run(*BAYEUX, "subscribe", f"http://{HOST}:{port}/faye", "/a", "--timeout", "1")
    assert silent.returncode == 3
    assert silent.stdout == b""
    assert silent.stderr.decode() == (
        "bayeux: timed out after 1 s before the server acknowledged the subscriptions\n"
    )
