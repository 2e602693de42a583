"""Service handlers on the trio server, and timesync over HTTP."""

from __future__ import annotations

import time
from typing import Any

import pytest
import trio

from bayeux_core import Published
from bayeux_trio import ServiceContext, ServiceError
from tests.trio.helpers import LongPoller, deliveries, fail_after, make_config, start_server


async def call(poller: LongPoller, channel: str, data: Any, message_id: str) -> dict[str, Any]:
    """Send a call, check its acknowledgement, return its result (from a connect)."""
    (ack,) = await poller.send(
        [{"channel": channel, "clientId": poller.client_id, "data": data, "id": message_id}]
    )
    assert ack == {
        "id": message_id,
        "clientId": poller.client_id,
        "channel": channel,
        "successful": True,
    }
    (result,) = deliveries(await poller.connect())
    return result


@fail_after(10)
async def test_sync_and_async_handlers_answer_the_caller(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(timeout=5))
    seen: list[ServiceContext] = []

    def add(data: Any, context: ServiceContext) -> Any:
        seen.append(context)
        return sum(data)

    async def slow_upper(data: Any, context: ServiceContext) -> Any:
        await trio.sleep(0.01)
        return data.upper()

    server.add_service("/service/add", add)
    server.add_service("/service/upper", slow_upper)
    events: list[Published] = []
    server.on(Published, events.append)
    poller = LongPoller(server.port or 0)
    await poller.start()
    result = await call(poller, "/service/add", [1, 2, 3], "a1")
    assert result == {"channel": "/service/add", "id": "a1", "successful": True, "data": 6}
    assert seen == [ServiceContext(poller.client_id, "/service/add", None, "a1")]
    result = await call(poller, "/service/upper", "hi", "a2")
    assert result["data"] == "HI"
    # the application still hears of the publish
    assert [e.channel for e in events] == ["/service/add", "/service/upper"]


@fail_after(10)
async def test_errors_fail_the_call(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(timeout=5))

    def picky(data: Any, context: ServiceContext) -> Any:
        if data == "bad":
            raise ServiceError("Bad input", code=422)
        if data == "set":
            return {1, 2}  # not JSON
        raise RuntimeError("secret internals")

    server.add_service("/service/picky", picky)
    poller = LongPoller(server.port or 0)
    await poller.start()
    result = await call(poller, "/service/picky", "bad", "1")
    assert result == {
        "channel": "/service/picky",
        "id": "1",
        "successful": False,
        "data": None,
        "error": "422::Bad input",
    }
    assert (await call(poller, "/service/picky", "set", "2"))[
        "error"
    ] == "500::Service reply is not JSON"
    result = await call(poller, "/service/picky", "boom", "3")
    assert result["error"] == "500::Service failed"
    assert "secret" not in str(result)


@fail_after(10)
async def test_a_call_without_id_runs_but_is_not_answered(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(timeout=0.2))
    ran = trio.Event()

    def note(data: Any, context: ServiceContext) -> Any:
        ran.set()
        return data

    server.add_service("/service/note", note)
    poller = LongPoller(server.port or 0)
    await poller.start()
    await poller.publish("/service/note", 1)
    await ran.wait()
    assert deliveries(await poller.connect()) == []


async def test_registration_is_checked(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    server.add_service("/service/a", lambda data, context: data)
    with pytest.raises(ValueError, match="already"):
        server.add_service("/service/a", lambda data, context: data)
    for bad in ("/chat", "/service/*", "service"):
        with pytest.raises(ValueError, match="not a /service"):
            server.add_service(bad, lambda data, context: data)
    server.remove_service("/service/a")
    with pytest.raises(ValueError, match="no handler"):
        server.remove_service("/service/a")
    fresh = await start_server(nursery)
    with pytest.raises(ValueError, match="no handler"):
        fresh.remove_service("/service/a")


@fail_after(10)
async def test_timesync_is_answered_with_the_server_wall_clock(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(timeout=0.3))
    poller = LongPoller(server.port or 0)
    await poller.start()
    before = time.time() * 1000
    (reply,) = await poller.connect(ext={"timesync": {"tc": 5, "l": 0, "o": 0}})
    after = time.time() * 1000
    timesync = reply["ext"]["timesync"]
    assert timesync["tc"] == 5
    assert before - 1 <= timesync["ts"] <= after + 1
    # held until the hold ended: p says so (in ms; at least the 0.3 s hold)
    assert timesync["p"] >= 300
