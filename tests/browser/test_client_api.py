"""Faye's browser API, exercised in Chromium on a bare page (tests/browser/pages).

Most tests run twice: with our client.js and with the official Faye 1.4.3
bundle (``client`` parameter), against our server, and expect the same
results: the API is Faye's, so a page cannot tell the two apart. Tests that
pin down behaviour where Faye 1.4.3 has a bug run with ours only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ._support import Browsers, Server, Tab, free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser

BOTH = pytest.mark.parametrize("client", ["ours", "faye"])


@dataclass
class HarnessPages:
    """The pages of this module, one per client, kept: a new page costs a second."""

    browsers: Browsers
    tabs: dict[str, Tab] = field(default_factory=dict)


@pytest.fixture(scope="module")
def harness_pages(chromium: Browser) -> Iterator[HarnessPages]:
    pages = HarnessPages(Browsers(chromium))
    try:
        yield pages
    finally:
        pages.browsers.close()


@pytest.fixture
def open_harness(
    harness_pages: HarnessPages, harness_server: Server, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """Opens the test page afresh (a new JavaScript world) with our client or Faye's."""
    used: list[Tab] = []

    def open_page(client: str = "ours") -> Tab:
        url = f"{harness_server.origin}/"
        tab = harness_pages.tabs.get(client)
        if tab is None:
            script: Path | None = None
            if client == "faye":
                script = request.getfixturevalue("faye_bundle")
            browsers = harness_pages.browsers
            tab = browsers.open(url, endpoint=harness_server.endpoint, client_script=script)
            harness_pages.tabs[client] = tab
        else:
            # Leave the previous test's page first: what it sends as it
            # unloads is not this test's traffic.
            tab.page.goto("about:blank")
            tab.traffic.reset()
            tab.errors.clear()
            tab.page.goto(url)
        used.append(tab)
        implementation = tab.page.evaluate("Faye.implementation || 'faye'")
        assert implementation == ("bayeux-trio" if client == "ours" else "faye")
        return tab

    yield open_page
    for tab in used:
        tab.check_no_errors()


@BOTH
def test_subscription_is_a_thenable_and_delivers_data(open_harness: Any, client: str) -> None:
    tab = open_harness(client)
    result = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye');
            const got = [];
            const subscription = client.subscribe('/api/then', (data) => got.push(data));
            const shape = ['then', 'cancel', 'unsubscribe', 'withChannel', 'callback', 'errback']
                .map((name) => typeof subscription[name]);
            const subscribed = await outcome(subscription);
            const published = await outcome(client.publish('/api/then', {n: 1}));
            await until(() => got.length === 1);
            let called = false;
            subscription.callback(() => { called = true; });
            await until(() => called);
            return {shape, subscribed, published, got};
        }"""
    )
    assert result == {
        "shape": ["function"] * 6,
        "subscribed": {"ok": True},
        "published": {"ok": True},
        "got": [{"n": 1}],
    }


@BOTH
def test_with_channel_gives_the_concrete_channel(open_harness: Any, client: str) -> None:
    tab = open_harness(client)
    result = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye');
            const got = [];
            const subscription = client.subscribe('/api/wild/*')
                .withChannel((channel, data) => got.push([channel, data]));
            await outcome(subscription);
            await outcome(client.publish('/api/wild/one', 'a'));
            await outcome(client.publish('/api/wild/two', 'b'));
            await until(() => got.length === 2);
            return got;
        }"""
    )
    assert sorted(result) == [["/api/wild/one", "a"], ["/api/wild/two", "b"]]


@BOTH
def test_refusals_reject_with_the_servers_error(open_harness: Any, client: str) -> None:
    tab = open_harness(client)
    result = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye');
            const publish = await outcome(client.publish('/api/*', 1));
            const subscribe = await outcome(client.subscribe('/meta/nothing', () => {}));
            let viaErrback = null;
            client.publish('/api/**', 2).errback((error) => { viaErrback = error.message; });
            await until(() => viaErrback !== null);
            return {publish, subscribe, viaErrback};
        }"""
    )
    assert result["publish"] == {
        "ok": False,
        "error": {
            "code": 405,
            "params": ["/api/*"],
            "message": "Invalid channel",
            "text": "405:/api/*:Invalid channel",
        },
    }
    assert result["subscribe"]["error"]["code"] == 403
    assert result["subscribe"]["error"]["message"] == "Forbidden channel"
    assert result["viaErrback"] == "Invalid channel"


@BOTH
def test_cancel_removes_one_listener_and_unsubscribes_with_the_last(
    open_harness: Any, client: str
) -> None:
    tab = open_harness(client)
    result = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye');
            const log = record(client);
            const a = [], b = [], probe = [];
            await outcome(client.subscribe('/api/cancel-probe', (data) => probe.push(data)));
            const first = client.subscribe('/api/cancel', (data) => a.push(data));
            const second = client.subscribe('/api/cancel', (data) => b.push(data));
            await outcome(first);
            await outcome(second);
            await outcome(client.publish('/api/cancel', 1));
            await until(() => a.length === 1 && b.length === 1);

            first.cancel();
            const unsubscribesWhileOneLeft = log.count('/meta/unsubscribe');
            await outcome(client.publish('/api/cancel', 2));
            await until(() => b.length === 2);

            second.unsubscribe();
            await until(() => log.received.some(
                (m) => m.channel === '/meta/unsubscribe' && m.successful));
            // Published before the probe, so it would have come first.
            await outcome(client.publish('/api/cancel', 3));
            await outcome(client.publish('/api/cancel-probe', 'done'));
            await until(() => probe.length === 1);
            const delivered = log.received.filter(
                (m) => m.channel === '/api/cancel' && m.data === 3);
            return {a, b, unsubscribesWhileOneLeft, unsubscribes: log.count('/meta/unsubscribe'),
                    delivered: delivered.length};
        }"""
    )
    assert result == {
        "a": [1],
        "b": [1, 2],
        "unsubscribesWhileOneLeft": 0,
        "unsubscribes": 1,
        "delivered": 0,
    }


