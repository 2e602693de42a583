"""Server subprocesses: wait until they serve, wait until they are gone, stop them.

Every server a test starts as a subprocess listens on :data:`~.ports.HOST`
and mounts Bayeux at :data:`MOUNT`; "serving" means it answers a long-polling
``/meta/handshake`` with ``successful: true``. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import trio

from .ports import HOST
from .waiting import wait_until

__all__ = [
    "HANDSHAKE",
    "MOUNT",
    "START_TIMEOUT",
    "accepts_connections",
    "handshake_answer",
    "post_json",
    "stop_process",
    "until_serving",
    "wait_closed",
    "wait_listening",
    "wait_serving",
]

MOUNT = "/faye"
#: how long a server subprocess may take to answer its first handshake (s)
START_TIMEOUT = 20.0

HANDSHAKE = {
    "channel": "/meta/handshake",
    "version": "1.0",
    "supportedConnectionTypes": ["long-polling"],
    "id": "1",
}


def post_json(port: int, body: Any, *, timeout: float = 5.0, path: str = MOUNT) -> tuple[int, Any]:
    """POST ``body`` as JSON; (status, decoded JSON or the raw text)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(
            "POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, data.decode("utf-8", "replace")


def handshake_answer(port: int, *, path: str = MOUNT, timeout: float = 1.0) -> tuple[bool, object]:
    """One handshake attempt: (answered successfully, what came back or the error)."""
    try:
        status, replies = post_json(port, [HANDSHAKE], timeout=timeout, path=path)
    except OSError as exc:
        return False, exc
    ok = (
        status == 200
        and isinstance(replies, list)
        and bool(replies)
        and isinstance(replies[0], dict)
        and replies[0].get("successful") is True
    )
    return ok, (status, replies)


def wait_serving(
    process: subprocess.Popen[bytes], port: int, *, deadline: float, path: str = MOUNT
) -> object | None:
    """Block until the server answers a handshake: None once it does.

    Otherwise, once ``process`` exits or ``time.monotonic()`` passes
    ``deadline``, what the last attempt saw (an answer or an error), for the
    caller's failure message.
    """
    last: object = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        ok, last = handshake_answer(port, path=path)
        if ok:
            return None
        time.sleep(0.05)
    return last if last is not None else "no answer"


def accepts_connections(port: int) -> bool:
    """Whether something accepts a TCP connection on ``port`` now."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_listening(
    port: int, *, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> bool:
    """Block until ``port`` accepts connections: True.

    False once ``process`` (the server's, if given) has exited, or after
    ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        if accepts_connections(port):
            return True
        time.sleep(0.05)
    return False


def wait_closed(port: int, timeout: float = 10.0) -> None:
    """Block until nothing accepts connections on ``port`` (the old server is gone)."""
    wait_until(lambda: not accepts_connections(port), f"port {port} to close", timeout=timeout)


def stop_process(
    process: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 10.0
) -> None:
    """Close its stdin, send ``sig`` (a graceful stop by default), wait; kill if it lingers."""
    if process.poll() is None:
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


async def until_serving(
    port: int,
    *,
    alive: Callable[[], bool],
    seconds: float = 30.0,
    path: str = MOUNT,
    describe: Callable[[], str] = lambda: "",
) -> None:
    """In a trio test: poll until the server answers a handshake (bounded in ``seconds``).

    ``alive()`` says whether its process still runs; ``describe()`` adds
    context (its log, say) to the failure.
    """
    last: object = None
    with trio.move_on_after(seconds):
        while True:
            assert alive(), f"the server exited (last: {last!r})\n{describe()}"
            ok, last = await trio.to_thread.run_sync(
                lambda: handshake_answer(port, path=path), abandon_on_cancel=True
            )
            if ok:
                return
            await trio.sleep(0.05)
    raise AssertionError(f"the server never answered (last: {last!r})\n{describe()}")
