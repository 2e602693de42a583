"""The docs that are generated from the code must match it."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from bayeux_core import TRANSITIONS, Engine, EngineConfig, MessageKind, Outcome, Reply, SessionState

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def diagram() -> ModuleType:
    path = DOCS / "make_state_diagram.py"
    spec = importlib.util.spec_from_file_location("make_state_diagram", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_state_diagram_in_protocol_md_is_current(diagram: ModuleType) -> None:
    assert diagram.main(["--check"]) == 0, "run: python docs/make_state_diagram.py --write"


def test_every_row_that_does_something_is_drawn(diagram: ModuleType) -> None:
    block: str = diagram.render()
    assert block.startswith("```mermaid\nstateDiagram-v2\n")
    for state in SessionState:
        assert f" as {state.name}\n" in block
    for outcome in Outcome:
        if outcome is Outcome.IGNORE:
            continue
        assert outcome.value in block or outcome in diagram._PLAIN, outcome
    # The first connect is answered at once and moves the session on.
    assert "HANDSHAKEN --> CONNECTED : connect → answer at once" in block
    # Both ways out of a session are there.
    assert TRANSITIONS[(SessionState.CONNECTED, MessageKind.EXPIRE)][1] is SessionState.NONE
    assert "CONNECTED --> NONE : disconnect → end the session<br/>session timeout" in block


def test_check_catches_a_stale_diagram(diagram: ModuleType, tmp_path: Path) -> None:
    doc = tmp_path / "protocol.md"
    doc.write_text(
        f"# Title\n\n{diagram.BEGIN}\n```mermaid\nstateDiagram-v2\n```\n{diagram.END}\n\nAfter.\n",
        encoding="utf-8",
    )
    assert diagram.main(["--check", "--path", str(doc)]) == 1
    assert diagram.main(["--write", "--path", str(doc)]) == 0
    assert diagram.main(["--check", "--path", str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Title\n\n")
    assert text.endswith(f"{diagram.END}\n\nAfter.\n")
    assert diagram.render() in text
    assert diagram.write(doc) is False  # already current


def test_missing_markers_are_an_error(diagram: ModuleType, tmp_path: Path) -> None:
    doc = tmp_path / "protocol.md"
    doc.write_text("no markers here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="markers"):
        diagram.is_current(doc)


_EXAMPLE_BLOCK = re.compile(
    r"\*\*(Client|Server) → (?:server|client)\*\* \(request (\d+)\)[^\n]*\n+```json\n(.*?)```",
    re.DOTALL,
)


def test_example_exchange_is_what_the_engine_says() -> None:
    text = (DOCS / "protocol.md").read_text(encoding="utf-8")
    region = text[text.index("<!-- example:begin -->") : text.index("<!-- example:end -->")]
    blocks = [
        (side, int(conn), orjson.loads(body)) for side, conn, body in _EXAMPLE_BLOCK.findall(region)
    ]
    assert len(blocks) == region.count("```json")
    found = re.search(r'"clientId":"([0-9a-z]{31})"', region)
    assert found is not None
    client_id = found.group(1)
    engine = Engine(client_id_generator=lambda: client_id)
    expected: list[tuple[int, object]] = []
    now = 0.0
    for side, conn, body in blocks:
        if side == "Server":
            assert expected, f"no reply expected for request {conn} here"
            assert expected.pop(0) == (conn, body)
            continue
        assert not expected, f"replies not shown in the doc: {expected}"
        engine.receive(conn, body, now=now)
        now += 1.0
        expected = [
            (action.conn, orjson.loads(action.body))
            for action in engine.actions_to_send()
            if isinstance(action, Reply)
        ]
    assert not expected, f"replies not shown in the doc: {expected}"


def test_the_token_auth_example_in_server_md_works(tmp_path: Path) -> None:
    """docs/server.md's ServerAuth, run as printed: it must refuse a wrong
    token on a plain and on a CometD-style array subscription, without
    raising (its first version raised TypeError on the array)."""
    text = (DOCS / "server.md").read_text()
    (code,) = re.findall(r"```python\n# myapp/auth.py\n(.*?)```", text, re.S)
    tokens = tmp_path / "tokens.json"
    tokens.write_text('{"channels": {"/private/ann": "s3cret"}, "users": {"ann-t": "ann"}}')
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/server.md", "exec"), namespace)
    auth_class = namespace["ServerAuth"]
    assert isinstance(auth_class, type)
    engine = Engine(extensions=(auth_class(str(tokens)),))
    hs = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
    }
    engine.receive(1, [hs], now=0)
    (reply,) = orjson.loads(next(a for a in engine.actions_to_send() if isinstance(a, Reply)).body)
    cid = reply["clientId"]

    def subscribe(subscription: object, ext: object) -> dict[str, object]:
        message = {"channel": "/meta/subscribe", "clientId": cid, "subscription": subscription}
        engine.receive(2, [message | {"ext": ext}], now=0)
        actions = engine.actions_to_send()
        (answer,) = orjson.loads(next(a for a in actions if isinstance(a, Reply)).body)
        assert isinstance(answer, dict)
        return answer

    refused = "Invalid subscription auth token"
    assert subscribe("/private/ann", {"authToken": "nope"})["error"] == refused
    assert subscribe(["/public", "/private/ann"], {"authToken": "nope"})["error"] == refused
    assert subscribe(["/private/ann"], "not a dict")["error"] == refused
    assert subscribe(["/private/ann"], {"authToken": "s3cret"})["successful"] is True
    assert subscribe("/public", None)["successful"] is True
    # The handshake's token names the user, for presence.
    presence = Engine(
        EngineConfig(presence=("/private/**",)), extensions=(auth_class(str(tokens)),)
    )
    for conn, token in enumerate(("ann-t", "stranger"), 1):
        presence.receive(conn, [hs | {"ext": {"authToken": token}}], now=0)
        (reply,) = orjson.loads(
            next(a for a in presence.actions_to_send() if isinstance(a, Reply)).body
        )
        message = {
            "channel": "/meta/subscribe",
            "clientId": reply["clientId"],
            "subscription": "/private/ann",
            "ext": {"authToken": "s3cret"},
        }
        presence.receive(10 + conn, [message], now=0)
        presence.actions_to_send()
    members = presence.presence("/private/ann")
    assert members[0] == {"user": "ann", "info": {"name": "Ann"}}
    assert members[1]["info"] is None  # no user: the clientId stands for it