@BOTH
def test_client_unsubscribe_removes_every_listener(open_harness: Any, client: str) -> None:
    tab = open_harness(client)
    result = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye');
            const log = record(client);
            const got = [];
            await outcome(client.subscribe('/api/all', (data) => got.push(['x', data])));
            await outcome(client.subscribe('/api/all', (data) => got.push(['y', data])));
            client.unsubscribe('/api/all');
            await until(() => log.received.some(
                (m) => m.channel === '/meta/unsubscribe' && m.successful));
            return {got, unsubscribed: log.count('/meta/unsubscribe', '/api/all')};
        }"""
    )
    assert result == {"got": [], "unsubscribed": 1}


@BOTH
def test_extensions_see_messages_both_ways(open_harness: Any, client: str) -> None:
    tab = open_harness(client)
    result = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye');
            const calls = [];
            const stamp = {
                added(host) { calls.push(['added', host === client]); },
                removed(host) { calls.push(['removed', host === client]); },
                outgoing(message, callback) {
                    if (!message.channel.startsWith('/meta/')) message.ext = {stamp: 'ext'};
                    callback(message);
                },
                incoming(message, request, callback) {  // the three-argument form
                    if (message.data !== undefined) calls.push(['incoming', message.ext, request]);
                    callback(message);
                },
            };
            client.addExtension(stamp);
            const got = [];
            await outcome(client.subscribe('/api/ext', (data) => got.push(data)));
            await outcome(client.publish('/api/ext', 'one'));
            await until(() => got.length === 1);
            client.removeExtension(stamp);
            await outcome(client.publish('/api/ext', 'two'));
            await until(() => got.length === 2);
            return {calls, got};
        }"""
    )
    assert result == {
        "calls": [["added", True], ["incoming", {"stamp": "ext"}, None], ["removed", True]],
        "got": ["one", "two"],
    }


@BOTH
def test_set_header_goes_on_http_requests(open_harness: Any, client: str) -> None:
    tab = open_harness(client)
    tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye');
            client.disable('websocket');
            client.disable('eventsource');
            client.setHeader('X-Api-Test', 'yes');
            await outcome(client.subscribe('/api/header', () => {}));
            await outcome(client.publish('/api/header', 1));
        }"""
    )
    assert tab.traffic.headers, "no HTTP request was recorded"
    assert all(headers.get("x-api-test") == "yes" for headers in tab.traffic.headers)
    assert tab.traffic.connection_types() == {"long-polling"}


@BOTH
def test_transport_down_and_up_with_retried_publish(open_harness: Any, client: str) -> None:
    """Offline, a publish fails (``transport:down``); back online it is sent again."""
    tab = open_harness(client)
    page = tab.page
    page.evaluate(
        """async () => {
            const client = window.client = new Faye.Client('/faye', {retry: 0.5});
            client.disable('websocket');
            client.disable('eventsource');
            window.events = [];
            window.got = [];
            client.bind('transport:down', () => events.push('down'));
            client.on('transport:up', () => events.push('up'));
            await outcome(client.subscribe('/api/updown', (data) => got.push(data)));
        }"""
    )
    assert page.evaluate("events") == ["up"]
    page.context.set_offline(True)
    try:
        page.evaluate(
            """async () => {
                window.published = null;
                outcome(client.publish('/api/updown', 'sent while offline')).then(
                    (result) => { window.published = result; });
                await until(() => events.includes('down'));
            }"""
        )
        assert page.evaluate("published") is None
    finally:
        page.context.set_offline(False)
    result = page.evaluate(
        """async () => {
            await until(() => published !== null && got.length === 1, 15000);
            return {events, published, got};
        }"""
    )
    assert result == {
        "events": ["up", "down", "up"],
        "published": {"ok": True},
        "got": ["sent while offline"],
    }


@BOTH
def test_disconnect_ends_the_session(open_harness: Any, client: str) -> None:
    tab = open_harness(client)
    result = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye');
            const log = record(client);
            await outcome(client.subscribe('/api/bye', () => {}));
            const done = await outcome(client.disconnect());
            const reply = log.received.find((m) => m.channel === '/meta/disconnect');
            const connects = log.count('/meta/connect');
            client.publish('/api/bye', 'after');  // nothing is sent after a disconnect
            await new Promise((resolve) => setTimeout(resolve, 100));
            return {done, successful: reply && reply.successful,
                    later: log.count('/meta/connect') - connects, published: log.count('/api/bye')};
        }"""
    )
    assert result == {"done": {"ok": True}, "successful": True, "later": 0, "published": 0}


