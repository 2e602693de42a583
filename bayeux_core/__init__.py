"""bayeux_core: the Bayeux protocol as a pure state machine.

No sockets, no clock, no threads, no event loop: inputs (messages, ``now``)
go in, actions and the next deadline come out. See ``docs/embedding.md``.
Faye's HTTP and WebSocket wire rules, as pure functions, are in
:mod:`bayeux_core.wire`.
"""

from ._access import GRANTS_RULE as GRANTS_RULE
from ._access import AccessRules as AccessRules
from ._access import ChannelRule as ChannelRule
from ._access import Principal as Principal
from ._actions import Action as Action
from ._actions import Broadcast as Broadcast
from ._actions import Close as Close
from ._actions import Deliver as Deliver
from ._actions import Disconnected as Disconnected
from ._actions import DisconnectReason as DisconnectReason
from ._actions import Event as Event
from ._actions import ExtensionFailed as ExtensionFailed
from ._actions import Handshaken as Handshaken
from ._actions import PresenceEntered as PresenceEntered
from ._actions import PresenceExited as PresenceExited
from ._actions import PresenceJoined as PresenceJoined
from ._actions import PresenceLeft as PresenceLeft
from ._actions import Published as Published
from ._actions import QueueOverflow as QueueOverflow
from ._actions import Reply as Reply
from ._actions import SessionExpired as SessionExpired
from ._actions import Subscribed as Subscribed
from ._actions import Unsubscribed as Unsubscribed
from ._channels import expand as expand
from ._channels import is_meta as is_meta
from ._channels import is_pattern as is_pattern
from ._channels import is_service as is_service
from ._channels import is_valid_name as is_valid_name
from ._channels import is_valid_pattern as is_valid_pattern
from ._channels import matches as matches
from ._client import CallFailed as CallFailed
from ._client import CallSucceeded as CallSucceeded
from ._client import ClientEvent as ClientEvent
from ._client import ClientSession as ClientSession
from ._client import ClientState as ClientState
from ._client import HandshakeFailed as HandshakeFailed
from ._client import HandshakeSucceeded as HandshakeSucceeded
from ._client import MessageReceived as MessageReceived
from ._client import PublishFailed as PublishFailed
from ._client import PublishSucceeded as PublishSucceeded
from ._client import SessionEnded as SessionEnded
from ._client import SubscribeFailed as SubscribeFailed
from ._client import SubscribeSucceeded as SubscribeSucceeded
from ._client import SubscriptionRecovered as SubscriptionRecovered
from ._client import TransportDown as TransportDown
from ._client import TransportUp as TransportUp
from ._client import is_connect as is_connect
from ._cluster import claimed_sessions as claimed_sessions
from ._cluster import fail_without_backend as fail_without_backend
from ._cluster import recovery_offset as recovery_offset
from ._cluster import refuse_without_backend as refuse_without_backend
from ._config import CONNECTION_TYPES as CONNECTION_TYPES
from ._config import EngineConfig as EngineConfig
from ._config import OverflowPolicy as OverflowPolicy
from ._engine import Engine as Engine
from ._errors import BayeuxError as BayeuxError
from ._errors import ErrorCode as ErrorCode
from ._errors import LocalProtocolError as LocalProtocolError
from ._errors import ProtocolError as ProtocolError
from ._errors import PublishError as PublishError
from ._errors import error_string as error_string
from ._extensions import Extension as Extension
from ._extensions import MessageContext as MessageContext
from ._extensions import refuse as refuse
from ._history import HistoryPolicy as HistoryPolicy
from ._ids import random_client_id as random_client_id
from ._kinds import channel_kind as channel_kind
from ._kinds import message_kind as message_kind
from ._messages import BodyError as BodyError
from ._messages import BodyErrorKind as BodyErrorKind
from ._messages import Message as Message
from ._messages import decode_body as decode_body
from ._messages import encode as encode
from ._presence import PRESENCE_PREFIX as PRESENCE_PREFIX
from ._presence import can_have_presence as can_have_presence
from ._presence import presence_channel as presence_channel
from ._presence import presence_delivery as presence_delivery
from ._presence import presence_probe as presence_probe
from ._presence import presence_target as presence_target
from ._presence import probe_refusal as probe_refusal
from ._replies import failure_reply as failure_reply
from ._replies import refused_copy as refused_copy
from ._replies import unanswered as unanswered
from ._state import TRANSITIONS as TRANSITIONS
from ._state import MessageKind as MessageKind
from ._state import Outcome as Outcome
from ._state import SessionState as SessionState
from ._store import MemoryStore as MemoryStore
from ._store import Session as Session
from ._store import SessionStore as SessionStore
from ._timesync import TimesyncExtension as TimesyncExtension
from ._timesync import timesync_answer as timesync_answer

__version__ = "0.1.0"

from . import wire as wire

__all__ = (
    "CONNECTION_TYPES",
    "GRANTS_RULE",
    "PRESENCE_PREFIX",
    "TRANSITIONS",
    "AccessRules",
    "Action",
    "BayeuxError",
    "BodyError",
    "BodyErrorKind",
    "Broadcast",
    "CallFailed",
    "CallSucceeded",
    "ChannelRule",
    "ClientEvent",
    "ClientSession",
    "ClientState",
    "Close",
    "Deliver",
    "DisconnectReason",
    "Disconnected",
    "Engine",
    "EngineConfig",
    "ErrorCode",
    "Event",
    "Extension",
    "ExtensionFailed",
    "HandshakeFailed",
    "HandshakeSucceeded",
    "Handshaken",
    "HistoryPolicy",
    "LocalProtocolError",
    "MemoryStore",
    "Message",
    "MessageContext",
    "MessageKind",
    "MessageReceived",
    "Outcome",
    "OverflowPolicy",
    "PresenceEntered",
    "PresenceExited",
    "PresenceJoined",
    "PresenceLeft",
    "Principal",
    "ProtocolError",
    "PublishError",
    "PublishFailed",
    "PublishSucceeded",
    "Published",
    "QueueOverflow",
    "Reply",
    "Session",
    "SessionEnded",
    "SessionExpired",
    "SessionState",
    "SessionStore",
    "SubscribeFailed",
    "SubscribeSucceeded",
    "Subscribed",
    "SubscriptionRecovered",
    "TimesyncExtension",
    "TransportDown",
    "TransportUp",
    "Unsubscribed",
    "can_have_presence",
    "channel_kind",
    "claimed_sessions",
    "decode_body",
    "encode",
    "error_string",
    "expand",
    "fail_without_backend",
    "failure_reply",
    "is_connect",
    "is_meta",
    "is_pattern",
    "is_service",
    "is_valid_name",
    "is_valid_pattern",
    "matches",
    "message_kind",
    "presence_channel",
    "presence_delivery",
    "presence_probe",
    "presence_target",
    "probe_refusal",
    "random_client_id",
    "recovery_offset",
    "refuse",
    "refuse_without_backend",
    "refused_copy",
    "timesync_answer",
    "unanswered",
    "wire",
)
