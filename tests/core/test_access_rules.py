"""Channel access rules, table by table: who may subscribe and publish where.

Each table names a rule set, a principal, a subscription or channel, and the
expected answer: None (allowed), the pattern of the rule that refuses, or
GRANTS when the principal's grants (or the walk's bound) refuse. The model
test (test_access_model.py) checks the same against a naive oracle over
random rules; these tables pin the cases the issue names.
"""

from __future__ import annotations

import re

import pytest

from bayeux_core import GRANTS_RULE, AccessRules, ChannelRule, Principal, _access

GRANTS = "grants"

RULE_SETS: dict[str, tuple[ChannelRule, ...]] = {
    "none": (),
    "private": (ChannelRule("/private/{a}/{b}", ("{a}", "{b}"), ("{a}", "{b}")),),
    "chat": (
        ChannelRule("/chat/**", "nobody", "nobody"),
        ChannelRule("/chat/public/**"),
    ),
    "keywords": (
        ChannelRule("/open/*"),
        ChannelRule("/members/*", "authenticated", "authenticated"),
        ChannelRule("/tok/*", "token", "token"),
        ChannelRule("/news/*", "anyone", "server"),
        ChannelRule("/closed/*", "nobody", "nobody"),
        ChannelRule("/named/*", ("ann",), ("ann", "bob")),
    ),
    "specific": (
        ChannelRule("/a/**", "nobody", "nobody"),
        ChannelRule("/a/*", "anyone", "anyone"),
        ChannelRule("/*/b", "authenticated", "authenticated"),
        ChannelRule("/a/b/**", ("ann",), ("ann",)),
    ),
    "owner": (
        ChannelRule("/users/{u}/**", "nobody", "nobody"),
        ChannelRule("/users/{u}/inbox", ("{u}",), "anyone"),
        ChannelRule("/users/{u}/wall/*", "anyone", ("{u}", "admin")),
    ),
}

ANON = Principal()
ANN = Principal("ann")
BOB = Principal("bob")
CY = Principal("cy")
SERVER = Principal(server=True)

