"""message_kind() and channel_kind(): one classification for every layer."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bayeux_core
from bayeux_core import MessageKind, channel_kind, is_meta, is_service, message_kind
from bayeux_core._client import is_connect as private_is_connect
from bayeux_core._kinds import HANDSHAKE_AND_SESSION_KINDS, META_KINDS, SESSION_KINDS

K = MessageKind


@pytest.mark.parametrize(
    ("channel", "kind"),
    [
        ("/meta/handshake", K.HANDSHAKE),
        ("/meta/connect", K.CONNECT),
        ("/meta/subscribe", K.SUBSCRIBE),
        ("/meta/unsubscribe", K.UNSUBSCRIBE),
        ("/meta/disconnect", K.DISCONNECT),
        ("/meta", K.OTHER_META),
        ("/meta/", K.OTHER_META),
        ("/meta/foo", K.OTHER_META),
        ("/meta/subscribe/x", K.OTHER_META),
        ("/meta/connect/", K.OTHER_META),
        ("/service", K.SERVICE),
        ("/service/", K.SERVICE),
        ("/service/echo", K.SERVICE),
        ("/service/a/b", K.SERVICE),
        ("/metadata", K.PUBLISH),
        ("/meta-x/y", K.PUBLISH),
        ("/services", K.PUBLISH),
        ("/service-x", K.PUBLISH),
        ("/chat/room", K.PUBLISH),
        ("/", K.PUBLISH),
        ("", K.PUBLISH),
        ("meta/connect", K.PUBLISH),
        ("/META/connect", K.PUBLISH),
        ("/Meta", K.PUBLISH),
    ],
)
def test_channel_kind(channel: str, kind: MessageKind) -> None:
    assert channel_kind(channel) is kind
    assert message_kind({"channel": channel}) is kind
    assert message_kind({"channel": channel, "clientId": 5, "data": None}) is kind


@pytest.mark.parametrize(
    "message",
    [
        None,
        1,
        "/meta/connect",
        ["/meta/connect"],
        [{"channel": "/meta/connect"}],
        {},
        {"clientId": "abc"},
        {"channel": None},
        {"channel": 7},
        {"channel": ["/meta/connect"]},
        {"channel": {"name": "/meta/connect"}},
    ],
)
def test_what_is_no_message_has_no_kind(message: object) -> None:
    assert message_kind(message) is None


def test_five_meta_channels_and_never_expire() -> None:
    assert {kind.value: kind for kind in META_KINDS.values()} == META_KINDS
    assert set(META_KINDS.values()) == {K.HANDSHAKE, *SESSION_KINDS}
    assert {K.HANDSHAKE, *SESSION_KINDS} == HANDSHAKE_AND_SESSION_KINDS
    assert K.EXPIRE not in {channel_kind(kind.value) for kind in MessageKind}


def reference(channel: str) -> MessageKind:
    """The classification as docs/protocol.md states it, the slow way."""
    for kind in (K.HANDSHAKE, K.CONNECT, K.SUBSCRIBE, K.UNSUBSCRIBE, K.DISCONNECT):
        if channel == kind.value:
            return kind
    if channel == "/meta" or channel.startswith("/meta/"):
        return K.OTHER_META
    if channel == "/service" or channel.startswith("/service/"):
        return K.SERVICE
    return K.PUBLISH


channels = st.one_of(
    st.text(),
    st.sampled_from(["/meta", "/service", "/metadata", "/services"]).flatmap(
        lambda head: st.text(alphabet="/abc*", max_size=6).map(lambda tail: head + tail)
    ),
    st.sampled_from([kind.value for kind in MessageKind]),
)


@given(channels)
def test_channel_kind_is_the_reference_classification(channel: str) -> None:
    kind = channel_kind(channel)
    assert kind is reference(channel)
    assert message_kind({"channel": channel}) is kind
    assert (kind is K.OTHER_META or kind in HANDSHAKE_AND_SESSION_KINDS) == is_meta(channel)
    assert (kind is K.SERVICE) == is_service(channel)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@given(json_values)
def test_any_json_value_is_classified_without_raising(value: Any) -> None:
    kind = message_kind(value)
    if type(value) is dict and type(value.get("channel")) is str:
        assert kind is channel_kind(value["channel"])
    else:
        assert kind is None


def test_is_connect_is_public() -> None:
    assert bayeux_core.is_connect is private_is_connect
    assert bayeux_core.is_connect({"channel": "/meta/connect"})
    assert not bayeux_core.is_connect({"channel": "/meta/connect/x"})
    assert not bayeux_core.is_connect({})


def test_kinds_hash_by_identity() -> None:
    # Not by name through Enum.__hash__: the metrics look a kind up per message.
    for kind in MessageKind:
        assert hash(kind) == object.__hash__(kind)
        assert {kind: 1}[MessageKind(kind.value)] == 1
