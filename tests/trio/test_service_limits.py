"""Service calls are bounded: past ``max_service_calls`` a call fails at once (issue 15)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from bayeux_trio import BayeuxServer, ServerConfig, ServiceContext
from bayeux_trio.cli._main import _config, _parser
from tests.trio.helpers import LongPoller, deliveries, fail_after, make_config, start_server

LIMIT = 3


@fail_after(20)
async def test_a_call_past_the_limit_fails_at_once_and_the_others_complete(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery, make_config(timeout=5, max_service_calls=LIMIT))
    release = trio.Event()
    entered: list[Any] = []

    async def blocking(data: Any, context: ServiceContext) -> Any:
        entered.append(data)
        await release.wait()
        return data * 10

    server.add_service("/service/slow", blocking)
    services = server._services
    assert services is not None
    assert services.max_calls == LIMIT  # from ServerConfig.max_service_calls
    poller = LongPoller(server.port or 0)
    await poller.start()
    calls = [
        {"channel": "/service/slow", "clientId": poller.client_id, "data": n, "id": str(n)}
        for n in range(LIMIT + 1)
    ]
    acks = await poller.send(calls)
    assert [a["successful"] for a in acks] == [True] * (LIMIT + 1)
    # The last call's result is an error, already queued: no handler is released.
    (refused,) = deliveries(await poller.connect())
    assert refused == {
        "channel": "/service/slow",
        "id": str(LIMIT),
        "successful": False,
        "data": None,
        "error": "503::Too many service calls",
    }
    await trio.testing.wait_all_tasks_blocked()
    assert sorted(entered) == list(range(LIMIT))
    assert services.in_flight == LIMIT
    release.set()
    results: list[dict[str, Any]] = []
    while len(results) < LIMIT:
        results += deliveries(await poller.connect())
    assert sorted((r["id"], r["successful"], r["data"]) for r in results) == [
        (str(n), True, n * 10) for n in range(LIMIT)
    ]
    # No task is left behind, and the slots are free again.
    assert services.in_flight == 0
    acks = await poller.send(calls[:1])
    assert acks[0]["successful"] is True
    (result,) = deliveries(await poller.connect())
    assert result["successful"] is True
    assert services.in_flight == 0


def test_the_config_setting_reaches_the_services() -> None:
    server = BayeuxServer(make_config(max_service_calls=7))
    server.add_service("/service/x", lambda data, context: data)
    assert server._services is not None
    assert server._services.max_calls == 7


def test_the_setting_and_its_option() -> None:
    assert ServerConfig().max_service_calls == 1000
    with pytest.raises(ValueError, match="max_service_calls"):
        ServerConfig(max_service_calls=0)
    parse = _parser().parse_args
    assert _config(parse(["serve"])).max_service_calls == 1000
    assert _config(parse(["serve", "--max-service-calls", "5"])).max_service_calls == 5
