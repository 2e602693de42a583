"""Channel access rules: who may subscribe to and publish on which channels.

Deciding this in an extension means hand-writing the same checks every time,
and Faye's history shows what gets missed (wildcard subscriptions slipping
past per-channel checks). Here the decision is data: a list of
:class:`ChannelRule` values, each a channel pattern with who may subscribe
and who may publish, compiled once into :class:`AccessRules`. It is pure: the
caller says who is asking (:class:`Principal`) and gets back ``None``
(allowed) or the rule that refuses, whose ``error`` it sends.

**Patterns.** ``/`` then segments joined by ``/``. A segment is a literal
channel segment (``[A-Za-z0-9-_!~()$@]+``), ``*`` (exactly one segment, any
value), ``{name}`` (exactly one segment, its value bound to the variable
``name``; each name once per pattern), and the last segment may be ``**``
(one or more segments). At most :data:`MAX_RULE_SEGMENTS` segments. ``/meta``
and everything under it are the protocol's own and cannot have rules; the
caller checks only the channels a client publishes on or subscribes to, never
the meta messages themselves. ``/service/...`` may have rules like any other
channel.

**Who.** ``subscribe`` and ``publish`` are a keyword or a list of users:

* ``"anyone"`` (the default);
* ``"authenticated"``: the principal has a user;
* ``"token"``: the principal holds a channel token for exactly this channel
  (never a pattern: a channel token opens one channel), or its grants cover
  the subscription (publish: match the channel);
* ``"server"`` (publish only): the application itself;
* ``"nobody"``;
* a list of user templates, each a user name or ``{var}`` naming one of the
  pattern's variables: allowed when the principal's user equals one of them.
  ``/private/{a}/{b}`` with ``("{a}", "{b}")`` admits ``/private/ann/bob`` to
  ann and bob only.

A server principal may always publish and subscribe, whatever the rules and
grants say. A principal with ``grants`` (the channels its connection token
allows) is held to them on top of the rules.

**Most specific wins.** The rule for a concrete channel is the most specific
of the rules whose pattern matches it. Compare two patterns segment by
segment from the left: a literal beats ``*``/``{var}`` (which are equal),
and those beat ``**``; the first difference decides; if one is a prefix of
the other in this comparison, the longer one wins. So ``/a/*`` beats
``/a/**``, ``/a/b/**`` beats ``/a/**``, and for ``/a/b``, ``/a/*`` beats
``/*/b`` (the leftmost literal). Two rules of the same shape (equal once
variable names are ignored: ``/a/*`` and ``/a/{x}``) are refused when the
rules are built, which makes this order total among the rules that can match
one channel. No matching rule: anyone may do anything, as in Faye.

**Wildcard subscriptions.** A subscription to ``/chat/*`` or ``/**`` receives
every channel it covers, so it is allowed only if, for *every* concrete
channel it covers, that channel's rule admits the principal, evaluated
against the subscription itself (``"token"`` then needs grants that cover the
whole pattern). That is decided without listing channels: a walk over the
free positions of the subscription tries at each position the literals the
rules still in play use there, plus one "any other value" that only ``*``,
``{var}`` and ``**`` match. A variable bound at a free position has an
unknown value, which no user equals (``/private/ann/*`` covers
``/private/ann/cy``, where bob is not admitted). A ``**`` subscription is
walked to one segment past the longest rule, beyond which nothing changes.
The walk is exact for the rules, and it is bounded: past
:data:`MAX_WALK_LEAVES` channel classes it stops and the subscription is
refused (fail closed). Results are kept per subscription, and the rule of
each published channel per channel, in bounded LRU caches; the rules never
change, so the caches never go stale.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ._channels import is_pattern, is_valid_name, is_valid_pattern, matches

__all__ = [
    "GRANTS_RULE",
    "MAX_RULE_SEGMENTS",
    "MAX_WALK_LEAVES",
    "AccessRules",
    "ChannelRule",
    "Principal",
]

#: The deepest rule pattern, in segments (a ``**`` counts as one).
MAX_RULE_SEGMENTS = 16
#: The most channel classes one subscription's walk visits before refusing it.
MAX_WALK_LEAVES = 20_000
#: Entries per cache (subscriptions walked; channels' rules for publishes).
_CACHE_SIZE = 4096

_SUBSCRIBE_KEYWORDS = ("anyone", "authenticated", "token", "nobody")
_PUBLISH_KEYWORDS = ("anyone", "authenticated", "token", "server", "nobody")
_VARIABLE_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: Who may act: a keyword, or user templates (``"ann"``, ``"{a}"``).
_Who = str | tuple[str, ...]
#: A pattern's variables and their values; None: bound at a wildcard position
#: of a subscription, where any value is possible.
_Bindings = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class _Shape:
    """A parsed pattern: literals, None for ``*``/``{var}``, and a final ``**``."""

    segments: tuple[str | None, ...]
    deep: bool
    #: (variable name, segment position)
    variables: tuple[tuple[str, int], ...]


def _parse_pattern(pattern: object) -> _Shape:
    if type(pattern) is not str:
        raise ValueError(f"pattern: want a string such as '/chat/*', not {pattern!r}")
    if not pattern.startswith("/"):
        raise ValueError(f"pattern: {pattern!r} must start with '/'")
    parts = pattern[1:].split("/")
    if len(parts) > MAX_RULE_SEGMENTS:
        raise ValueError(
            f"pattern: {pattern!r} has {len(parts)} segments, at most {MAX_RULE_SEGMENTS}"
        )
    if parts[0] == "meta":
        raise ValueError(f"pattern: {pattern!r}: /meta channels are the protocol's own")
    segments: list[str | None] = []
    variables: dict[str, int] = {}
    deep = False
    for position, part in enumerate(parts):
        if part == "**":
            if position != len(parts) - 1:
                raise ValueError(f"pattern: {pattern!r}: '**' must be the last segment")
            deep = True
        elif part == "*":
            segments.append(None)
        elif "{" in part or "}" in part:
            found = _VARIABLE_RE.fullmatch(part)
            if found is None:
                raise ValueError(
                    f"pattern: {pattern!r}: {part!r} is not a variable (want a whole "
                    "segment '{name}', the name a letter or _ then letters, digits or _)"
                )
            if found[1] in variables:
                raise ValueError(f"pattern: {pattern!r}: variable {found[1]!r} appears twice")
            variables[found[1]] = position
            segments.append(None)
        elif not is_valid_name("/" + part):
            what = "an empty segment" if not part else f"{part!r}, not a channel segment"
            raise ValueError(f"pattern: {pattern!r} has {what}")
        else:
            segments.append(part)
    return _Shape(tuple(segments), deep, tuple(variables.items()))


def _check_who(value: object, name: str, pattern: str, variables: Iterable[str]) -> _Who:
    keywords = _SUBSCRIBE_KEYWORDS if name == "subscribe" else _PUBLISH_KEYWORDS
    if isinstance(value, str):
        if value in keywords:
            return value
        if value == "server":
            raise ValueError(
                "subscribe: 'server' is for publish only (the server never subscribes "
                "through rules)"
            )
        raise ValueError(
            f"{name}: want one of {', '.join(map(repr, keywords))} or a list of users, "
            f"not {value!r}"
        )
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name}: want a keyword or a list of users, not {value!r}")
    if not value:
        raise ValueError(f"{name}: an empty list of users admits nobody; say 'nobody'")
    known = set(variables)
    for template in value:
        if type(template) is not str or not template:
            raise ValueError(f"{name}: {template!r} is not a user name or a '{{variable}}'")
        if "{" in template or "}" in template:
            found = _VARIABLE_RE.fullmatch(template)
            if found is None:
                raise ValueError(
                    f"{name}: {template!r} is neither a user name nor a '{{variable}}'"
                )
            if found[1] not in known:
                raise ValueError(f"{name}: {template!r} is not a variable of {pattern!r}")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class ChannelRule:
    """Who may subscribe to, and publish on, the channels a pattern matches.

    Attributes:
        pattern: the channels (see the module docstring for the grammar).
        subscribe: ``"anyone"``, ``"authenticated"``, ``"token"``,
            ``"nobody"``, or user templates (``"ann"``, ``"{var}"``).
        publish: the same, plus ``"server"`` (the application only).
        error: the refusal clients see from this rule; None: the caller's
            default.
        sender: a key of the published data that the caller sets to the
            publisher's user, so that subscribers can trust who sent it;
            None: the data is left alone.

    A list of users is kept as a tuple. Bad values raise ValueError naming
    the field.
    """

    pattern: str
    subscribe: str | tuple[str, ...] = "anyone"
    publish: str | tuple[str, ...] = "anyone"
    error: str | None = None
    sender: str | None = None

    def __post_init__(self) -> None:
        shape = _parse_pattern(self.pattern)
        names = [name for name, _ in shape.variables]
        for name in ("subscribe", "publish"):
            value = _check_who(getattr(self, name), name, self.pattern, names)
            object.__setattr__(self, name, value)
        if self.error is not None and type(self.error) is not str:
            raise ValueError(f"error: want a string or None, not {self.error!r}")
        if self.sender is not None and (type(self.sender) is not str or not self.sender):
            raise ValueError(
                f"sender: want a key of the data (a string) or None, not {self.sender!r}"
            )


#: The refusal when no configured rule refused: the principal's grants do not
#: reach the channel, or a wildcard subscription was too wide to check.
GRANTS_RULE = ChannelRule("/**", "nobody", "nobody")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking.

    Attributes:
        user: the authenticated user; None: anonymous.
        grants: the channels a connection token allows, as Bayeux channels
            or patterns (``/chat/*``, ``/a/**``, ``/x/y``); None: no limit
            beyond the rules. A list is kept as a tuple.
        channel_token: the one channel a valid channel token opens, for the
            message being checked.
        server: the application itself (the server, or a backend that
            presented the backend secret): always allowed.
    """

    user: str | None = None
    grants: tuple[str, ...] | None = None
    channel_token: str | None = None
    server: bool = False

    def __post_init__(self) -> None:
        if self.user is not None and (type(self.user) is not str or not self.user):
            raise ValueError(f"user: want a non-empty string or None, not {self.user!r}")
        if self.grants is not None:
            if not isinstance(self.grants, list | tuple):
                raise ValueError(f"grants: want a list of channel patterns, not {self.grants!r}")
            for grant in self.grants:
                if not is_valid_pattern(grant):
                    raise ValueError(f"grants: {grant!r} is not a Bayeux channel or pattern")
            object.__setattr__(self, "grants", tuple(self.grants))
        if self.channel_token is not None and type(self.channel_token) is not str:
            raise ValueError(f"channel_token: want a channel or None, not {self.channel_token!r}")
        if type(self.server) is not bool:
            raise ValueError(f"server: want True or False, not {self.server!r}")