SUBSCRIBE_CASES: list[tuple[str, Principal, str, str | None]] = [
    # The default with no rules is Faye's: anyone may do anything.
    ("none", ANON, "/**", None),
    ("none", ANON, "/a/*", None),
    ("none", ANON, "/a/b", None),
    ("none", ANN, "/service/x", None),
    # ... but grants still apply.
    ("none", Principal(grants=("/a/*",)), "/b", GRANTS),
    ("none", Principal(grants=("/**",)), "/**", None),
    # User-named channels: /private/{a}/{b} admits a and b only.
    ("private", ANN, "/private/ann/bob", None),
    ("private", BOB, "/private/ann/bob", None),
    ("private", CY, "/private/ann/bob", "/private/{a}/{b}"),
    ("private", ANON, "/private/ann/bob", "/private/{a}/{b}"),
    ("private", BOB, "/private/bob/ann", None),
    # ann is `a` in every channel /private/ann/* covers; bob is `b` in one.
    ("private", ANN, "/private/ann/*", None),
    ("private", BOB, "/private/ann/*", "/private/{a}/{b}"),
    ("private", BOB, "/private/bob/*", None),
    # Deeper channels have no rule: allowed.
    ("private", ANN, "/private/ann/**", None),
    ("private", BOB, "/private/ann/**", "/private/{a}/{b}"),
    # One segment under /private matches no rule.
    ("private", ANON, "/private/*", None),
    ("private", ANN, "/private/**", "/private/{a}/{b}"),
    # A /** subscription must not receive a private channel's messages.
    ("private", ANN, "/**", "/private/{a}/{b}"),
    ("private", ANON, "/*", None),
    ("private", SERVER, "/**", None),
    ("private", SERVER, "/private/ann/bob", None),
    # Most specific wins: /chat/public/** anyone over /chat/** nobody.
    ("chat", ANON, "/chat/public/*", None),
    ("chat", ANON, "/chat/public/**", None),
    ("chat", ANON, "/chat/public/x", None),
    ("chat", ANON, "/chat/public/x/y", None),
    # /chat/* covers /chat/x, under /chat/** (nobody).
    ("chat", ANON, "/chat/*", "/chat/**"),
    # /chat/public is one segment short of /chat/public/**.
    ("chat", ANON, "/chat/public", "/chat/**"),
    ("chat", ANON, "/chat/**", "/chat/**"),
    ("chat", ANON, "/**", "/chat/**"),
    ("chat", ANON, "/*", None),
    ("chat", ANON, "/chatter/*", None),
    ("chat", SERVER, "/chat/**", None),
    # Keywords.
    ("keywords", ANON, "/open/x", None),
    ("keywords", ANON, "/members/x", "/members/*"),
    ("keywords", ANN, "/members/x", None),
    ("keywords", ANN, "/members/*", None),
    ("keywords", ANON, "/news/x", None),
    ("keywords", ANN, "/closed/x", "/closed/*"),
    ("keywords", SERVER, "/closed/x", None),
    ("keywords", SERVER, "/closed/*", None),
    ("keywords", ANN, "/named/x", None),
    ("keywords", ANN, "/named/*", None),
    ("keywords", BOB, "/named/x", "/named/*"),
    ("keywords", ANON, "/named/x", "/named/*"),
    # The first refusing rule in the rules' order: ann passes /members/*.
    ("keywords", ANN, "/**", "/tok/*"),
    ("keywords", ANON, "/**", "/members/*"),
    # token: a channel token opens exactly its channel, never a pattern.
    ("keywords", Principal(channel_token="/tok/x"), "/tok/x", None),
    ("keywords", Principal(channel_token="/tok/x"), "/tok/y", "/tok/*"),
    ("keywords", Principal(channel_token="/tok/x"), "/tok/*", "/tok/*"),
    ("keywords", Principal(channel_token="/tok/*"), "/tok/*", "/tok/*"),
    ("keywords", ANN, "/tok/x", "/tok/*"),
    ("keywords", SERVER, "/tok/*", None),
    # ... or grants covering the whole subscription.
    ("keywords", Principal(grants=("/tok/**",)), "/tok/*", None),
    ("keywords", Principal(grants=("/tok/**",)), "/tok/x", None),
    ("keywords", Principal(grants=("/tok/*",)), "/tok/*", None),
    ("keywords", Principal(grants=("/tok/a",)), "/tok/a", None),
    # a grant of one channel does not cover /tok/*: the rule refuses first
    ("keywords", Principal(grants=("/tok/a",)), "/tok/*", "/tok/*"),
    ("keywords", Principal(grants=("/tok/a",)), "/open/x", GRANTS),
    # Most specific wins, segment by segment.
    ("specific", ANON, "/a/x", None),  # /a/* over /a/**
    ("specific", ANON, "/a/b", None),  # /a/* over /*/b: the leftmost literal
    ("specific", ANON, "/c/b", "/*/b"),
    ("specific", ANN, "/c/b", None),
    ("specific", ANON, "/a/*", None),
    ("specific", ANON, "/a/x/y", "/a/**"),
    ("specific", ANN, "/a/b/c", None),  # /a/b/** over /a/**
    ("specific", BOB, "/a/b/c", "/a/b/**"),
    ("specific", ANN, "/a/b/*", None),
    ("specific", ANN, "/a/b/**", None),
    ("specific", ANN, "/a/**", "/a/**"),
    ("specific", ANN, "/*", None),
    ("specific", ANON, "/c/*", "/*/b"),
    ("specific", ANN, "/c/*", None),
    # Variables bind per channel.
    ("owner", ANN, "/users/ann/inbox", None),
    ("owner", BOB, "/users/ann/inbox", "/users/{u}/inbox"),
    ("owner", ANN, "/users/ann/*", "/users/{u}/**"),
    ("owner", ANON, "/users/ann/wall/*", None),
    ("owner", ANON, "/users/ann/wall/**", "/users/{u}/**"),
    ("owner", ANN, "/users/*", None),
    ("owner", ANN, "/users/ann", None),
]


def _expected(expected: str | None, rules: tuple[ChannelRule, ...]) -> ChannelRule | None:
    if expected is None:
        return None
    if expected == GRANTS:
        return GRANTS_RULE
    (rule,) = [rule for rule in rules if rule.pattern == expected]
    return rule


