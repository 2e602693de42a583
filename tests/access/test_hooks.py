"""Backend hooks (bayeux_trio.access._hooks) against a real HTTP backend.

The backend is tests/access/backend.py served by hypercorn on trio in the
test's own task, on a loopback port. The first tests call
:meth:`BackendHooks.incoming` directly with messages; the last ones run a
BayeuxServer with the hooks and our client over both transports. Every test
runs under ``fail_after``; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import orjson
import pytest
import trio
import trio.testing

from bayeux_core import EngineConfig, HandshakeFailed, Message
from bayeux_trio import SubscribeError
from bayeux_trio.access import AccessSettings, HookSettings, check
from bayeux_trio.access._hooks import (
    BACKEND_REFUSED,
    BACKEND_UNAVAILABLE,
    MAX_ANSWER,
    MAX_ERROR,
    WARN_EVERY,
    BackendHooks,
)
from tests._support.ports import HOST, free_port
from tests._support.waiting import eventually
from tests.client.support import client
from tests.trio.helpers import fail_after, make_config, start_server

from .backend import (
    Answer,
    Backend,
    allow,
    by_channel,
    garbage,
    held,
    refuse,
    rewrite,
    running_backend,
    slow,
)

Policy = Literal["refuse", "allow"]
POLICIES: list[Policy] = ["refuse", "allow"]


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with running_backend() as served:
        yield served


@contextlib.asynccontextmanager
async def opened(hooks: dict[str, HookSettings], **options: Any) -> AsyncIterator[BackendHooks]:
    """BackendHooks for the block, closed after it (its HTTP client with it)."""
    made = BackendHooks(hooks, **options)
    try:
        yield made
    finally:
        await made.aclose()


def publish(channel: str = "/chat/room", data: Any = "hi", **more: Any) -> Message:
    return {"channel": channel, "data": data, "clientId": "c1", "id": "7", **more}


def subscribe(subscription: Any, **more: Any) -> Message:
    return {"channel": "/meta/subscribe", "subscription": subscription, "clientId": "c1", **more}


def handshake(**more: Any) -> Message:
    return {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
        **more,
    }


def outcome(message: Message | None) -> str:
    """``refused`` (with the unavailable error) or ``allowed``, for the policy tests."""
    assert message is not None
    if "error" in message:
        assert message["error"] == BACKEND_UNAVAILABLE
        return "refused"
    return "allowed"


EXPECTED: dict[Policy, str] = {"refuse": "refused", "allow": "allowed"}


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bayeux.access"]


# ------------------------------------------------------ what is sent, and when


@fail_after(10)
async def test_an_allowed_publish_passes_and_the_description_is_complete(
    backend: Backend,
) -> None:
    settings = backend.hook("/publish", allow(), headers=(("authorization", "Bearer s3cret"),))
    async with opened({"publish": settings}, user_of=lambda message: "alice") as hooks:
        message = publish(data={"text": "hi"}, ext={"auth": {"token": "t"}})
        result = await hooks.incoming(message, None, "192.0.2.7")
    assert result == publish(data={"text": "hi"}, ext={"auth": {"token": "t"}})
    [call] = backend.calls_to("/publish")
    assert call.description == {
        "kind": "publish",
        "clientId": "c1",
        "user": "alice",
        "channel": "/chat/room",
        "data": {"text": "hi"},
        "ext": {"auth": {"token": "t"}},
        "address": "192.0.2.7",
    }
    assert call.headers["content-type"] == "application/json"
    assert call.headers["authorization"] == "Bearer s3cret"
    assert len(call.headers["x-request-id"]) == 16


@fail_after(10)
async def test_handshake_and_subscribe_descriptions(backend: Backend) -> None:
    hooks_settings = {
        "handshake": backend.hook("/handshake", Answer(body=b"{}")),
        "subscribe": backend.hook("/subscribe", allow()),
    }
    async with opened(hooks_settings) as hooks:
        shaken = await hooks.incoming(handshake(ext={"auth": {"token": "t"}}), None)
        subscribed = await hooks.incoming(subscribe("/chat/*"), None, "127.0.0.1")
    assert shaken is not None
    assert "error" not in shaken
    assert subscribed == subscribe("/chat/*")
    assert backend.descriptions("/handshake") == [
        {
            "kind": "handshake",
            "clientId": None,
            "user": None,
            "channel": None,
            "ext": {"auth": {"token": "t"}},
            "address": None,
        }
    ]
    assert backend.descriptions("/subscribe") == [
        {
            "kind": "subscribe",
            "clientId": "c1",
            "user": None,
            "channel": "/chat/*",
            "ext": None,
            "address": "127.0.0.1",
        }
    ]


@fail_after(10)
async def test_a_service_call_is_a_publish(backend: Backend) -> None:
    async with opened({"publish": backend.hook("/publish", refuse("403::No calls"))}) as hooks:
        result = await hooks.incoming(publish("/service/echo", 1), None)
    assert result is not None
    assert result["error"] == "403::No calls"
    assert [d["channel"] for d in backend.descriptions("/publish")] == ["/service/echo"]


@fail_after(10)
async def test_other_messages_pass_untouched_with_no_call(backend: Backend) -> None:
    every = {
        kind: backend.hook(f"/{kind}", refuse("403::no"))
        for kind in ("handshake", "subscribe", "publish")
    }
    untouched = [
        {"channel": "/meta/connect", "clientId": "c1", "connectionType": "long-polling"},
        {"channel": "/meta/unsubscribe", "clientId": "c1", "subscription": "/a"},
        {"channel": "/meta/disconnect", "clientId": "c1"},
        # CVE-2020-11020's channel is no subscribe: the engine refuses it.
        {"channel": "/meta/subscribe/x", "clientId": "c1", "subscription": "/a"},
        {"channel": "/chat/room", "clientId": "c1"},  # no data: no publish
        publish(error="401::already refused"),
        subscribe("/a", error="401::already refused"),
        subscribe(["/a", 3]),  # malformed: the engine refuses it
        subscribe([]),
        {"channel": 5, "data": 1},
    ]
    async with opened(every) as hooks:
        for message in untouched:
            before = dict(message)
            assert await hooks.incoming(message, None) == before
    assert backend.calls == []
    # A kind with no hook is not checked either.
    async with opened({"subscribe": every["subscribe"]}) as hooks:
        assert await hooks.incoming(publish(), None) == publish()
        assert await hooks.incoming(handshake(), None) == handshake()
    assert backend.calls == []


# ------------------------------------------------------- allow, refuse, rewrite


@fail_after(10)
async def test_refusal_carries_the_backends_error(backend: Backend) -> None:
    error = "403:/private/bob:Not your channel"
    async with opened({"subscribe": backend.hook("/subscribe", refuse(error))}) as hooks:
        result = await hooks.incoming(subscribe("/private/bob"), None)
    assert result == subscribe("/private/bob", error=error)


@fail_after(10)
async def test_allow_false_without_an_error_refuses_with_403(backend: Backend) -> None:
    answer = Answer(body=b'{"allow": false}')
    async with opened({"publish": backend.hook("/publish", answer)}) as hooks:
        result = await hooks.incoming(publish(), None)
    assert result is not None
    assert result["error"] == BACKEND_REFUSED


@fail_after(10)
@pytest.mark.parametrize("new", [{"text": "[redacted]"}, None, [1, 2], "plain"])
async def test_rewrite_replaces_the_data(backend: Backend, new: Any) -> None:
    async with opened({"publish": backend.hook("/publish", rewrite(new))}) as hooks:
        result = await hooks.incoming(publish(data={"text": "damn"}), None)
    assert result == publish(data=new)


@fail_after(10)
async def test_unknown_keys_in_an_answer_are_ignored(backend: Backend) -> None:
    async with opened({"publish": backend.hook("/publish", allow(reason="ok", n=1))}) as hooks:
        assert await hooks.incoming(publish(), None) == publish()


@fail_after(10)
async def test_a_list_subscription_asks_per_channel_and_the_first_refusal_wins(
    backend: Backend,
) -> None:
    answers = by_channel({"/b": refuse("403:/b:No b"), "/c": refuse("403:/c:No c")})
    async with opened({"subscribe": backend.hook("/subscribe", answers)}) as hooks:
        refused = await hooks.incoming(subscribe(["/a", "/b", "/c"]), None)
        allowed = await hooks.incoming(subscribe(["/a", "/d"]), None)
    assert refused == subscribe(["/a", "/b", "/c"], error="403:/b:No b")
    assert allowed == subscribe(["/a", "/d"])
    # No call for /c once /b was refused.
    assert [d["channel"] for d in backend.descriptions("/subscribe")] == ["/a", "/b", "/a", "/d"]


# --------------------------------------------------------------- failures


GARBAGE = {
    "not JSON": garbage(b"<html>oops</html>", content_type=b"text/html"),
    "empty": garbage(b""),
    "HTTP 500": garbage(b'{"allow": true}', status=500, content_type=b"application/json"),
    "redirect": garbage(b"", status=302),
    "JSON array": garbage(b'[{"allow": true}]', content_type=b"application/json"),
    "JSON null": garbage(b"null", content_type=b"application/json"),
    "error not a string": Answer(body=b'{"error": 403}'),
    "empty error": Answer(body=b'{"error": ""}'),
    "error too long": Answer(body=b'{"error": "%s"}' % (b"x" * (MAX_ERROR + 1))),
    "allow not a bool": Answer(body=b'{"allow": "yes"}'),
    "allow with an error": Answer(body=b'{"allow": true, "error": "403::x"}'),
    "too deep": Answer(body=b'{"data": ' + b"[" * 100 + b"]" * 100 + b"}"),
}


@fail_after(10)
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", list(GARBAGE))
async def test_garbage_answers_follow_the_policy(
    backend: Backend, policy: Policy, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = backend.hook("/publish", GARBAGE[name], on_error=policy)
    async with opened({"publish": settings}) as hooks:
        with caplog.at_level(logging.WARNING, logger="bayeux.access"):
            result = await hooks.incoming(publish(data="kept"), None)
    assert outcome(result) == EXPECTED[policy]
    assert result is not None
    assert result["data"] == "kept"
    [line] = warnings_of(caplog)
    assert line.startswith(f"publish hook {backend.base}/publish failed: ")


@fail_after(10)
async def test_an_answer_too_large_is_garbage(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    huge = orjson.dumps({"data": "x" * MAX_ANSWER})
    async with opened({"publish": backend.hook("/publish", Answer(body=huge))}) as hooks:
        with caplog.at_level(logging.WARNING, logger="bayeux.access"):
            result = await hooks.incoming(publish(), None)
    assert outcome(result) == "refused"
    assert f"the answer is larger than {MAX_ANSWER} bytes" in warnings_of(caplog)[0]


@fail_after(10)
async def test_an_answer_of_unknown_length_too_large_is_garbage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"data": "'
        for _ in range(MAX_ANSWER // 65536 + 1):
            yield b"x" * 65536
        yield b'"}'

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks())  # chunked: no length

    settings = {"publish": HookSettings(url="http://backend.invalid/publish")}
    async with opened(settings, transport=httpx.MockTransport(answer)) as hooks:
        with caplog.at_level(logging.WARNING, logger="bayeux.access"):
            result = await hooks.incoming(publish(), None)
    assert outcome(result) == "refused"
    assert f"the answer is larger than {MAX_ANSWER} bytes" in warnings_of(caplog)[0]


@fail_after(10)
@pytest.mark.parametrize("policy", POLICIES)
async def test_a_message_that_is_not_json_follows_the_policy(
    backend: Backend, policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    # A server-side publish (LocalClient) may hold what JSON cannot say.
    settings = backend.hook("/publish", allow(), on_error=policy)
    async with opened({"publish": settings}) as hooks:
        with caplog.at_level(logging.WARNING, logger="bayeux.access"):
            result = await hooks.incoming(publish(data={1, 2}), None)
    assert outcome(result) == EXPECTED[policy]
    assert "cannot be sent as JSON" in warnings_of(caplog)[0]
    assert backend.calls == []


@fail_after(10)
async def test_an_injected_transport_is_used_and_its_timeouts_follow_the_policy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if orjson.loads(request.content)["channel"] == "/late":
            raise httpx.ReadTimeout("late", request=request)
        return httpx.Response(200, json={"error": "403::From the mock"})

    settings = {"subscribe": HookSettings(url="http://backend.invalid/subscribe")}
    async with opened(settings, transport=httpx.MockTransport(answer)) as hooks:
        refused = await hooks.incoming(subscribe("/a"), None)
        with caplog.at_level(logging.WARNING, logger="bayeux.access"):
            late = await hooks.incoming(subscribe("/late"), None)
    assert refused is not None
    assert refused["error"] == "403::From the mock"
    assert outcome(late) == "refused"
    assert "no answer within 2s" in warnings_of(caplog)[0]
    assert [str(request.url) for request in seen] == ["http://backend.invalid/subscribe"] * 2


@fail_after(10)
@pytest.mark.parametrize("policy", POLICIES)
async def test_data_in_an_answer_to_a_subscribe_is_garbage(
    backend: Backend, policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    settings = backend.hook("/subscribe", rewrite("x"), on_error=policy)
    async with opened({"subscribe": settings}) as hooks:
        with caplog.at_level(logging.WARNING, logger="bayeux.access"):
            result = await hooks.incoming(subscribe("/a"), None)
    assert outcome(result) == EXPECTED[policy]
    assert "data in an answer to a subscribe" in warnings_of(caplog)[0]


@fail_after(10)
@pytest.mark.parametrize("policy", POLICIES)
async def test_a_slow_backend_times_out_into_the_policy(
    backend: Backend, policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    settings = backend.hook("/subscribe", slow(5), timeout=0.3, on_error=policy)
    async with opened({"subscribe": settings}) as hooks:
        with caplog.at_level(logging.WARNING, logger="bayeux.access"):
            started = trio.current_time()
            result = await hooks.incoming(subscribe("/a"), None)
            took = trio.current_time() - started
    assert outcome(result) == EXPECTED[policy]
    assert 0.3 <= took < 2
    [line] = warnings_of(caplog)
    assert "no answer within 0.3s" in line
    # The backend saw the caller give up, and stopped.
    await eventually(lambda: backend.in_flight["/subscribe"] == 0)


@fail_after(10)
@pytest.mark.parametrize("policy", POLICIES)
async def test_a_backend_that_is_down_follows_the_policy(
    policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://{HOST}:{free_port()}/handshake"  # nothing listens there
    settings = HookSettings(url=url, on_error=policy)
    async with opened({"handshake": settings}) as hooks:
        with caplog.at_level(logging.WARNING, logger="bayeux.access"):
            result = await hooks.incoming(handshake(), None)
    assert outcome(result) == EXPECTED[policy]
    [line] = warnings_of(caplog)
    assert line.startswith(f"handshake hook {url} failed: ConnectError")
    if policy == "refuse":
        assert f"refused with {BACKEND_UNAVAILABLE}" in line
    else:
        assert "allowed" in line


@fail_after(10)
async def test_warnings_are_rate_limited_and_count_what_they_held_back(
    mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # The clock stands still unless the test moves it; the port refuses at once.
    port = free_port()
    secret = f"http://user:pw@{HOST}:{port}/hook?token=secret#part"
    settings = {
        "publish": HookSettings(url=secret),
        "subscribe": HookSettings(url=f"http://{HOST}:{port}/other"),
    }
    async with opened(settings) as hooks:
        with caplog.at_level(logging.WARNING, logger="bayeux.access"):
            for _ in range(4):
                await hooks.incoming(publish(), None)
            await hooks.incoming(subscribe("/a"), None)  # another hook: its own limit
            assert len(warnings_of(caplog)) == 2
            mock_clock.jump(WARN_EVERY)
            await hooks.incoming(publish(), None)
    lines = warnings_of(caplog)
    assert len(lines) == 3
    assert lines[0].startswith(f"publish hook http://{HOST}:{port}/hook failed: ")
    assert lines[1].startswith(f"subscribe hook http://{HOST}:{port}/other failed: ")
    assert lines[2].endswith("(3 more failures since the last warning)")
    assert not any("secret" in line or "pw" in line for line in lines)
    record = next(r for r in caplog.records if r.name == "bayeux.access")
    assert record.levelno == logging.WARNING
    assert record.__dict__["hook"] == "publish"


# ------------------------------------------------------------ calls in flight


@fail_after(10)
@pytest.mark.parametrize("policy", POLICIES)
async def test_past_the_limit_calls_wait_for_a_slot_and_time_out_into_the_policy(
    backend: Backend, policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    release = trio.Event()
    settings = backend.hook(
        "/publish", held(release), max_in_flight=2, timeout=0.5, on_error=policy
    )
    results: list[Message | None] = []

    async def one(n: int) -> None:
        results.append(await hooks.incoming(publish(data=n), None))

    async with opened({"publish": settings}) as hooks:
        with caplog.at_level(logging.WARNING, logger="bayeux.access"):
            async with trio.open_nursery() as nursery:
                for n in range(5):
                    nursery.start_soon(one, n)
                await eventually(lambda: len(backend.calls) == 2)
                assert backend.in_flight["/publish"] == 2
        release.set()
    # Never more than two calls at the backend at once; all five timed out.
    assert backend.peak["/publish"] == 2
    assert sorted(outcome(result) for result in results) == [EXPECTED[policy]] * 5
    [line] = warnings_of(caplog)  # the others were held back by the rate limit
    assert "within 0.5s" in line


@fail_after(10)
async def test_a_call_that_finds_no_free_slot_says_so(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    settings = backend.hook("/publish", allow(), max_in_flight=1, timeout=0.3)
    async with opened({"publish": settings}) as hooks:
        # Another call holds the only slot past this one's timeout.
        async with hooks._hooks["publish"].slots:
            with caplog.at_level(logging.WARNING, logger="bayeux.access"):
                waited = await hooks.incoming(publish(), None)
        assert outcome(waited) == "refused"
        assert "no free slot within 0.3s (1 calls in flight)" in warnings_of(caplog)[0]
        assert backend.calls == []
        # With the slot free again, the next call goes through.
        assert outcome(await hooks.incoming(publish(), None)) == "allowed"


@fail_after(10)
async def test_calls_waiting_for_a_slot_go_on_when_one_frees(backend: Backend) -> None:
    settings = backend.hook("/publish", slow(0.1, rewrite("checked")), max_in_flight=2, timeout=5)
    results: list[Message | None] = []

    async def one(n: int) -> None:
        results.append(await hooks.incoming(publish(data=n), None))

    async with opened({"publish": settings}) as hooks, trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(one, n)
    assert [result["data"] for result in results if result is not None] == ["checked"] * 5
    assert len(backend.calls) == 5
    assert backend.peak["/publish"] == 2


# --------------------------------------------------------- building, closing


def test_settings_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="'connect' is not a hook"):
        BackendHooks({"connect": HookSettings(url="http://127.0.0.1:1/")})
    with pytest.raises(ValueError, match=r"hooks.subscribe.url: 'http://\[::1/': Invalid port"):
        BackendHooks({"subscribe": HookSettings(url="http://[::1/")})
    with pytest.raises(ValueError, match="names no host"):
        BackendHooks({"publish": HookSettings(url="http:///path")})
    with pytest.raises(TypeError, match="want a HookSettings"):
        BackendHooks({"publish": "http://127.0.0.1:1/"})  # type: ignore[dict-item]
    hooks = BackendHooks({"publish": HookSettings(url="http://u:p@127.0.0.1:1/x?k=v")})
    assert repr(hooks) == "<BackendHooks publish=http://127.0.0.1:1/x>"


def test_check_builds_the_hooks_and_names_the_extra_they_need() -> None:
    """bayeux check-config refuses what serve would refuse when it builds the hooks."""
    with pytest.raises(ValueError, match=r"hooks\.publish\.url: 'http://' names no host"):
        check(AccessSettings(hooks={"publish": HookSettings(url="http://")}))
    script = """
