"""Access rules against a naive oracle: random rules, principals and channels.

The oracle knows nothing of the trie, the walk or the caches. It scans every
rule for each concrete channel, picks the most specific with its own
comparison, binds variables to the channel's own segments, and decides a
wildcard subscription by listing every channel it covers in a finite
universe: the alphabet the rules use (``a``, ``b``, ``c``, small so that
patterns collide) plus ``z``, a value no rule or user names (it stands for
"any other value"), at every depth up to one past the deepest pattern.

Properties:

1. a subscription (concrete or wildcard) is allowed exactly when the oracle
   allows the principal every channel it covers, with ``"token"`` and grants
   judged against the subscription itself. Soundness (never allow what a
   covered channel's rule refuses) is the half the issue requires; the walk
   is exact for the rules, so the other half holds too;
2. for concrete subscriptions that is exactness against the channel's own
   rule (checked on its own, with channels drawn directly);
3. publishing is allowed exactly when the oracle allows it, and ``rule_for``
   names the oracle's rule and bindings;
4. the issue's wording: no message published on a channel reaches a session
   that the channel's rules would refuse. Sessions subscribe through
   ``may_subscribe`` (only accepted subscriptions are kept), messages go to
   every subscription that ``matches`` the channel, and each recipient must
   be one the oracle lets subscribe to that very channel.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from bayeux_core import AccessRules, ChannelRule, Principal, matches

LITERALS = ("a", "b", "c")
#: a segment no rule, grant or user names
FRESH = "z"
ALPHABET = (*LITERALS, FRESH)
USERS = LITERALS
MAX_RULE_DEPTH = 3
MAX_SUBSCRIPTION_DEPTH = 3

# ------------------------------------------------------------------ strategies


@st.composite
def patterns(draw: st.DrawFn) -> str:
    """A rule pattern: literals, ``*``, ``{vN}``, maybe a final ``**``."""
    depth = draw(st.integers(1, MAX_RULE_DEPTH))
    deep = draw(st.booleans())
    segments = []
    for position in range(depth - deep):
        kind = draw(st.sampled_from(["literal", "literal", "star", "var"]))
        if kind == "literal":
            segments.append(draw(st.sampled_from(LITERALS)))
        elif kind == "star":
            segments.append("*")
        else:
            segments.append(f"{{v{position}}}")
    if deep:
        segments.append("**")
    return "/" + "/".join(segments)


def _variables(pattern: str) -> list[str]:
    return [part for part in pattern.split("/") if part.startswith("{")]


@st.composite
def who_may(draw: st.DrawFn, pattern: str, publish: bool) -> str | tuple[str, ...]:
    keywords = ["anyone", "authenticated", "token", "nobody"] + (["server"] if publish else [])
    if draw(st.booleans()):
        return draw(st.sampled_from(keywords))
    templates = draw(
        st.lists(st.sampled_from([*USERS, *_variables(pattern)]), min_size=1, max_size=3)
    )
    return tuple(templates)


@st.composite
def rules(draw: st.DrawFn) -> tuple[ChannelRule, ...]:
    found: dict[str, ChannelRule] = {}
    for pattern in draw(st.lists(patterns(), max_size=6)):
        shape = "/".join("*" if part.startswith("{") else part for part in pattern.split("/"))
        if shape in found:
            continue
        subscribe = draw(who_may(pattern, publish=False))
        publish = draw(who_may(pattern, publish=True))
        found[shape] = ChannelRule(pattern, subscribe, publish)
    return tuple(found.values())


def channels(
    alphabet: Sequence[str] = ALPHABET, depth: int = MAX_RULE_DEPTH + 1
) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(alphabet), min_size=1, max_size=depth).map(
        lambda parts: "/" + "/".join(parts)
    )


def subscriptions(alphabet: Sequence[str] = ALPHABET) -> st.SearchStrategy[str]:
    """A Bayeux subscription: a channel, or a prefix and ``*`` or ``**``."""
    globs = st.tuples(
        st.lists(st.sampled_from(alphabet), max_size=MAX_SUBSCRIPTION_DEPTH - 1),
        st.sampled_from(["*", "**"]),
    ).map(lambda glob: "/" + "/".join([*glob[0], glob[1]]))
    return st.one_of(channels(alphabet, MAX_SUBSCRIPTION_DEPTH), globs)


principals = st.builds(
    Principal,
    user=st.sampled_from([*USERS, None]),
    grants=st.one_of(st.none(), st.lists(subscriptions(LITERALS), max_size=2).map(tuple)),
    channel_token=st.one_of(st.none(), channels(LITERALS, 2), subscriptions(LITERALS)),
    server=st.sampled_from([False, False, False, False, True]),
)

# ---------------------------------------------------------------- the oracle


def _depth(name: str) -> int:
    return name.count("/")


def universe(*names: str) -> list[str]:
    """Every channel over ALPHABET, one segment deeper than any of ``names``."""
    deepest = max((_depth(name) for name in names), default=0)
    depth = max(deepest, MAX_RULE_DEPTH) + 1
    return [
        "/" + "/".join(parts)
        for length in range(1, depth + 1)
        for parts in itertools.product(ALPHABET, repeat=length)
    ]


def covered(subscription: str, world: list[str]) -> Iterator[str]:
    return (channel for channel in world if matches(subscription, channel))


def match(pattern: str, channel: str) -> dict[str, str] | None:
    """The pattern's bindings if it matches the channel, else None."""
    want = pattern.split("/")[1:]
    have = channel.split("/")[1:]
    if want[-1] == "**":
        want = want[:-1]
        if len(have) <= len(want):
            return None
    elif len(have) != len(want):
        return None
    bindings = {}
    for part, value in zip(want, have, strict=False):
        if part.startswith("{"):
            bindings[part[1:-1]] = value
        elif part not in ("*", value):
            return None
    return bindings


