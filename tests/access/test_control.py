"""AccessControl on the engine: identities, rules, expiry, credential hygiene.

Driven synchronously through bayeux_core's Engine (tests/core/helpers.Wire);
the network end to end is in test_private_chat_config.py and the client tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt as pyjwt
import orjson
import pytest

from bayeux_core import ChannelRule, EngineConfig
from bayeux_trio.access import (
    AccessControl,
    AccessSettings,
    JwtSettings,
    TokenFileSettings,
    TokenRegistry,
    make_control,
)
from bayeux_trio.access._control import strip_ext
from tests.core.helpers import Wire, replies

SECRET = "s" * 40
TOKENS = {"alice": {"token": "alice-token"}, "bob": {"token": "bob-token"}, "carol": "carol-token"}
PRIVATE = (
    ChannelRule("/private/{user}", subscribe=("{user}",), publish="nobody"),
    ChannelRule(
        "/private/{a}/{b}", subscribe=("{a}", "{b}"), publish=("{a}", "{b}"), sender="from"
    ),
    ChannelRule("/private/**", subscribe="nobody", publish="nobody"),
)
REFUSED = "Invalid subscription auth token"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def registry(tmp_path: Path) -> TokenFileSettings:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(TOKENS))
    return TokenFileSettings(file=path)


def jwt_settings(tmp_path: Path) -> JwtSettings:
    path = tmp_path / "jwt.secret"
    path.write_text(SECRET)
    return JwtSettings(secret_file=path)


def token(**claims: Any) -> str:
    claims.setdefault("exp", int(time.time()) + 3600)
    return pyjwt.encode(claims, SECRET, algorithm="HS256")


def wire(
    settings: AccessSettings, *, presence: tuple[str, ...] = (), clock: Clock | None = None
) -> Wire:
    control = make_control(settings, clock=clock or time.time)
    w = Wire(EngineConfig(presence=presence), extensions=(control,))
    w.control = control  # type: ignore[attr-defined]
    return w


def handshake(w: Wire, ext: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
        "id": "h",
    }
    if ext is not None:
        message["ext"] = ext
    (reply,) = replies(w.send([message]))
    return reply


def send(w: Wire, message: dict[str, Any]) -> dict[str, Any]:
    out = replies(w.send([message]))
    return out[0]


def subscribe(w: Wire, cid: str, channel: str | list[str], ext: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "channel": "/meta/subscribe",
        "clientId": cid,
        "subscription": channel,
    }
    if ext is not None:
        message["ext"] = ext
    return send(w, message)


def publish(w: Wire, cid: str | None, channel: str, data: Any, ext: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"channel": channel, "data": data}
    if cid is not None:
        message["clientId"] = cid
    if ext is not None:
        message["ext"] = ext
    return send(w, message)


def queued(w: Wire, cid: str) -> list[dict[str, Any]]:
    session = w.engine.store.get(cid)
    assert session is not None
    return [orjson.loads(item) for item in session.queue]


# ------------------------------------------------------------------ registry


def test_registry_tokens_admit_the_two_users_of_a_conversation(tmp_path: Path) -> None:
    w = wire(AccessSettings(rules=PRIVATE, tokens=registry(tmp_path), error=REFUSED))
    alice, bob, carol = (handshake(w)["clientId"] for _ in range(3))
    assert subscribe(w, alice, "/private/alice/bob", {"authToken": "alice-token"})["successful"]
    assert subscribe(w, bob, "/private/alice/bob", {"authToken": "bob-token"})["successful"]
    refused = subscribe(w, carol, "/private/alice/bob", {"authToken": "carol-token"})
    assert refused == {**refused, "successful": False, "error": REFUSED}
    assert subscribe(w, carol, "/private/alice/bob")["error"] == REFUSED
    assert subscribe(w, carol, "/private/alice/bob", {"authToken": "guess"})["error"] == REFUSED


@pytest.mark.parametrize("pattern", ["/**", "/private/*", "/private/**", "/private/alice/*"])
def test_wildcards_that_reach_a_conversation_are_refused(tmp_path: Path, pattern: str) -> None:
    w = wire(AccessSettings(rules=PRIVATE, tokens=registry(tmp_path), error=REFUSED))
    carol = handshake(w)["clientId"]
    reply = subscribe(w, carol, pattern, {"authToken": "carol-token"})
    assert reply["error"] == REFUSED
    # A list is refused if any of it is.
    assert subscribe(w, carol, ["/chat", pattern], {"authToken": "carol-token"})["error"] == REFUSED
    assert subscribe(w, carol, "/chat/*")["successful"] is True


def test_a_publish_is_stamped_with_its_sender_and_loses_its_token(tmp_path: Path) -> None:
    w = wire(AccessSettings(rules=PRIVATE, tokens=registry(tmp_path), error=REFUSED))
    alice, bob = (handshake(w)["clientId"] for _ in range(2))
    subscribe(w, bob, "/private/alice/bob", {"authToken": "bob-token"})
    ext = {"authToken": "alice-token", "trace": 7}
    reply = publish(w, alice, "/private/alice/bob", {"from": "bob", "text": "hi"}, ext)
    assert reply["successful"] is True
    assert queued(w, bob) == [
        {
            "channel": "/private/alice/bob",
            "data": {"from": "alice", "text": "hi"},
            "ext": {"trace": 7},
        }
    ]
    assert publish(w, alice, "/private/alice/bob", {"text": "x"})["error"] == REFUSED
    assert (
        publish(w, alice, "/private/bob", {"text": "x"}, {"authToken": "alice-token"})["error"]
        == REFUSED
    )


def test_a_registry_token_on_handshake_names_the_session(tmp_path: Path) -> None:
    w = wire(AccessSettings(tokens=registry(tmp_path)), presence=("/room",))
    cid = handshake(w, {"authToken": "bob-token"})["clientId"]
    subscribe(w, cid, "/room")
    assert (
        w.engine.presence("/room") == [{"user": "bob"}]
        or w.engine.presence("/room")[0]["user"] == "bob"
    )
    assert handshake(w, {"authToken": "nobody's"})["error"] == "401::Invalid auth token"


# ------------------------------------------------------------------ JWT


def test_a_connection_token_names_the_user_and_keeps_its_grants_private(tmp_path: Path) -> None:
    w = wire(AccessSettings(jwt=jwt_settings(tmp_path)), presence=("/room",))
    reply = handshake(
        w,
        {
            "auth": {
                "token": token(sub="alice", info={"name": "Alice"}, channels=["/room", "/news/*"])
            }
        },
    )
    cid = reply["clientId"]
    assert "channels" not in json.dumps(reply)
    session = w.engine.store.get(cid)
    assert session is not None
    assert (session.user, session.info) == ("alice", {"name": "Alice"})
    assert session.access["channels"] == ["/room", "/news/*"]
    assert subscribe(w, cid, "/room")["successful"] is True
    assert subscribe(w, cid, "/news/*")["successful"] is True
    assert subscribe(w, cid, "/news/**")["error"] == "403:/news/**:Forbidden"
    assert subscribe(w, cid, "/other")["error"] == "403:/other:Forbidden"
    assert publish(w, cid, "/other", 1)["error"] == "403:/other:Forbidden"
    assert publish(w, cid, "/news/a", 1)["successful"] is True


@pytest.mark.parametrize(
    ("ext", "error"),
    [
        ({"auth": {"token": "garbage"}}, "401:"),
        ({"auth": {"token": 7}}, "401:"),
        ({"auth": {"token": pyjwt.encode({"sub": "a"}, "x" * 40, algorithm="HS256")}}, "401:"),
    ],
)
def test_a_bad_connection_token_refuses_the_handshake(tmp_path: Path, ext: Any, error: str) -> None:
    w = wire(AccessSettings(jwt=jwt_settings(tmp_path)))
    reply = handshake(w, ext)
    assert reply["successful"] is False
    assert reply["error"].startswith(error)
    assert reply["advice"]["reconnect"] == "handshake"


def test_authenticated_handshakes_only(tmp_path: Path) -> None:
    w = wire(AccessSettings(jwt=jwt_settings(tmp_path), handshake="authenticated"))
    assert handshake(w)["error"] == "401::Authentication required"
    assert handshake(w, {"auth": {"token": token(sub="alice")}})["successful"] is True


def test_a_channel_token_opens_one_token_channel(tmp_path: Path) -> None:
    rules = (ChannelRule("/secret/**", subscribe="token", publish="server"),)
    w = wire(AccessSettings(rules=rules, jwt=jwt_settings(tmp_path)))
    cid = handshake(w)["clientId"]
    good = {"auth": {"channelToken": token(channel="/secret/a")}}
    assert subscribe(w, cid, "/secret/a", good)["successful"] is True
    assert subscribe(w, cid, "/secret/b", good)["error"] == "403:/secret/b:Forbidden"
    assert subscribe(w, cid, "/secret/*", good)["error"] == "403:/secret/*:Forbidden"
    assert subscribe(w, cid, "/secret/a")["error"] == "403:/secret/a:Forbidden"
    bad = {"auth": {"channelToken": "nonsense"}}
    assert subscribe(w, cid, "/secret/a", bad)["error"].startswith("401:")
    # A channel token naming a user is that user's alone.
    mine = {"auth": {"channelToken": token(channel="/secret/a", sub="alice")}}
    assert subscribe(w, cid, "/secret/a", mine)["error"] == "401::Channel token is for another user"
    alice = handshake(w, {"auth": {"token": token(sub="alice")}})["clientId"]
    assert subscribe(w, alice, "/secret/a", mine)["successful"] is True
    # A connection token is not a channel token.
    conn = {"auth": {"channelToken": token(sub="alice")}}
    assert subscribe(w, cid, "/secret/a", conn)["successful"] is False


def test_an_expired_session_is_refused_and_asked_to_handshake_again(tmp_path: Path) -> None:
    clock = Clock()
    w = wire(AccessSettings(jwt=jwt_settings(tmp_path)), clock=clock)
    cid = handshake(w, {"auth": {"token": token(sub="alice", exp=int(clock.now) + 60)}})["clientId"]
    assert subscribe(w, cid, "/a")["successful"] is True
    control = w.control  # type: ignore[attr-defined]
    assert control.expired(clock.now) == []
    clock.now += 60 + 5 + 1  # past exp + leeway
    assert subscribe(w, cid, "/b")["error"] == "401::Authentication token expired"
    connect = {"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling"}
    reply = send(w, connect)
    assert reply["error"] == "401::Authentication token expired"
    assert reply["advice"]["reconnect"] == "handshake"
    assert publish(w, cid, "/a", 1)["error"] == "401::Authentication token expired"
    assert control.expired(clock.now) == [cid]
    assert control.expired(clock.now) == []  # once


# ------------------------------------------------------------------ backend


def test_server_only_channels_take_the_backend_secret(tmp_path: Path) -> None:
    secret = tmp_path / "backend.secret"
    secret.write_text("b" * 32 + "\n")
    rules = (ChannelRule("/alerts/**", publish="server"),)
    w = wire(AccessSettings(rules=rules, backend_secret_file=secret))
    cid = handshake(w)["clientId"]
    subscribe(w, cid, "/alerts/*")
    assert publish(w, None, "/alerts/x", 1)["error"] == "403:/alerts/x:Forbidden"
    assert publish(w, None, "/alerts/x", 1, {"auth": {"backend": "wrong"}})["successful"] is False
    assert publish(w, None, "/alerts/x", 2, {"auth": {"backend": "b" * 32}})["successful"] is True
    assert queued(w, cid) == [{"channel": "/alerts/x", "data": 2}]


def test_files_are_checked_when_built(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(ValueError, match="backend_secret_file"):
        make_control(AccessSettings(backend_secret_file=short))
    with pytest.raises(ValueError, match="backend_secret_file"):
        make_control(AccessSettings(backend_secret_file=tmp_path / "missing"))


# ------------------------------------------------------------------ presence


def test_watching_presence_obeys_the_channels_rules(tmp_path: Path) -> None:
    rules = (ChannelRule("/team/{t}", subscribe=("{t}",)),)
    w = wire(AccessSettings(rules=rules, tokens=registry(tmp_path)), presence=("/team/*",))
    alice = handshake(w, {"authToken": "alice-token"})["clientId"]
    bob = handshake(w, {"authToken": "bob-token"})["clientId"]
    assert subscribe(w, alice, "/presence/team/alice")["successful"] is True
    assert subscribe(w, bob, "/presence/team/alice")["error"] == "403:/team/alice:Forbidden"


def test_strip_ext_copies_what_it_changes() -> None:
    shared = {"auth": {"token": "t", "keep": 1}, "x": 2}
    message: dict[str, Any] = {"channel": "/a", "ext": shared}
    strip_ext(message, [("auth", "token")])
    assert message["ext"] == {"auth": {"keep": 1}, "x": 2}
    assert shared == {"auth": {"token": "t", "keep": 1}, "x": 2}
    message = {"channel": "/a", "ext": {"auth": {"token": "t"}}}
    strip_ext(message, [("auth", "token"), ("missing",)])
    assert "ext" not in message
    message = {"channel": "/a", "ext": "odd"}
    strip_ext(message, [("auth",)])
    assert message["ext"] == "odd"


def test_a_disconnected_session_leaves_no_expiry_record(tmp_path: Path) -> None:
    clock = Clock()
    w = wire(AccessSettings(jwt=jwt_settings(tmp_path)), clock=clock)
    control = w.control  # type: ignore[attr-defined]
    ids = []
    for _ in range(3):
        cid = handshake(w, {"auth": {"token": token(sub="alice")}})["clientId"]
        subscribe(w, cid, "/a")
        ids.append(cid)
    assert sorted(control._watched) == sorted(ids)
    send(w, {"channel": "/meta/disconnect", "clientId": ids[0]})
    assert sorted(control._watched) == sorted(ids[1:])
    clock.now += 7200
    assert sorted(control.expired(clock.now)) == sorted(ids[1:])


def test_a_session_named_by_the_registry_loses_its_user_with_it(tmp_path: Path) -> None:
    tokens = registry(tmp_path)
    rules = (ChannelRule("/team/{t}", subscribe=("{t}",)),)
    settings = AccessSettings(rules=rules, tokens=tokens)
    control = AccessControl(settings, tokens=TokenRegistry(tokens, check_every=0))
    w = Wire(EngineConfig(), extensions=(control,))
    alice = handshake(w, {"authToken": "alice-token"})["clientId"]
    assert subscribe(w, alice, "/team/alice")["successful"] is True
    # alice leaves the registry; her session, named at handshake, goes with her.
    tokens.file.write_text(json.dumps({"bob": "bob-token"}))
    assert subscribe(w, alice, "/team/alice")["error"] == "403:/team/alice:Forbidden"


def test_access_control_without_pyjwt(tmp_path: Path) -> None:
    """Registry and rules need no extra; JWT settings say which extra they need."""
    script = f"""
import sys
sys.modules["jwt"] = None  # as if PyJWT were not installed
from pathlib import Path
from bayeux_trio.access import AccessSettings, JwtSettings, TokenFileSettings, make_control
tokens = TokenFileSettings(file=Path({str(registry(tmp_path).file)!r}))
make_control(AccessSettings(tokens=tokens))
try:
    make_control(AccessSettings(jwt=JwtSettings(secret_file=Path({str(jwt_settings(tmp_path).secret_file)!r}))))
except ValueError as exc:
    print(exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("jwt: needs PyJWT and cryptography"), done.stdout + done.stderr
    assert "pip install '.[access]'" in done.stdout