def _covers(grant: str, subscription: str) -> bool:
    """True if every channel ``subscription`` receives, ``grant`` matches."""
    if not is_pattern(subscription):
        return matches(grant, subscription)
    if grant.endswith("/**"):
        # Q/* and Q/** receive only channels under Q/, all of which P/**
        # matches when Q/ starts with P/.
        return subscription[: subscription.rfind("/") + 1].startswith(grant[:-2])
    # A concrete grant, or P/*, covers no pattern but itself.
    return grant == subscription


def _within_grants(who: Principal, subject: str, publish: bool) -> bool:
    if who.grants is None:
        return True
    if publish:
        return any(matches(grant, subject) for grant in who.grants)
    return any(_covers(grant, subject) for grant in who.grants)


def _admits(
    who_may: _Who, bindings: _Bindings, who: Principal, subject: str, publish: bool
) -> bool:
    """Does ``who_may`` admit ``who`` to ``subject`` (a channel, or a subscription)?"""
    if who_may == "anyone":
        return True
    if who_may == "authenticated":
        return who.user is not None
    if who_may == "token":
        if who.channel_token == subject and not is_pattern(subject):
            return True
        return who.grants is not None and _within_grants(who, subject, publish)
    if isinstance(who_may, str) or who.user is None:
        # "nobody", and "server" (a server principal never gets here)
        return False
    values = dict(bindings)
    for template in who_may:
        value = values[template[1:-1]] if template.startswith("{") else template
        if value == who.user:
            return True
    return False