@pytest.mark.parametrize(("rules", "who", "subscription", "expected"), SUBSCRIBE_CASES)
def test_may_subscribe(rules: str, who: Principal, subscription: str, expected: str | None) -> None:
    access = AccessRules(RULE_SETS[rules])
    assert access.may_subscribe(subscription, who) == _expected(expected, RULE_SETS[rules])
    # The second time comes from the cache, with the same answer.
    assert access.may_subscribe(subscription, who) == _expected(expected, RULE_SETS[rules])


PUBLISH_CASES: list[tuple[str, Principal, str, str | None]] = [
    ("none", ANON, "/a", None),
    ("none", ANON, "/service/x", None),
    ("none", Principal(grants=("/a/*",)), "/a/b", None),
    ("none", Principal(grants=("/a/*",)), "/b", GRANTS),
    ("none", Principal(grants=("/a/*",), server=True), "/b", None),
    ("none", Principal(grants=()), "/a", GRANTS),
    ("private", BOB, "/private/ann/bob", None),
    ("private", ANN, "/private/ann/bob", None),
    ("private", CY, "/private/ann/bob", "/private/{a}/{b}"),
    ("private", ANON, "/private/ann/bob", "/private/{a}/{b}"),
    ("private", ANON, "/private/ann", None),
    ("private", SERVER, "/private/ann/bob", None),
    ("chat", ANON, "/chat/x", "/chat/**"),
    ("chat", ANON, "/chat/public/x", None),
    ("keywords", ANON, "/open/x", None),
    ("keywords", ANON, "/members/x", "/members/*"),
    ("keywords", ANN, "/members/x", None),
    ("keywords", ANN, "/news/x", "/news/*"),
    ("keywords", SERVER, "/news/x", None),
    ("keywords", ANN, "/closed/x", "/closed/*"),
    ("keywords", BOB, "/named/x", None),
    ("keywords", CY, "/named/x", "/named/*"),
    ("keywords", Principal(channel_token="/tok/x"), "/tok/x", None),
    ("keywords", Principal(channel_token="/tok/x"), "/tok/y", "/tok/*"),
    ("keywords", Principal(grants=("/tok/*",)), "/tok/y", None),
    ("keywords", Principal(grants=("/x",)), "/tok/y", "/tok/*"),
    ("keywords", ANN, "/tok/y", "/tok/*"),
    # Rules first: the rule's refusal is reported even if grants refuse too.
    ("keywords", Principal("ann", grants=("/x",)), "/closed/x", "/closed/*"),
    ("keywords", Principal("ann", grants=("/x",)), "/open/x", GRANTS),
    ("specific", ANON, "/a/b", None),
    ("specific", ANON, "/c/b", "/*/b"),
    ("specific", ANON, "/a/b/c", "/a/b/**"),
    ("specific", ANN, "/a/b/c", None),
    ("specific", ANN, "/a/c/d", "/a/**"),
    ("owner", ANN, "/users/ann/wall/x", None),
    ("owner", Principal("admin"), "/users/ann/wall/x", None),
    ("owner", BOB, "/users/ann/wall/x", "/users/{u}/wall/*"),
    ("owner", BOB, "/users/ann/inbox", None),
    ("owner", BOB, "/users/ann/other", "/users/{u}/**"),
]


@pytest.mark.parametrize(("rules", "who", "channel", "expected"), PUBLISH_CASES)
def test_may_publish(rules: str, who: Principal, channel: str, expected: str | None) -> None:
    access = AccessRules(RULE_SETS[rules])
    assert access.may_publish(channel, who) == _expected(expected, RULE_SETS[rules])
    assert access.may_publish(channel, who) == _expected(expected, RULE_SETS[rules])


