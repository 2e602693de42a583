"""Refusals built outside the normal flow of a message through the engine.

A client matches a reply to the message it sent by ``id`` (and tells replies
from deliveries by ``successful``), so a refusal keeps what it is matched by
and nothing else of the message it refuses. Three shapes are needed:

* :func:`failure_reply`: the reply itself, ``successful: false`` with an
  ``error`` (the engine answers a message an extension raised on with it; an
  in-process client hands one to its session for a message no reply came
  for).
* :func:`refused_copy`: a *message* to hand to the engine in place of one
  whose checks failed half-way, so that the engine answers it refused and
  acts on nothing the failed check may have changed in it.
* :func:`unanswered`: the messages of a batch that a reply body left out.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._messages import Message

__all__ = ["failure_reply", "refused_copy", "unanswered"]

#: What a client matches a reply by, and what says whose it is.
_MATCHED_BY = ("id", "channel", "clientId")


def failure_reply(message: object, error: str) -> Message:
    """The reply refusing ``message`` with ``error``.

    It has ``successful: false`` and ``error``, and the message's ``id`` (if a
    string or an integer), ``channel`` and ``clientId`` (if strings): fields
    of other types are left out rather than echoed. ``message`` may be
    anything a batch holds; for a non-object the reply names nothing.
    """
    reply: Message = {}
    if type(message) is dict:
        if type(message.get("id")) in (str, int):
            reply["id"] = message["id"]
        for name in ("channel", "clientId"):
            if type(message.get(name)) is str:
                reply[name] = message[name]
    reply["successful"] = False
    reply["error"] = error
    return reply


def refused_copy(message: Message, error: str) -> Message:
    """A new message standing for ``message`` refused with ``error``.

    Only ``id``, ``channel`` and ``clientId`` are copied (as they are: the
    engine checks them when it answers), then ``error`` is set, as an
    extension sets it to refuse (:func:`~bayeux_core.refuse`). For a layer
    whose own check failed on ``message`` (an asynchronous extension that
    raised): whatever the check did to the message is not trusted, and the
    engine replies ``successful: false`` with ``error``.
    """
    copy: Message = {name: message[name] for name in _MATCHED_BY if name in message}
    copy["error"] = error
    return copy


def unanswered(sent: Iterable[Message], replies: Iterable[object]) -> list[Message]:
    """The messages of ``sent`` that no reply in ``replies`` answers.

    A reply answers a message when it is an object with ``successful`` (a
    delivery has none) and the same ``id``, compared as text as a client
    compares them: ``str(id)``, so a message without an id is answered by a
    reply without one. For a server-side client that sent ``sent`` as one
    request and got ``replies`` back: a message missing from them was dropped
    by a server extension, which answers nothing for it.
    """
    answered = {
        str(reply.get("id")) for reply in replies if type(reply) is dict and "successful" in reply
    }
    return [message for message in sent if str(message.get("id")) not in answered]
