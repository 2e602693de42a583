"""The ``bayeux`` command line, run as a real subprocess."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from .ext_module import TOKEN
from .helpers import HOST, LongPoller, bayeux, fail_after, free_port, handshake, wait_for

ROOT = Path(__file__).resolve().parents[2]
BAYEUX = [sys.executable, "-m", "bayeux_trio"]


async def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [*BAYEUX, *args], cwd=ROOT, capture_stdout=True, capture_stderr=True, check=False
    )


async def _wait_until_serving(port: int, process: trio.Process, mount: str) -> None:
    """Poll until the server answers a handshake (bounded)."""
    for _ in range(200):
        assert process.returncode is None, "the server exited early"
        try:
            await handshake(port, mount=mount)
        except OSError:
            await trio.sleep(0.05)
            continue
        return
    raise AssertionError("the server never answered")


class _Server:
    def __init__(self, process: trio.Process, port: int) -> None:
        self.process = process
        self.port = port


async def _start(nursery: trio.Nursery, *args: str, mount: str = "/faye") -> _Server:
    port = free_port()
    process = await trio.lowlevel.open_process(
        [*BAYEUX, "serve", "--port", str(port), "--mount", mount, *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def reap() -> None:
        try:
            await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()

    nursery.start_soon(reap)
    await _wait_until_serving(port, process, mount)
    return _Server(process, port)


@fail_after(20)
async def test_help() -> None:
    result = await _run("serve", "--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    for option in ("--port", "--mount", "--timeout", "--extension", "--host", "--static"):
        assert option in text


@fail_after(20)
async def test_sigterm_stops_cleanly(nursery: trio.Nursery) -> None:
    server = await _start(nursery)
    client = LongPoller(server.port)
    await client.start("/x")
    server.process.send_signal(signal.SIGTERM)
    with trio.fail_after(5):
        returncode = await server.process.wait()
    assert returncode == 0
    with pytest.raises(OSError, match="connect"):
        await handshake(server.port)


@fail_after(20)
async def test_sigterm_answers_a_held_connect(nursery: trio.Nursery) -> None:
    server = await _start(nursery, "--timeout", "60")
    client = LongPoller(server.port)
    await client.start("/x")
    results: list[list[dict[str, Any]]] = []

    async def connect() -> None:
        results.append(await client.connect())

    async with trio.open_nursery() as inner:
        # Two connects of one client: the server answers the older at once when
        # the newer arrives, so once one reply is back the other is held.
        inner.start_soon(connect)
        inner.start_soon(connect)
        await wait_for(lambda: len(results) == 1)
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            assert await server.process.wait() == 0
    assert len(results) == 2
    for (reply,) in results:
        assert reply["successful"] is True
        assert reply["advice"]["reconnect"] == "retry"


@fail_after(20)
async def test_extension_by_name(nursery: trio.Nursery) -> None:
    server = await _start(nursery, "--extension", "tests.trio.ext_module:Auth", mount="/bayeux")
    client_id = await handshake(server.port, mount="/bayeux")

    async def subscribe(ext: Any) -> dict[str, Any]:
        message = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/a"}
        if ext is not None:
            message["ext"] = ext
        (reply,) = await bayeux(server.port, [message], mount="/bayeux")
        return reply

    for bad in (None, {"token": "wrong"}, {"token": TOKEN.upper()}, "let-me-in"):
        reply = await subscribe(bad)
        assert reply["successful"] is False
        assert reply["error"] == "403::Invalid token"
    assert (await subscribe({"token": TOKEN}))["successful"] is True
    server.process.send_signal(signal.SIGTERM)
    with trio.fail_after(5):
        assert await server.process.wait() == 0


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("no_colon", "not of the form module:attribute"),
        ("no_such_module_xyz:Auth", "cannot import 'no_such_module_xyz'"),
        ("tests.trio.ext_module:Missing", "has no attribute 'Missing'"),
        ("tests.trio.ext_module:NOT_AN_EXTENSION", "not an extension"),
        ("tests.trio.ext_module:broken_factory", "not an extension"),
        (":Auth", "not of the form module:attribute"),
        ("tests.trio.ext_module:NeedsArguments", "cannot call"),
    ],
)
@fail_after(20)
async def test_bad_extension_spec(spec: str, reason: str) -> None:
    result = await _run("serve", "--port", str(free_port()), "--extension", spec)
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "error:" in stderr
    assert reason in stderr
    assert "Traceback" not in stderr


@fail_after(20)
async def test_bad_option_values() -> None:
    for args in (["--port", "70000"], ["--mount", "faye"], ["--ping", "0"]):
        result = await _run("serve", *args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr.decode()


@fail_after(20)
async def test_port_in_use(nursery: trio.Nursery) -> None:
    listeners = await trio.open_tcp_listeners(0, host=HOST)
    try:
        port = listeners[0].socket.getsockname()[1]
        result = await _run("serve", "--port", str(port))
        assert result.returncode == 1
        assert "cannot listen" in result.stderr.decode()
    finally:
        for listener in listeners:
            await listener.aclose()