@dataclass(frozen=True, slots=True, eq=False)
class _Entry:
    """A rule as the trie holds it."""

    rule: ChannelRule
    #: 1-based position in the rules, the order refusals are reported in
    number: int
    variables: tuple[tuple[str, int], ...]

    def bind(self, segments: Sequence[str | None], known: int) -> _Bindings:
        """The variables' values; positions from ``known`` on are wildcards."""
        return tuple(
            (name, segments[position] if position < known else None)
            for name, position in self.variables
        )


class _Node:
    """One position in the trie of rule patterns."""

    __slots__ = ("deep", "end", "literals", "one")

    def __init__(self) -> None:
        self.literals: dict[str, _Node] = {}
        #: ``*`` and ``{var}`` (one shape: duplicates are refused)
        self.one: _Node | None = None
        #: the rule whose pattern ends here
        self.end: _Entry | None = None
        #: the rule whose pattern continues with a final ``**``
        self.deep: _Entry | None = None


def _most_specific(node: _Node, segments: Sequence[str | None], position: int) -> _Entry | None:
    """The most specific rule matching ``segments`` from ``position``.

    None in ``segments`` is a value no literal equals. Trying literal, then
    one-segment, then ``**`` at each position, depth first, meets matches in
    specificity order, so the first one found wins.
    """
    if position == len(segments):
        return node.end
    segment = segments[position]
    child = node.literals.get(segment) if segment is not None else None
    for branch in (child, node.one):
        if branch is not None:
            found = _most_specific(branch, segments, position + 1)
            if found is not None:
                return found
    return node.deep


