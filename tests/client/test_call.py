"""The Python client: service calls, terminal refusals, timesync."""

from __future__ import annotations

import time
from typing import Any

import pytest
import trio

from bayeux_core import (
    Extension,
    HandshakeFailed,
    LocalProtocolError,
    Message,
    MessageContext,
    SessionEnded,
    TimesyncExtension,
    refuse,
)
from bayeux_trio import CallError, ServiceContext, ServiceError, SessionEndedError
from tests.client.support import Recorder, client
from tests.trio.helpers import fail_after, make_config, start_server


@fail_after(20)
async def test_call_returns_the_reply_data(nursery: trio.Nursery, transport: str) -> None:
    server = await start_server(nursery, make_config(timeout=2))
    callers: list[str] = []

    async def greet(data: Any, context: ServiceContext) -> Any:
        callers.append(context.client_id)
        return {"hello": data["name"]}

    def refuse_all(data: Any, context: ServiceContext) -> Any:
        raise ServiceError("Not today")

    server.add_service("/service/greet", greet)
    server.add_service("/service/no", refuse_all)
    async with client(server.url, transport) as alice:
        assert await alice.call("/service/greet", {"name": "Ann"}) == {"hello": "Ann"}
        assert callers == [alice.client_id]
        with pytest.raises(CallError) as caught:
            await alice.call("/service/no", 1)
        assert caught.value.error == "400::Not today"
        # several calls at once each get their own result
        results: dict[int, Any] = {}

        async def one(n: int) -> None:
            results[n] = await alice.call("/service/greet", {"name": str(n)})

        async with trio.open_nursery() as calls:
            for n in range(5):
                calls.start_soon(one, n)
        assert results == {n: {"hello": str(n)} for n in range(5)}


@fail_after(20)
async def test_a_call_nobody_answers_times_out(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(timeout=2))
    async with client(server.url, "long-polling") as alice:
        with pytest.raises(TimeoutError, match="/service/nobody"):
            await alice.call("/service/nobody", 1, timeout=0.2)
        with pytest.raises(LocalProtocolError, match="not a /service"):
            await alice.call("/chat", 1)


class TokenAuth(Extension):
    """Refuses every handshake for good, and counts them."""

    def __init__(self) -> None:
        self.handshakes = 0

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == "/meta/handshake":
            self.handshakes += 1
            return refuse(message, "403::Bad credentials", final=True, interval=1000)
        return message


@fail_after(20)
async def test_a_final_refusal_stops_the_client_and_raises(
    nursery: trio.Nursery, transport: str
) -> None:
    auth = TokenAuth()
    server = await start_server(nursery, extensions=[auth])
    async with client(server.url, transport) as alice:
        recorder = Recorder(alice)
        with pytest.raises(SessionEndedError) as caught:
            await alice.wait_connected()
        assert caught.value.error == "403::Bad credentials"
        assert recorder.of(HandshakeFailed) == [HandshakeFailed("403::Bad credentials", final=True)]
        assert recorder.of(SessionEnded) == [SessionEnded("403::Bad credentials")]
        with pytest.raises(SessionEndedError):
            await alice.publish("/a", 1)
        assert alice.session.get_timer() is None  # nothing left to retry
    assert auth.handshakes == 1


@fail_after(20)
async def test_timesync_estimates_the_server_clock(nursery: trio.Nursery, transport: str) -> None:
    server = await start_server(nursery, make_config(timeout=0.2))
    sync = TimesyncExtension(lambda: time.time() * 1000)
    async with client(server.url, transport, extensions=[sync]) as alice:
        await alice.wait_connected()
        # the handshake reply alone gives the first estimate
        assert sync.synced
        # One clock on both sides: offset = (up - down) / 2 and lag = (up + down) / 2
        # for one-way delays up, down >= 0, so |offset| <= lag (+1 for rounding).
        assert sync.lag >= 0
        assert abs(sync.offset) <= sync.lag + 1
