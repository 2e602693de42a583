"""History and recovery with client.js in Chromium (docs/delivery.md).

The server keeps history for ``/hist/*`` (``bayeux serve --history``). A page
reads the position of what it has seen, and a later client in the page
recovers from it; a position from another epoch is refused with a reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ._support import PAGES, Browsers, Server, Tab, running, start_server


@pytest.fixture(scope="module")
def history_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ["--static", str(PAGES), "--timeout", "5", "--history", "/hist/*=10"]
    with running(start_server(tmp_path_factory.mktemp("history"), args)) as server:
        yield server


@pytest.fixture
def tab(browsers: Browsers, history_server: Server) -> Iterator[Tab]:
    opened = browsers.open(f"{history_server.origin}/", endpoint=history_server.endpoint)
    yield opened
    opened.check_no_errors()


def test_a_client_recovers_from_a_saved_position(tab: Tab) -> None:
    result: dict[str, Any] = tab.page.evaluate(
        """async () => {
            const first = new Faye.Client('/faye');
            const seen = [];
            await outcome(first.subscribe('/hist/a', (data) => seen.push(data)));
            await outcome(first.publish('/hist/a', 'one'));
            await until(() => seen.length === 1);
            const saved = first.getPosition('/hist/a');
            await outcome(first.disconnect());
            const writer = new Faye.Client('/faye');
            await outcome(writer.publish('/hist/a', 'two'));
            await outcome(writer.publish('/hist/a', 'three'));

            const second = new Faye.Client('/faye');
            const outcomes = [];
            second.bind('history:recovery', (channel, recovered, reason) =>
                outcomes.push([channel, recovered, reason]));
            second.setPosition('/hist/a', saved);
            const got = [];
            await outcome(second.subscribe('/hist/a', (data) => got.push(data)));
            await until(() => got.length === 2 && outcomes.length === 1);
            await outcome(writer.publish('/hist/a', 'four'));
            await until(() => got.length === 3);
            const latest = second.getPosition('/hist/a');

            const third = new Faye.Client('/faye');
            const refusals = [];
            third.bind('history:recovery', (channel, recovered, reason) =>
                refusals.push([channel, recovered, reason]));
            third.setPosition('/hist/b', 'not-this-server:3');
            await outcome(third.subscribe('/hist/b', () => {}));
            await until(() => refusals.length === 1);
            return {saved, got, outcomes, latest, refusals,
                    thirdPosition: third.getPosition('/hist/b')};
        }"""
    )
    epoch, _, offset = result["saved"].rpartition(":")
    assert offset == "1"
    assert result["got"] == ["two", "three", "four"]
    assert result["outcomes"] == [["/hist/a", True, None]]
    assert result["latest"] == f"{epoch}:4"
    assert result["refusals"] == [["/hist/b", False, "epoch changed"]]
    assert result["thirdPosition"].endswith(":0")