import sys
sys.modules["httpx"] = None  # as if httpx were not installed
from bayeux_trio.access import AccessSettings, HookSettings, check
try:
    check(AccessSettings(hooks={"publish": HookSettings(url="http://127.0.0.1:1/")}))
except ValueError as exc:
    print(exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("hooks: need httpx"), done.stdout + done.stderr
    assert "pip install '.[access]' in a clone of bayeux-trio" in done.stdout


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ((("Bad Header", "x"),), "headers: 'Bad Header' is not an HTTP header name"),
        ((("", "x"),), "headers: '' is not an HTTP header name"),
        ((("X-Key", "a\nX-Injected: 1"),), "headers: the value of X-Key is not an HTTP header"),
        ((("X-Key", " padded"),), "headers: the value of X-Key is not an HTTP header"),
        ((("Authorization", "Bearer caf\u00e9"),), "the value of Authorization is not an HTTP"),
        ((("Content-Length", "5"),), "headers: Content-Length is set by the server itself"),
        ((("host", "elsewhere"),), "headers: host is set by the server itself"),
        ((("X-Request-Id", "mine"),), "headers: X-Request-Id is set by the server itself"),
        ((("X-A", "1"), ("x-a", "2")), "headers: x-a is given twice"),
        ([("X-A", "1")], "headers: want (name, value) pairs, not list"),
    ],
)
def test_headers_that_would_break_every_call_are_refused_when_built(
    headers: Any, error: str
) -> None:
    """Refused at start: sent, each would fail every call, and a hook whose
    on_error is "allow" would then let every message through. The error never
    quotes a value (often a secret)."""
    with pytest.raises(ValueError, match=re.escape(error)) as caught:
        HookSettings(url="http://127.0.0.1:1/", on_error="allow", headers=headers)
    assert "caf" not in str(caught.value)
    assert "padded" not in str(caught.value)


