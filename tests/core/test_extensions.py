"""The Extension base class and MessageContext on their own.

How the engine runs extensions is tested with the engine.
"""

from __future__ import annotations

import pytest

from bayeux_core import Extension, Message, MessageContext


class IncomingOnly(Extension):
    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        return None


class Rewriter(Extension):
    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        return {**message, "ext": {"seen": True}}


class RewriterSubclass(Rewriter):
    """Inherits an overridden ``outgoing``."""


class RepliesOnly(Extension):
    outgoing_deliveries = False

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        return None


class PassThroughOverride(Extension):
    """Overrides ``outgoing`` even though it only calls the base: still counts."""

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        return super().outgoing(message, context)


CONTEXT = MessageContext(now=12.5, client_id="abc", request={"h": 1}, is_delivery=True)


def test_base_hooks_pass_the_same_object_through() -> None:
    extension = Extension()
    message: Message = {"channel": "/a", "data": [1]}
    assert extension.incoming(message, CONTEXT) is message
    assert extension.outgoing(message, CONTEXT) is message
    assert message == {"channel": "/a", "data": [1]}


def test_base_does_not_rewrite_outgoing() -> None:
    assert Extension.outgoing_deliveries is True
    assert Extension().rewrites_outgoing is False


def test_incoming_override_does_not_rewrite_outgoing() -> None:
    extension = IncomingOnly()
    assert extension.incoming({"channel": "/a"}, CONTEXT) is None
    assert extension.rewrites_outgoing is False


def test_outgoing_override_rewrites() -> None:
    assert Rewriter().rewrites_outgoing is True
    assert RewriterSubclass().rewrites_outgoing is True
    assert PassThroughOverride().rewrites_outgoing is True
    assert Rewriter().outgoing({"channel": "/a"}, CONTEXT) == {
        "channel": "/a",
        "ext": {"seen": True},
    }


def test_replies_only_override_does_not_rewrite() -> None:
    assert RepliesOnly().rewrites_outgoing is False


def test_outgoing_deliveries_per_instance() -> None:
    extension = Rewriter()
    extension.outgoing_deliveries = False
    assert extension.rewrites_outgoing is False
    assert Rewriter().rewrites_outgoing is True
    # Turning deliveries on for a class that does not override outgoing
    # changes nothing: the base hook would not rewrite anything.
    base = Extension()
    base.outgoing_deliveries = True
    assert base.rewrites_outgoing is False


def test_message_context_defaults() -> None:
    context = MessageContext(now=1.0)
    assert context.now == 1.0
    assert context.client_id is None
    assert context.request is None
    assert context.is_delivery is False


def test_message_context_is_slotted_and_takes_a_user() -> None:
    context = MessageContext(12.5, "abc", {"h": 1}, True)
    assert not hasattr(context, "__dict__")
    assert context == CONTEXT
    assert (context.user, context.info) == (None, None)
    # An extension names the user on handshake (presence counts users).
    context.user = "alice"
    context.info = {"name": "Alice"}
    assert context != CONTEXT
    with pytest.raises(AttributeError):
        context.colour = "red"  # type: ignore[attr-defined]