RULE_FOR_CASES: list[tuple[tuple[str, ...], str, str | None, dict[str, str]]] = [
    ((), "/a", None, {}),
    (("/a/**", "/a/*"), "/a/b", "/a/*", {}),
    (("/a/**", "/a/b/**"), "/a/b/c", "/a/b/**", {}),
    (("/a/**", "/a/b/**"), "/a/c/d", "/a/**", {}),
    (("/*/b", "/a/*"), "/a/b", "/a/*", {}),
    (("/*/b", "/a/*"), "/c/b", "/*/b", {}),
    (("/a/{x}/c", "/a/b/*"), "/a/b/c", "/a/b/*", {}),
    (("/a/{x}/c", "/a/b/*"), "/a/d/c", "/a/{x}/c", {"x": "d"}),
    (("/a/**", "/a/*/*"), "/a/b/c", "/a/*/*", {}),
    (("/a/**", "/a/*/*"), "/a/b/c/d", "/a/**", {}),
    (("/**", "/*"), "/x", "/*", {}),
    (("/**", "/*"), "/x/y", "/**", {}),
    (("/**", "/x/**"), "/x/y", "/x/**", {}),
    (("/{x}/b/{y}", "/a/*/*"), "/a/b/c", "/a/*/*", {}),
    (("/{x}/b/{y}", "/a/*/*"), "/q/b/c", "/{x}/b/{y}", {"x": "q", "y": "c"}),
    (("/private/{a}/{b}",), "/private/ann/bob", "/private/{a}/{b}", {"a": "ann", "b": "bob"}),
    (("/private/{a}/{b}",), "/private/ann", None, {}),
    (("/private/{a}/{b}",), "/private/ann/bob/x", None, {}),
    (("/u/{who}/**",), "/u/ann/x/y", "/u/{who}/**", {"who": "ann"}),
    (("/u/{who}/**",), "/u/ann", None, {}),
    (("/a", "/a/b"), "/a", "/a", {}),
    (("/a", "/a/b"), "/a/b", "/a/b", {}),
    (("/a", "/a/b"), "/a/c", None, {}),
    (("/service/**",), "/service/x", "/service/**", {}),
]


@pytest.mark.parametrize(("patterns", "channel", "expected", "bindings"), RULE_FOR_CASES)
def test_rule_for_picks_the_most_specific(
    patterns: tuple[str, ...], channel: str, expected: str | None, bindings: dict[str, str]
) -> None:
    # The order of the rules never matters.
    for order in (patterns, patterns[::-1]):
        access = AccessRules(ChannelRule(pattern) for pattern in order)
        found = access.rule_for(channel)
        if expected is None:
            assert found is None
        else:
            assert found is not None
            assert found[0].pattern == expected
            assert found[1] == bindings


# ------------------------------------------------------------------ values


def test_defaults_and_normalisation() -> None:
    rule = ChannelRule("/a/{x}", ["{x}", "ann"], ["ann"])  # type: ignore[arg-type]
    assert rule.subscribe == ("{x}", "ann")
    assert rule.publish == ("ann",)
    assert hash(rule) == hash(ChannelRule("/a/{x}", ("{x}", "ann"), ("ann",)))
    plain = ChannelRule("/a")
    assert (plain.subscribe, plain.publish, plain.error, plain.sender) == (
        "anyone",
        "anyone",
        None,
        None,
    )
    sender = ChannelRule("/a", error="403:/a:no", sender="from")
    assert (sender.error, sender.sender) == ("403:/a:no", "from")
    who = Principal(grants=["/a/*"])  # type: ignore[arg-type]
    assert who.grants == ("/a/*",)
    assert Principal() == Principal(None, None, None, False)
    assert ChannelRule("/**", "nobody", "nobody") == GRANTS_RULE
    access = AccessRules([rule, plain])
    assert access.rules == (rule, plain)


