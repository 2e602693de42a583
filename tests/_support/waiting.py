"""Bounded waits for a condition that other tasks or processes bring about.

Poll a predicate, never sleep a fixed time and hope: a wait returns as soon as
the condition holds and fails (``AssertionError``) once its bound is spent.

* :func:`wait_for`: async, bounded by a number of polls (in-process servers);
* :func:`eventually`: async, bounded in seconds (clients that reconnect);
* :func:`wait_until`: blocking, bounded in seconds (subprocesses, sockets).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

__all__ = ["eventually", "wait_for", "wait_until"]


async def wait_for(
    predicate: Callable[[], bool], *, attempts: int = 1000, delay: float = 0.005
) -> None:
    """Poll a condition the server reaches on its own (at most ``attempts`` polls)."""
    for _ in range(attempts):
        if predicate():
            return
        await trio.sleep(delay)
    raise AssertionError("condition never became true")


async def eventually(predicate: Callable[[], bool], *, seconds: float = 10.0) -> None:
    """Wait (polling, bounded) until ``predicate()`` holds; fail after ``seconds``."""
    with trio.move_on_after(seconds):
        while not predicate():  # noqa: ASYNC110 - the conditions live in other tasks' state
            await trio.sleep(0.01)
        return
    raise AssertionError("the condition never became true")


def wait_until(
    predicate: Callable[[], bool], what: str, *, timeout: float, interval: float = 0.05
) -> None:
    """Block until ``predicate()`` holds (checked every ``interval``); fail after ``timeout``.

    For plain (non-trio) code: subprocess fixtures, blocking sockets.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"gave up after {timeout} s waiting for {what}")