_K = TypeVar("_K")
_V = TypeVar("_V")


class _Lru(Generic[_K, _V]):
    """A bounded cache: the least recently used entry goes first."""

    __slots__ = ("_compute", "_entries", "_size")

    def __init__(self, compute: Callable[[_K], _V], size: int) -> None:
        self._compute = compute
        self._size = size
        self._entries: OrderedDict[_K, _V] = OrderedDict()

    def get(self, key: _K) -> _V:
        entries = self._entries
        if key in entries:
            entries.move_to_end(key)
            return entries[key]
        value = self._compute(key)
        entries[key] = value
        if len(entries) > self._size:
            entries.popitem(last=False)
        return value


class _TooWide(Exception):
    """The walk passed MAX_WALK_LEAVES."""


@dataclass(frozen=True, slots=True)
class _Walk:
    """What a subscription may receive: each distinct (rule, bindings)."""

    outcomes: tuple[tuple[_Entry, _Bindings], ...]
    #: the walk stopped at the bound: refuse
    too_wide: bool


class AccessRules:
    """Compiled :class:`ChannelRule` values, checked against principals.

    ``AccessRules(())`` allows everything (Faye's default). Two rules of the
    same shape raise ValueError. Subscriptions and channels must be valid
    (``is_valid_pattern`` / ``is_valid_name``): others raise ValueError.
    """

    __slots__ = ("_depth", "_publishes", "_root", "_subscriptions", "rules")

    def __init__(self, rules: Iterable[ChannelRule]) -> None:
        self.rules: tuple[ChannelRule, ...] = tuple(rules)
        self._root = _Node()
        #: the longest pattern, in segments
        self._depth = 0
        shapes: dict[tuple[tuple[str | None, ...], bool], int] = {}
        for number, rule in enumerate(self.rules, 1):
            if not isinstance(rule, ChannelRule):
                raise TypeError(f"rules: item {number} is {rule!r}, not a ChannelRule")
            shape = _parse_pattern(rule.pattern)
            key = (shape.segments, shape.deep)
            # Refusing equal shapes makes "most specific" a total order on the
            # rules that match one channel: two such rules that compare equal
            # have the same kind of segment at every position and the same
            # length, and where both have literals, both equal the channel's
            # segment there; so they have one shape.
            if key in shapes:
                first = shapes[key]
                raise ValueError(
                    f"pattern: {rule.pattern!r} repeats rule {first} "
                    f"({self.rules[first - 1].pattern!r})"
                )
            shapes[key] = number
            self._insert(shape, _Entry(rule, number, shape.variables))
            self._depth = max(self._depth, len(shape.segments) + shape.deep)
        self._publishes: _Lru[str, tuple[_Entry, _Bindings] | None] = _Lru(
            self._lookup, _CACHE_SIZE
        )
        self._subscriptions: _Lru[str, _Walk] = _Lru(self._walk, _CACHE_SIZE)

    def _insert(self, shape: _Shape, entry: _Entry) -> None:
        node = self._root
        for segment in shape.segments:
            if segment is None:
                if node.one is None:
                    node.one = _Node()
                node = node.one
            else:
                node = node.literals.setdefault(segment, _Node())
        if shape.deep:
            node.deep = entry
        else:
            node.end = entry

    def _lookup(self, channel: str) -> tuple[_Entry, _Bindings] | None:
        if not is_valid_name(channel):
            raise ValueError(f"channel: {channel!r} is not a concrete Bayeux channel")
        segments = channel[1:].split("/")
        entry = _most_specific(self._root, segments, 0)
        if entry is None:
            return None
        return entry, entry.bind(segments, len(segments))

    def rule_for(self, channel: str) -> tuple[ChannelRule, dict[str, str]] | None:
        """The most specific rule matching ``channel``, and its variables' values.

        None when no rule matches (then anyone may do anything there).
        """
        found = self._publishes.get(channel)
        if found is None:
            return None
        entry, bindings = found
        # A concrete channel binds every variable to a value.
        return entry.rule, {name: str(value) for name, value in bindings}

    def may_publish(self, channel: str, who: Principal) -> ChannelRule | None:
        """None if ``who`` may publish on ``channel``; else the rule that refuses.

        :data:`GRANTS_RULE` when the rules allow it but ``who.grants`` do not
        match the channel.
        """
        found = self._publishes.get(channel)
        if who.server:
            return None
        if found is not None:
            entry, bindings = found
            if not _admits(entry.rule.publish, bindings, who, channel, True):
                return entry.rule
        if not _within_grants(who, channel, True):
            return GRANTS_RULE
        return None

    def may_subscribe(self, subscription: str, who: Principal) -> ChannelRule | None:
        """None if ``who`` may subscribe to ``subscription``; else a refusing rule.

        ``subscription`` is a concrete channel or a Bayeux wildcard pattern;
        a pattern is allowed only if every channel it covers is (see the
        module docstring). The refusing rule is the first in the rules'
        order; :data:`GRANTS_RULE` when no rule refuses but ``who.grants`` do
        not cover the subscription, or the subscription was too wide to
        check (more than :data:`MAX_WALK_LEAVES` channel classes: refused,
        since it could not be proved safe).
        """
        walk = self._subscriptions.get(subscription)
        if who.server:
            return None
        for entry, bindings in walk.outcomes:
            if not _admits(entry.rule.subscribe, bindings, who, subscription, False):
                return entry.rule
        if walk.too_wide or not _within_grants(who, subscription, False):
            return GRANTS_RULE
        return None

    def _walk(self, subscription: str) -> _Walk:
        """Every (rule, bindings) a channel covered by ``subscription`` lands on.

        The walk chooses a segment at each free position of the
        subscription: each literal that a rule still in play uses there, or
        None, any other value (which lands where every other value does,
        since no rule in play tells them apart). A ``**`` subscription covers
        channels of every length from one past its prefix; once no rule is in
        play, longer channels land where this one did, and past the longest
        rule none is.
        """
        if not is_valid_pattern(subscription):
            raise ValueError(f"subscription: {subscription!r} is not a Bayeux channel or pattern")
        parts: list[str | None] = list(subscription[1:].split("/"))
        last = parts[-1]
        if last in ("*", "**"):
            parts.pop()
        known = len(parts)
        shortest = known + (last in ("*", "**"))
        longest = max(shortest, self._depth + 1) if last == "**" else shortest
        in_play = [self._root]
        for part in parts:
            in_play = _advance(in_play, part)
        found: dict[tuple[_Entry, _Bindings], None] = {}
        leaves = 0

        def visit(in_play: list[_Node]) -> None:
            nonlocal leaves
            if len(parts) >= shortest:
                leaves += 1
                if leaves > MAX_WALK_LEAVES:
                    raise _TooWide
                entry = _most_specific(self._root, parts, 0)
                if entry is not None:
                    found[entry, entry.bind(parts, known)] = None
                if not in_play or len(parts) == longest:
                    return
            literals = sorted({literal for node in in_play for literal in node.literals})
            for choice in (*literals, None):
                parts.append(choice)
                visit(_advance(in_play, choice))
                parts.pop()

        try:
            visit(in_play)
        except _TooWide:
            too_wide = True
        else:
            too_wide = False
        outcomes = sorted(found, key=lambda outcome: outcome[0].number)
        return _Walk(tuple(outcomes), too_wide)


def _advance(in_play: list[_Node], segment: str | None) -> list[_Node]:
    """The trie nodes reached from ``in_play`` by one more segment."""
    reached = []
    for node in in_play:
        if segment is not None and segment in node.literals:
            reached.append(node.literals[segment])
        if node.one is not None:
            reached.append(node.one)
    return reached