RULE_ERRORS: list[tuple[dict[str, object], str]] = [
    ({"pattern": 3}, "pattern: want a string such as '/chat/*', not 3"),
    ({"pattern": "a/b"}, "pattern: 'a/b' must start with '/'"),
    ({"pattern": "/"}, "pattern: '/' has an empty segment"),
    ({"pattern": "/a//b"}, "pattern: '/a//b' has an empty segment"),
    ({"pattern": "/a/"}, "pattern: '/a/' has an empty segment"),
    ({"pattern": "/a/b c"}, "pattern: '/a/b c' has 'b c', not a channel segment"),
    ({"pattern": "/a/**/b"}, "pattern: '/a/**/b': '**' must be the last segment"),
    ({"pattern": "/**/**"}, "pattern: '/**/**': '**' must be the last segment"),
    ({"pattern": "/a/b*"}, "pattern: '/a/b*' has 'b*', not a channel segment"),
    ({"pattern": "/a/{1x}"}, "pattern: '/a/{1x}': '{1x}' is not a variable"),
    ({"pattern": "/a/x{y}"}, "pattern: '/a/x{y}': 'x{y}' is not a variable"),
    ({"pattern": "/a/{y"}, "pattern: '/a/{y': '{y' is not a variable"),
    ({"pattern": "/a/{}"}, "pattern: '/a/{}': '{}' is not a variable"),
    ({"pattern": "/{a}/{a}"}, "pattern: '/{a}/{a}': variable 'a' appears twice"),
    ({"pattern": "/meta"}, "pattern: '/meta': /meta channels are the protocol's own"),
    ({"pattern": "/meta/subscribe"}, "pattern: '/meta/subscribe': /meta channels"),
    ({"pattern": "/meta/**"}, "pattern: '/meta/**': /meta channels"),
    ({"pattern": "/a" * 17}, "pattern: '" + "/a" * 17 + "' has 17 segments, at most 16"),
    ({"subscribe": "server"}, "subscribe: 'server' is for publish only"),
    ({"subscribe": "everyone"}, "subscribe: want one of 'anyone', 'authenticated', 'token', "),
    ({"publish": "everyone"}, "publish: want one of 'anyone', 'authenticated', 'token', 'server'"),
    ({"subscribe": 3}, "subscribe: want a keyword or a list of users, not 3"),
    ({"publish": {"ann"}}, "publish: want a keyword or a list of users"),
    ({"subscribe": ()}, "subscribe: an empty list of users admits nobody; say 'nobody'"),
    ({"publish": []}, "publish: an empty list of users admits nobody"),
    ({"subscribe": ("",)}, "subscribe: '' is not a user name or a '{variable}'"),
    ({"publish": (3,)}, "publish: 3 is not a user name or a '{variable}'"),
    ({"subscribe": ("{c}",)}, "subscribe: '{c}' is not a variable of '/private/{a}/{b}'"),
    ({"publish": ("{a",)}, "publish: '{a' is neither a user name nor a '{variable}'"),
    ({"publish": ("a}",)}, "publish: 'a}' is neither a user name nor a '{variable}'"),
    ({"error": 3}, "error: want a string or None, not 3"),
    ({"sender": ""}, "sender: want a key of the data (a string) or None, not ''"),
    ({"sender": 3}, "sender: want a key of the data (a string) or None, not 3"),
]


@pytest.mark.parametrize(("fields", "message"), RULE_ERRORS)
def test_rule_errors_name_the_field(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"pattern": "/private/{a}/{b}"} | fields
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        ChannelRule(**values)  # type: ignore[arg-type]


def test_sixteen_segments_are_enough() -> None:
    assert ChannelRule("/a" * 15 + "/**").pattern.count("/") == 16


PRINCIPAL_ERRORS: list[tuple[dict[str, object], str]] = [
    ({"user": ""}, "user: want a non-empty string or None, not ''"),
    ({"user": 3}, "user: want a non-empty string or None, not 3"),
    ({"grants": "/a"}, "grants: want a list of channel patterns, not '/a'"),
    ({"grants": ("/a/**/b",)}, "grants: '/a/**/b' is not a Bayeux channel or pattern"),
    ({"grants": (3,)}, "grants: 3 is not a Bayeux channel or pattern"),
    ({"channel_token": 3}, "channel_token: want a channel or None, not 3"),
    ({"server": 1}, "server: want True or False, not 1"),
]


@pytest.mark.parametrize(("fields", "message"), PRINCIPAL_ERRORS)
def test_principal_errors_name_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Principal(**fields)  # type: ignore[arg-type]


def test_two_rules_of_one_shape_are_refused() -> None:
    rules = [ChannelRule("/b"), ChannelRule("/a/*"), ChannelRule("/a/{x}")]
    with pytest.raises(ValueError, match=re.escape("pattern: '/a/{x}' repeats rule 2 ('/a/*')")):
        AccessRules(rules)
    with pytest.raises(ValueError, match=re.escape("pattern: '/{y}/**' repeats rule 1")):
        AccessRules([ChannelRule("/{x}/**"), ChannelRule("/{y}/**")])
    # Different shapes are fine, however close.
    AccessRules([ChannelRule("/a/*"), ChannelRule("/a/**"), ChannelRule("/a"), ChannelRule("/*")])


def test_rules_must_be_channel_rules() -> None:
    with pytest.raises(TypeError, match=re.escape("rules: item 2 is '/a', not a ChannelRule")):
        AccessRules([ChannelRule("/b"), "/a"])  # type: ignore[list-item]