def test_headers_a_backend_may_check_are_accepted() -> None:
    headers = (("Authorization", "Bearer a.b-c_d~e+f/g="), ("X-Empty", ""), ("X-Tab", "a\tb"))
    assert HookSettings(url="http://127.0.0.1:1/", headers=headers).headers == headers


@fail_after(10)
async def test_after_aclose_calls_follow_the_policy(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    hooks = BackendHooks({"publish": backend.hook("/publish", allow())})
    assert outcome(await hooks.incoming(publish(), None)) == "allowed"
    await hooks.aclose()
    await hooks.aclose()  # twice is fine
    with caplog.at_level(logging.WARNING, logger="bayeux.access"):
        assert outcome(await hooks.incoming(publish(), None)) == "refused"
    assert "the hooks are closed" in warnings_of(caplog)[0]
    assert len(backend.calls) == 1


# ----------------------------------------------- end to end: server and client

TRANSPORTS = ["websocket", "long-polling"]


@fail_after(20)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_refused_subscribe_is_the_clients_subscribe_error(
    nursery: trio.Nursery, backend: Backend, transport: str
) -> None:
    error = "403:/private/bob:Only bob may listen here"
    answers = by_channel({"/private/bob": refuse(error)})
    async with opened({"subscribe": backend.hook("/subscribe", answers)}) as hooks:
        server = await start_server(nursery, extensions=[hooks])
        async with client(server.url, transport) as alice:
            with pytest.raises(SubscribeError) as caught:
                await alice.subscribe("/private/bob")
            assert caught.value.error == error
            assert caught.value.channel == "/private/bob"
            async with alice.subscribe("/public") as public:  # the session is fine
                server.publish("/public", "ok")
                assert (await public.receive()).data == "ok"
    [refused, allowed] = backend.descriptions("/subscribe")
    assert refused["channel"] == "/private/bob"
    assert refused["clientId"] == alice.client_id
    assert refused["address"] == HOST  # the server passes the peer's address
    assert allowed["channel"] == "/public"


@fail_after(20)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_rewritten_publish_arrives_rewritten(
    nursery: trio.Nursery, backend: Backend, transport: str
) -> None:
    answer = rewrite({"text": "[redacted]", "checked": True})
    async with opened({"publish": backend.hook("/publish", answer)}) as hooks:
        server = await start_server(nursery, extensions=[hooks])
        async with (
            client(server.url, transport) as alice,
            client(server.url, transport) as bob,
            alice.subscribe("/chat/room") as room,
        ):
            await bob.publish("/chat/room", {"text": "something rude"})
            got = await room.receive()
    assert got.data == {"text": "[redacted]", "checked": True}
    [described] = backend.descriptions("/publish")
    assert described["data"] == {"text": "something rude"}
    assert described["clientId"] == bob.client_id


@fail_after(20)
async def test_a_refused_handshake_is_the_clients_handshake_failure(
    nursery: trio.Nursery, backend: Backend
) -> None:
    error = "401::Unknown user"
    config = make_config(engine=EngineConfig(timeout=30, error_interval=0.1))
    async with opened({"handshake": backend.hook("/handshake", refuse(error))}) as hooks:
        server = await start_server(nursery, config, extensions=[hooks])
        refusals: list[HandshakeFailed] = []
        async with client(server.url, "long-polling") as alice:
            alice.on(HandshakeFailed, refusals.append)
            await eventually(lambda: bool(refusals))
            assert refusals[0].error == error
            assert alice.last_error == f"handshake refused: {error}"
            assert alice.client_id is None
    assert backend.descriptions("/handshake")[0]["kind"] == "handshake"


@fail_after(20)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_slow_backend_for_one_client_does_not_delay_another(
    nursery: trio.Nursery, backend: Backend, transport: str
) -> None:
    release = trio.Event()
    hooks_settings = {
        "subscribe": backend.hook("/subscribe", by_channel({"/slow": held(release)}), timeout=10),
        "publish": backend.hook("/publish", allow()),
    }
    async with opened(hooks_settings) as hooks:
        server = await start_server(nursery, extensions=[hooks])
        async with client(server.url, transport) as alice, client(server.url, transport) as bob:
            subscribed = trio.Event()

            async def alice_subscribes() -> None:
                await alice.subscribe("/slow")
                subscribed.set()

            nursery.start_soon(alice_subscribes)
            await eventually(lambda: backend.in_flight.get("/subscribe") == 1)
            # Alice's subscribe waits on the backend; Bob's publish and
            # subscribe are checked and done meanwhile.
            with trio.fail_after(5):
                await bob.publish("/chat/room", "not held back")
                async with bob.subscribe("/fast"):
                    pass
            assert not subscribed.is_set()
            release.set()
            with trio.fail_after(5):
                await subscribed.wait()
    assert [d["channel"] for d in backend.descriptions("/publish")] == ["/chat/room"]
