"""Acknowledged delivery in our browser client (``new Faye.Client(url, {ack: true})``).

The page long-polls through a Playwright route that plays a lossy network
with the connects that carry deliveries: it lets the server answer, then
throws one reply away (the server wrote it, the page never sees it), and later
hands the page a copy of an earlier reply in place of the real one. The page
must end up with every message once, in order.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ._support import Browsers, Server, Tab

if TYPE_CHECKING:
    from playwright.sync_api import Route

CHANNEL = "/ack/browser"


class LossyConnects:
    """Route handler: connects whose reply carries a delivery meet ``mode``."""

    def __init__(self) -> None:
        #: "keep" (deliver, and keep a copy), "lose", "replay" (answer with
        #: the kept copy instead), or None (deliver)
        self.mode: str | None = None
        self.kept: list[dict[str, Any]] | None = None
        self.done: list[str] = []

    def handle(self, route: Route) -> None:
        request = route.request
        sent = request.post_data or ""
        if request.method != "POST" or "/meta/connect" not in sent:
            route.continue_()
            return
        response = route.fetch()
        replies = json.loads(response.text())
        carries = any(r.get("channel") == CHANNEL and "data" in r for r in replies)
        mode = self.mode if carries else None
        if mode is not None:
            self.mode = None
            self.done.append(mode)
        if mode == "lose":
            route.abort()
            return
        if mode == "replay":
            assert self.kept is not None
            # The copy answers this request's connect, as a resent batch would.
            (connect,) = [m for m in json.loads(sent) if m.get("channel") == "/meta/connect"]
            copy = [
                {**r, "id": connect["id"]} if r.get("channel") == "/meta/connect" else r
                for r in self.kept
            ]
            route.fulfill(response=response, body=json.dumps(copy))
            return
        if mode == "keep":
            self.kept = replies
        route.fulfill(response=response)


def test_lost_and_copied_replies(browsers: Browsers, harness_server: Server) -> None:
    tab = browsers.open(f"{harness_server.origin}/", endpoint=harness_server.endpoint)
    lossy = LossyConnects()
    tab.page.route(lambda url: url.endswith("/faye"), lossy.handle)
    try:
        check(tab, lossy, harness_server)
    finally:
        # A held connect may still be in the handler's fetch.
        tab.page.evaluate("window.client && client.disconnect()")
        tab.page.unroute_all(behavior="ignoreErrors")


def check(tab: Tab, lossy: LossyConnects, harness_server: Server) -> None:
    subscribed = tab.page.evaluate(
        """async (channel) => {
            window.client = new Faye.Client('/faye', {ack: true, retry: 0.2});
            client.disable('websocket');
            client.disable('eventsource');
            window.got = [];
            window.sent = [];
            client.addExtension({outgoing: (m, callback) => { sent.push(m); callback(m); }});
            return outcome(client.subscribe(channel, (data) => got.push(data)));
        }""",
        CHANNEL,
    )
    assert subscribed == {"ok": True}

    def got() -> list[Any]:
        result: list[Any] = tab.page.evaluate("window.got")
        return result

    for n, mode in ((1, "keep"), (2, "lose"), (3, "replay")):
        lossy.mode = mode
        harness_server.publish(CHANNEL, n)
        tab.wait_until(lambda n=n: n in got(), f"message {n}")  # type: ignore[misc]
    harness_server.publish(CHANNEL, "end")
    tab.wait_until(lambda: "end" in got(), "the last message")
    assert lossy.done == ["keep", "lose", "replay"]
    assert got() == [1, 2, 3, "end"]
    handshake = tab.page.evaluate("sent.find((m) => m.channel === '/meta/handshake')")
    assert handshake["ext"]["ack"] is True
    acks = tab.page.evaluate(
        "sent.filter((m) => m.channel === '/meta/connect').map((m) => m.ext && m.ext.ack)"
    )
    assert all(type(a) is int for a in acks)
    assert acks == sorted(acks)
