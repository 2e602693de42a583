"""What a cluster node's engine gives its bus so that failover keeps order and
recognises resends (issue 18, docs/redis.md): the publisher's pair on each
:class:`Broadcast`, and a session with acknowledged delivery that moves with
its unacknowledged batch (``Engine.adopt(acked=...)``).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bayeux_core import Broadcast, Reply
from bayeux_core._cluster import MAX_CLAIMED_ID_LENGTH

from .helpers import replies
from .test_engine_cluster import node, subscribe


def broadcast_of(actions: list[Any]) -> Broadcast:
    (broadcast,) = [a for a in actions if isinstance(a, Broadcast)]
    return broadcast


@pytest.mark.parametrize("message_id", ["7", 7, 7.5])
def test_a_client_publish_names_its_client_and_id(message_id: Any) -> None:
    wire = node()
    cid = wire.handshake()
    actions = wire.send([{"channel": "/a", "data": 1, "clientId": cid, "id": message_id}])
    broadcast = broadcast_of(actions)
    assert (broadcast.client_id, broadcast.message_id) == (cid, message_id)
    # The payload is what subscribers get: neither is in it.
    assert orjson.loads(broadcast.payload) == {"channel": "/a", "data": 1}


def test_a_publish_of_a_session_on_another_node_names_it_too() -> None:
    wire = node()
    actions = wire.send([{"channel": "/a", "data": 1, "clientId": "elsewhere", "id": "3"}])
    broadcast = broadcast_of(actions)
    assert (broadcast.client_id, broadcast.message_id) == ("elsewhere", "3")


@pytest.mark.parametrize(
    "message",
    [
        {"channel": "/a", "data": 1, "id": "1"},  # no clientId
        {"channel": "/a", "data": 1, "clientId": "c"},  # no id
        {"channel": "/a", "data": 1, "clientId": "x" * (MAX_CLAIMED_ID_LENGTH + 1), "id": "1"},
    ],
)
def test_a_publish_without_a_usable_pair_names_nobody(message: dict[str, Any]) -> None:
    wire = node()
    broadcast = broadcast_of(wire.send([message]))
    assert (broadcast.client_id, broadcast.message_id) == (None, None)


def test_a_server_publish_names_nobody() -> None:
    wire = node()
    wire.engine.publish("/a", 1, now=0.0)
    broadcast = broadcast_of(wire.engine.actions_to_send())
    assert (broadcast.client_id, broadcast.message_id) == (None, None)


def ack_handshake(wire: Any) -> dict[str, Any]:
    message = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
        "ext": {"ack": True},
    }
    (reply,) = replies(wire.send([message]))
    return reply


def test_a_cluster_node_agrees_to_acknowledged_delivery() -> None:
    wire = node()
    reply = ack_handshake(wire)
    assert reply["ext"] == {"ack": True}
    session = wire.engine.store.get(reply["clientId"])
    assert session is not None
    assert session.ack
    # Deliveries wait for a connect, numbered, on every transport.
    subscribe(wire, reply["clientId"], "/a")
    wire.engine.route("/a", b'{"channel":"/a","data":1}', now=wire.now)
    conn = wire.conn()
    actions = wire.send(
        [
            {
                "channel": "/meta/connect",
                "clientId": reply["clientId"],
                "connectionType": "long-polling",
            }
        ],
        conn=conn,
    )
    connect_reply, delivery = replies(actions, conn)
    assert connect_reply["ext"] == {"ack": 1}
    assert delivery["data"] == 1


A1 = b'{"channel":"/a","data":1}'
A2 = b'{"channel":"/a","data":2}'
A3 = b'{"channel":"/a","data":3}'


def adopted(ack: int) -> Reply:
    """A session adopted with batch 4 (A1, A2) unacknowledged and A3 after it;
    the reply to a connect that acknowledges ``ack``."""
    wire = node()
    session = wire.engine.adopt(
        "moved", now=0.0, subscriptions=["/a"], backlog=[A3], acked=(4, [A1, A2])
    )
    assert session.ack
    assert (session.batch, session.unacked, list(session.queue)) == (4, (A1, A2), [A3])
    conn = wire.conn()
    actions = wire.send(
        [
            {
                "channel": "/meta/connect",
                "clientId": "moved",
                "connectionType": "long-polling",
                "ext": {"ack": ack},
            }
        ],
        conn=conn,
    )
    (reply,) = [a for a in actions if isinstance(a, Reply)]
    return reply


def test_an_adopted_batch_is_sent_again_under_its_number_until_acknowledged() -> None:
    reply = adopted(3)
    assert reply.messages == (A1, A2)
    assert orjson.loads(reply.body)[0]["ext"] == {"ack": 4}


def test_an_adopted_batch_acknowledged_gives_way_to_the_next() -> None:
    reply = adopted(4)
    assert reply.messages == (A3,)
    assert orjson.loads(reply.body)[0]["ext"] == {"ack": 5}


def test_an_adopted_session_with_nothing_unacknowledged_numbers_on() -> None:
    wire = node()
    wire.engine.adopt("moved", now=0.0, backlog=[A3], acked=(9, []))
    conn = wire.conn()
    actions = wire.send(
        [{"channel": "/meta/connect", "clientId": "moved", "connectionType": "long-polling"}],
        conn=conn,
    )
    (reply,) = [a for a in actions if isinstance(a, Reply)]
    assert reply.messages == (A3,)
    assert orjson.loads(reply.body)[0]["ext"] == {"ack": 10}
