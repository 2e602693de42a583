"""Memory is handed back once a burst of connections has gone (bayeux_trio.server._reclaim)."""

from __future__ import annotations

import gc
import weakref

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import bayeux_trio.server._server as server_module
from bayeux_trio import ServerConfig
from bayeux_trio.server._reclaim import SERVING_GC_OLDEST, ReclaimPolicy, reclaim, tune_gc

from .helpers import HOST, fail_after, make_config, start_server, wait_for


def _samples(policy: ReclaimPolicy, counts: list[int]) -> list[bool]:
    return [policy.sample(count) for count in counts]


def test_a_burst_that_ends_is_reclaimed_once_the_count_settles() -> None:
    policy = ReclaimPolicy(after=100)
    # Up to 1,000, down to 10 (still falling at the first low sample), settled.
    assert _samples(policy, [0, 500, 1000, 1000, 400, 10, 10, 10, 10]) == [
        False,
        False,
        False,
        False,
        False,
        False,
        True,
        False,
        False,
    ]
    assert policy.runs == 1
    assert policy.peak == 10


def test_a_small_fall_or_one_to_above_half_is_not_worth_it() -> None:
    policy = ReclaimPolicy(after=100)
    assert not any(_samples(policy, [150, 60, 60, 60]))  # fell by 90 < 100
    policy = ReclaimPolicy(after=100)
    assert not any(_samples(policy, [1000, 600, 600, 600]))  # 600 > 1000 // 2
    assert policy.peak == 1000


def test_the_next_burst_is_measured_from_the_level_after_a_reclaim() -> None:
    policy = ReclaimPolicy(after=100)
    assert _samples(policy, [1000, 0, 0]) == [False, False, True]
    assert not any(_samples(policy, [90, 0, 0]))  # a burst of 90 is below the bar
    assert _samples(policy, [300, 0, 0]) == [False, False, True]
    assert policy.runs == 2


@given(
    after=st.integers(min_value=1, max_value=50),
    counts=st.lists(st.integers(min_value=0, max_value=200), max_size=60),
)
def test_a_reclaim_always_follows_a_big_settled_fall(after: int, counts: list[int]) -> None:
    policy = ReclaimPolicy(after=after)
    peak = previous = 0
    for count in counts:
        decided = policy.sample(count)
        peak = max(peak, count)
        if decided:
            assert count == previous
            assert peak - count >= after
            assert count <= peak // 2
            peak = count
        previous = count


def test_reclaim_frees_garbage_cycles() -> None:
    class Node:
        other: object = None

    gc.disable()
    try:
        first, second = Node(), Node()
        first.other, second.other = second, first
        alive = weakref.ref(first)
        del first, second
        assert alive() is not None  # a cycle: reference counting cannot free it
        assert reclaim() >= 2
        assert alive() is None
    finally:
        gc.enable()


def test_the_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="reclaim_after"):
        ServerConfig(reclaim_after=0)
    assert ServerConfig().reclaim_after == 500
    assert ServerConfig(reclaim_after=None).reclaim_after is None


async def _burst(port: int, count: int) -> list[trio.SocketStream]:
    return [await trio.open_tcp_stream(HOST, port) for _ in range(count)]


@fail_after(20)
async def test_the_server_reclaims_after_connections_leave(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    samples: list[int] = []

    class Recorded(ReclaimPolicy):
        def sample(self, connections: int) -> bool:
            samples.append(connections)
            return super().sample(connections)

    monkeypatch.setattr(server_module, "_RECLAIM_PERIOD", 0.05)
    monkeypatch.setattr(server_module, "ReclaimPolicy", Recorded)
    server = await start_server(nursery, make_config(reclaim_after=6))

    def record() -> int:
        calls.append(server._connections)
        return 0

    monkeypatch.setattr(server_module, "reclaim", record)
    streams = await _burst(server.port or 0, 8)
    await wait_for(lambda: server._connections == 8)
    # several samples at the peak: nothing to reclaim yet
    await wait_for(lambda: samples.count(8) >= 3, attempts=2000, delay=0.01)
    assert calls == []
    for stream in streams:
        await stream.aclose()
    await wait_for(lambda: bool(calls), attempts=400, delay=0.01)
    assert calls == [0]


@fail_after(20)
async def test_no_reclaim_when_turned_off(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(server_module, "_RECLAIM_PERIOD", 0.02)

    def record() -> int:
        calls.append(1)
        return 0

    monkeypatch.setattr(server_module, "reclaim", record)
    server = await start_server(nursery, make_config(reclaim_after=None))
    streams = await _burst(server.port or 0, 8)
    await wait_for(lambda: server._connections == 8)
    for stream in streams:
        await stream.aclose()
    await wait_for(lambda: server._connections == 0)
    await trio.sleep(0.3)  # fifteen sampling periods
    assert calls == []


def _socket_streams() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, trio.SocketStream))


@fail_after(20)
async def test_a_closed_connection_is_not_held_by_the_listener(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    before = _socket_streams()
    stream = await trio.open_tcp_stream(HOST, server.port or 0)
    await wait_for(lambda: server._connections == 1)
    await stream.aclose()
    del stream
    await wait_for(lambda: server._connections == 0)
    # Once its task has ended, the server's side of the connection is garbage,
    # not kept alive by the accept loop, parked in its next accept.
    await wait_for(lambda: _socket_streams() == before, attempts=100, delay=0.01)


class _Cycle:
    me: object = None


def test_tune_gc_freezes_start_up_and_looks_at_the_oldest_generation_less_often() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_freeze_count() > 0
        young, middle, oldest = gc.get_threshold()
        assert (young, middle) == before[:2]
        assert oldest == SERVING_GC_OLDEST > before[2]
        # A cycle made afterwards is still collected.
        node = _Cycle()
        node.me = node
        ref = weakref.ref(node)
        del node
        gc.collect()
        assert ref() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