@pytest.mark.parametrize("subscription", ["", "a", "/a/**/b", "/a/*/b", "/a b", "/*/*/**/*"])
def test_bad_subscriptions_raise(subscription: str) -> None:
    access = AccessRules(RULE_SETS["private"])
    message = f"subscription: {subscription!r} is not a Bayeux channel or pattern"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        access.may_subscribe(subscription, ANN)
    with pytest.raises(ValueError, match=r"^subscription: "):
        access.may_subscribe(subscription, SERVER)


@pytest.mark.parametrize("channel", ["", "/a/*", "/a/**", "/a//b", "a"])
def test_bad_channels_raise(channel: str) -> None:
    access = AccessRules(RULE_SETS["private"])
    message = f"channel: {channel!r} is not a concrete Bayeux channel"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        access.may_publish(channel, ANN)
    with pytest.raises(ValueError, match=r"^channel: "):
        access.may_publish(channel, SERVER)
    with pytest.raises(ValueError, match=r"^channel: "):
        access.rule_for(channel)


# ------------------------------------------------------- walk and caches


def _wide_rules(first: str = "anyone") -> list[ChannelRule]:
    # /** meets 151 x 151 channel classes at depth 2: more than the bound.
    rules = [ChannelRule(f"/a{i}/*", first if i == 0 else "anyone") for i in range(150)]
    return rules + [ChannelRule(f"/*/b{i}") for i in range(150)]


def test_a_walk_past_the_bound_is_refused() -> None:
    access = AccessRules(_wide_rules())
    assert access.may_subscribe("/**", ANON) is GRANTS_RULE
    assert access.may_subscribe("/**", SERVER) is None
    # Narrower subscriptions over the same rules are checked in full.
    assert access.may_subscribe("/x/*", ANON) is None
    assert access.may_subscribe("/a7/**", ANON) is None
    assert access.may_subscribe("/*", ANON) is None


def test_a_walk_past_the_bound_reports_a_refusal_it_saw() -> None:
    access = AccessRules(_wide_rules(first="nobody"))
    assert access.may_subscribe("/**", ANON) == ChannelRule("/a0/*", "nobody")


def test_the_bound_is_the_documented_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _access.MAX_WALK_LEAVES == 20_000
    # Three literals and "other" at one position: four classes.
    rules = [ChannelRule("/a"), ChannelRule("/b"), ChannelRule("/c", "nobody")]
    monkeypatch.setattr(_access, "MAX_WALK_LEAVES", 4)
    assert AccessRules(rules).may_subscribe("/*", ANON) == rules[2]
    monkeypatch.setattr(_access, "MAX_WALK_LEAVES", 2)
    assert AccessRules(rules[:2]).may_subscribe("/*", ANON) is GRANTS_RULE


def test_caches_are_bounded_and_stay_right() -> None:
    access = AccessRules(RULE_SETS["private"])
    channels = [f"/private/u{i}/ann" for i in range(_access._CACHE_SIZE + 10)]
    for channel in channels:
        assert access.may_publish(channel, ANN) is None
        assert access.may_subscribe(channel, ANN) is None
    # The first ones were evicted, and come back with the same answers.
    assert access.may_publish(channels[0], BOB) == RULE_SETS["private"][0]
    assert access.may_subscribe(channels[0], BOB) == RULE_SETS["private"][0]
    assert access.rule_for(channels[1]) == (RULE_SETS["private"][0], {"a": "u1", "b": "ann"})
    assert len(access._publishes._entries) == _access._CACHE_SIZE
    assert len(access._subscriptions._entries) == _access._CACHE_SIZE


def test_one_walk_serves_every_principal() -> None:
    access = AccessRules(RULE_SETS["private"])
    assert access.may_subscribe("/private/ann/*", ANN) is None
    assert access.may_subscribe("/private/ann/*", BOB) is not None
    assert access.may_subscribe("/private/ann/*", CY) is not None
    assert access.may_subscribe("/private/ann/*", ANN) is None


def test_a_deep_subscription_past_every_rule() -> None:
    access = AccessRules([ChannelRule("/a/**", "nobody"), ChannelRule("/a/b/c", "nobody")])
    deep = "/a" + "/x" * 30 + "/**"
    assert access.may_subscribe(deep, ANON) == access.rules[0]
    assert access.may_subscribe("/b" + "/x" * 30 + "/**", ANON) is None
    assert access.may_subscribe("/a/b/*", ANON) == access.rules[0]
