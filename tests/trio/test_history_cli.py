"""``bayeux serve --history PATTERN=SIZE[:TTL]`` builds EngineConfig.history."""

from __future__ import annotations

import pytest

from bayeux_core import HistoryPolicy
from bayeux_trio.cli._main import _config, _parser


def test_history_options_become_policies() -> None:
    args = _parser().parse_args(["serve", "--history", "/chat/*=5:30", "--history", "/a=2"])
    assert dict(_config(args).engine.history) == {
        "/chat/*": HistoryPolicy(size=5, ttl=30.0),
        "/a": HistoryPolicy(size=2),
    }
    assert dict(_config(_parser().parse_args(["serve"])).engine.history) == {}


@pytest.mark.parametrize("value", ["chat=5", "/a=x", "/a=0", "/a=5:-1", "/a"])
def test_bad_history_options_are_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--history", value])
    assert "--history" in capsys.readouterr().err