def _kind(part: str) -> int:
    if part == "**":
        return 2
    return 1 if part == "*" or part.startswith("{") else 0


def beats(one: str, other: str) -> bool:
    """True if pattern ``one`` is more specific than ``other``."""
    left, right = one.split("/")[1:], other.split("/")[1:]
    for x, y in zip(left, right, strict=False):
        if _kind(x) != _kind(y):
            return _kind(x) < _kind(y)
    return len(left) > len(right)


def oracle_rule(
    all_rules: Sequence[ChannelRule], channel: str
) -> tuple[ChannelRule, dict[str, str]] | None:
    best: tuple[ChannelRule, dict[str, str]] | None = None
    for rule in all_rules:
        bindings = match(rule.pattern, channel)
        if bindings is not None and (best is None or beats(rule.pattern, best[0].pattern)):
            best = (rule, bindings)
    return best


def grants_cover(who: Principal, subject: str, world: list[str]) -> bool:
    """Some grant matches every channel in the world that ``subject`` covers."""
    assert who.grants is not None
    inside = list(covered(subject, world))
    return any(all(matches(grant, channel) for channel in inside) for grant in who.grants)


def admits(
    allowed: str | tuple[str, ...],
    bindings: dict[str, str],
    who: Principal,
    subject: str,
    world: list[str],
) -> bool:
    if allowed == "anyone":
        return True
    if allowed == "authenticated":
        return who.user is not None
    if allowed == "token":
        if who.channel_token == subject and "*" not in subject:
            return True
        return who.grants is not None and grants_cover(who, subject, world)
    if allowed in ("nobody", "server"):
        return False
    users = {bindings[t[1:-1]] if t.startswith("{") else t for t in allowed}
    return who.user in users


def oracle_subscribe(
    all_rules: Sequence[ChannelRule], subscription: str, who: Principal, world: list[str]
) -> bool:
    if who.server:
        return True
    for channel in covered(subscription, world):
        found = oracle_rule(all_rules, channel)
        if found is not None and not admits(found[0].subscribe, found[1], who, subscription, world):
            return False
    return who.grants is None or grants_cover(who, subscription, world)


def oracle_publish(
    all_rules: Sequence[ChannelRule], channel: str, who: Principal, world: list[str]
) -> bool:
    if who.server:
        return True
    found = oracle_rule(all_rules, channel)
    if found is not None and not admits(found[0].publish, found[1], who, channel, world):
        return False
    return who.grants is None or grants_cover(who, channel, world)


def _world_for(who: Principal, *names: str) -> list[str]:
    return universe(*names, *(who.grants or ()))


# ---------------------------------------------------------------- properties

SETTINGS = settings(max_examples=300, deadline=None)


@SETTINGS
@given(rules(), principals, subscriptions())
def test_subscriptions_agree_with_the_oracle(
    all_rules: tuple[ChannelRule, ...], who: Principal, subscription: str
) -> None:
    access = AccessRules(all_rules)
    world = _world_for(who, subscription)
    allowed = access.may_subscribe(subscription, who) is None
    assert allowed == oracle_subscribe(all_rules, subscription, who, world)


@SETTINGS
@given(rules(), principals, channels())
def test_concrete_subscriptions_are_exact(
    all_rules: tuple[ChannelRule, ...], who: Principal, channel: str
) -> None:
    access = AccessRules(all_rules)
    world = _world_for(who, channel)
    refusal = access.may_subscribe(channel, who)
    assert (refusal is None) == oracle_subscribe(all_rules, channel, who, world)
    found = oracle_rule(all_rules, channel)
    if refusal is not None and any(refusal is rule for rule in all_rules):
        # A concrete channel has one rule: it is the one that refuses.
        assert found is not None
        assert refusal is found[0]


@SETTINGS
@given(rules(), principals, channels())
def test_publishes_agree_with_the_oracle(
    all_rules: tuple[ChannelRule, ...], who: Principal, channel: str
) -> None:
    access = AccessRules(all_rules)
    world = _world_for(who, channel)
    assert (access.may_publish(channel, who) is None) == oracle_publish(
        all_rules, channel, who, world
    )
    assert access.rule_for(channel) == oracle_rule(all_rules, channel)


@dataclass
class Session:
    who: Principal
    accepted: list[str]


@SETTINGS
@given(
    rules(),
    st.lists(st.tuples(principals, st.lists(subscriptions(), max_size=4)), max_size=5),
    st.lists(channels(), min_size=1, max_size=8),
)
def test_no_delivery_reaches_a_session_its_rules_refuse(
    all_rules: tuple[ChannelRule, ...],
    clients: list[tuple[Principal, list[str]]],
    publishes: list[str],
) -> None:
    access = AccessRules(all_rules)
    sessions = [
        Session(who, [s for s in wanted if access.may_subscribe(s, who) is None])
        for who, wanted in clients
    ]
    for channel in publishes:
        for session in sessions:
            if not any(matches(subscription, channel) for subscription in session.accepted):
                continue
            # Delivered: the channel's own subscribe rule must admit them.
            world = _world_for(session.who, channel)
            assert oracle_subscribe(all_rules, channel, session.who, world), (
                channel,
                session,
            )