@BOTH
@pytest.mark.parametrize(
    ("disabled", "expected"), [([], "eventsource"), (["eventsource"], "long-polling")]
)
def test_falls_back_when_websocket_fails(
    open_harness: Any, client: str, disabled: list[str], expected: str
) -> None:
    """A WebSocket that cannot connect is passed over for the next transport."""
    tab = open_harness(client)
    closed = free_port()  # nothing listens there
    result = tab.page.evaluate(
        """async ([closed, disabled, expected]) => {
            const url = 'http://127.0.0.1:' + closed + '/faye';
            const client = new Faye.Client('/faye', {endpoints: {websocket: url}});
            disabled.forEach((type) => client.disable(type));
            const log = record(client);
            const got = [];
            await outcome(client.subscribe('/api/fallback', (data) => got.push(data)));
            await until(() => log.sent.some((m) => m.channel === '/meta/connect'
                && m.connectionType === expected), 15000, 'a connect over ' + expected);
            await outcome(client.publish('/api/fallback', 'arrived'));
            await until(() => got.length === 1);
            return got;
        }""",
        [closed, disabled, expected],
    )
    assert result == ["arrived"]
    assert expected in tab.traffic.connection_types()
    assert tab.traffic.connection_types() <= {"long-polling", expected}
    assert "websocket" not in tab.traffic.kinds
    if expected == "eventsource":
        assert "eventsource-stream" in tab.traffic.kinds


@BOTH
def test_unknown_options_throw(open_harness: Any, client: str) -> None:
    tab = open_harness(client)
    result = tab.page.evaluate(
        """() => {
            const messages = [];
            const attempt = (fn) => {
                try { fn(); } catch (error) { messages.push(error.message); }
            };
            attempt(() => new Faye.Client('/faye', {bogus: 1}));
            const client = new Faye.Client('/faye');
            attempt(() => client.publish('/api/x', 1, {bogus: 1}));
            return messages;
        }"""
    )
    assert result == ["Unrecognized option: bogus", "Unrecognized option: bogus"]


@BOTH
def test_scheduler_option_subclassed_as_faye_documents(open_harness: Any, client: str) -> None:
    tab = open_harness(client)
    result = tab.page.evaluate(
        """async () => {
            window.sends = [];
            function Counting() { Faye.Scheduler.apply(this, arguments); }
            Counting.prototype = Object.create(Faye.Scheduler.prototype);
            Counting.prototype.send = function () {
                sends.push(this.message.channel);
                Faye.Scheduler.prototype.send.call(this);
            };
            const client = new Faye.Client('/faye', {scheduler: Counting});
            const published = await outcome(client.publish('/api/scheduled', 1, {attempts: 3}));
            return {published, sends};
        }"""
    )
    assert result["published"] == {"ok": True}
    assert "/meta/handshake" in result["sends"]
    assert "/api/scheduled" in result["sends"]


def test_second_subscribe_to_a_channel_sends_nothing(open_harness: Any) -> None:
    """Ours only: Faye 1.4.3 sends it again (its Channel.Set.hasSubscription is
    always false since the switch to Map), which does no harm either."""
    tab = open_harness("ours")
    result = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye');
            const log = record(client);
            const got = [];
            const listen = (name) => (data) => got.push([name, data]);
            const first = await outcome(client.subscribe('/api/twice', listen('a')));
            const second = await outcome(client.subscribe('/api/twice', listen('b')));
            await outcome(client.publish('/api/twice', 1));
            await until(() => got.length === 2);
            return {first, second, subscribes: log.count('/meta/subscribe', '/api/twice'), got};
        }"""
    )
    assert result == {
        "first": {"ok": True},
        "second": {"ok": True},
        "subscribes": 1,
        "got": [["a", 1], ["b", 1]],
    }


def test_then_chains_like_a_promise(open_harness: Any) -> None:
    """Ours only: ``.then(onSuccess)`` passes a failure on down the chain, so
    ``.catch`` sees it (Faye 1.4.3's then() swallows it)."""
    tab = open_harness("ours")
    result = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye');
            const caught = await client.publish('/api/*', 1).then(() => 'resolved')
                .catch((error) => error.code);
            const direct = await client.publish('/api/ok', 1).catch(() => 'failed');
            return {caught, direct};
        }"""
    )
    assert result == {"caught": 405, "direct": None}
