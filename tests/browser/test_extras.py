"""Our browser client's extras in Chromium: service calls and terminal refusals."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._support import PAGES, Browsers, Server, Tab, free_port, running


@pytest.fixture(scope="module")
def extras_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(free_port(), [], tmp_path_factory.mktemp("extras") / "server.log")
    script = Path(__file__).resolve().parent / "extras_server.py"
    with running(server):
        server.start([sys.executable, str(script), str(server.port), str(PAGES)])
        yield server


@pytest.fixture
def tab(chromium: Any, extras_server: Server) -> Iterator[Tab]:
    browsers = Browsers(chromium)
    try:
        opened = browsers.open(f"{extras_server.origin}/", endpoint=extras_server.endpoint)
        yield opened
        opened.check_no_errors()
    finally:
        browsers.close()


def test_call_resolves_with_the_reply_and_rejects_on_failure(tab: Tab) -> None:
    result = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye');
            const echoed = await client.call('/service/echo', {n: 1});
            const all = await Promise.all([1, 2, 3].map((n) => client.call('/service/echo', n)));
            const failed = await outcome(client.call('/service/fail', 1));
            const late = await outcome(client.call('/service/nobody', 1, {timeout: 0.3}));
            const wrong = await outcome(client.call('/chat', 1));
            return {echoed, all, failed, late, wrong};
        }"""
    )
    assert result["echoed"] == {"echo": {"n": 1}}
    assert result["all"] == [{"echo": 1}, {"echo": 2}, {"echo": 3}]
    assert result["failed"]["ok"] is False
    assert result["failed"]["error"]["text"] == "400::Nope"
    assert result["late"]["error"]["text"] == "406::Call timed out"
    assert result["wrong"]["error"]["code"] == 405


def test_a_final_refusal_stops_the_client_and_is_reported(tab: Tab) -> None:
    result = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye', {retry: 0.1});
            let handshakes = 0;
            client.addExtension({
                outgoing: (message, callback) => {
                    if (message.channel === '/meta/handshake') {
                        handshakes += 1;
                        message.ext = {token: 'bad'};
                    }
                    callback(message);
                }
            });
            const ended = [];
            client.bind('session:ended', (error) => ended.push(String(error)));
            const call = outcome(client.call('/service/echo', 1, {timeout: 3}));
            await until(() => ended.length === 1, 3000, 'session:ended');
            // A client that loops would handshake every 0.1 s meanwhile; the
            // pending call (timeout 3 s) must fail with the refusal at once.
            await new Promise((resolve) => setTimeout(resolve, 1000));
            return {ended, handshakes, call: await call};
        }"""
    )
    assert result["ended"] == ["403::Bad token"]
    assert result["handshakes"] == 1
    assert result["call"]["error"]["text"] == "403::Bad token"
