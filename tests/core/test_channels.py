"""Channel grammar, classification, expand() and matches().

The grammar follows Faye (``faye/faye:src/protocol/grammar.js``, see
``/work/shared/research/faye.md`` section 3.8): a name is ``/`` then segments of
``[A-Za-z0-9-_!~()$@]+`` joined by ``/``; a pattern is a name whose last
segment is exactly ``*`` or ``**``, or ``/*`` / ``/**`` alone.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bayeux_core import (
    expand,
    is_meta,
    is_pattern,
    is_service,
    is_valid_name,
    is_valid_pattern,
    matches,
)
from bayeux_core._channels import MAX_CHANNEL_LENGTH, MAX_CHANNEL_SEGMENTS

SEGMENT_CHARS = "ABCXYZabcxyz0189-_!~()$@"
ALL_SEGMENT_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_!~()$@"
)

# --------------------------------------------------------------- the grammar

VALID_NAMES = [
    "/a",
    "/foo",
    "/foo/bar",
    "/foo/bar/baz/qux",
    "/meta",
    "/meta/handshake",
    "/meta/subscribe",
    "/service",
    "/service/chat",
    "/ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "/abcdefghijklmnopqrstuvwxyz",
    "/0123456789",
    "/-_!~()$@",
    "/-",
    "/_",
    "/!",
    "/~",
    "/(",
    "/)",
    "/$",
    "/@",
    "/chat/room-1/user_2",
    "/a/b/c/d/e/f/g/h",
    "/" + "a" * (MAX_CHANNEL_LENGTH - 1),
    "/a" * MAX_CHANNEL_SEGMENTS,
]

WILDCARD_PATTERNS = [
    "/*",
    "/**",
    "/foo/*",
    "/foo/**",
    "/foo/bar/*",
    "/foo/bar/**",
    "/meta/*",
    "/meta/**",
    "/service/**",
    "/-_!~()$@/*",
    "/" + "a" * (MAX_CHANNEL_LENGTH - 4) + "/**",
    "/a" * (MAX_CHANNEL_SEGMENTS - 1) + "/*",
    "/a" * (MAX_CHANNEL_SEGMENTS - 1) + "/**",
]

INVALID_EVERYWHERE = [
    "",
    "/",
    "//",
    "a",
    "foo",
    "foo/bar",
    "meta/handshake",
    " /foo",
    "/foo/",
    "/foo//bar",
    "//foo",
    "/foo/bar/",
    "/foo.bar",
    "/.",
    "/..",
    "/foo/../bar",
    "/foo bar",
    "/ ",
    "/foo%20bar",
    "/%2F",
    "/foo:bar",
    "/foo+bar",
    "/foo,bar",
    "/foo?bar",
    "/foo#bar",
    "/foo&bar",
    "/foo=bar",
    "/foo'",
    '/foo"',
    "/foo\\bar",
    "/foo[0]",
    "/foo{x}",
    "/foo^",
    "/foo|bar",
    "/foo\tbar",
    "/foo\n",
    "\n/foo",
    "/foo\x00",
    "/caf\u00e9",
    "/\u0444\u043e\u043e",  # Cyrillic
    "/\uff11",  # FULLWIDTH DIGIT ONE
    "/\u0663",  # ARABIC-INDIC DIGIT THREE: a \d in Unicode regexes
    "/\u212a",  # KELVIN SIGN: matches [a-z] under re.IGNORECASE
    # Wildcards that are not the whole last segment.
    "*",
    "**",
    "/foo*",
    "/foo**",
    "/*foo",
    "/foo/*bar",
    "/foo/bar*",
    "/foo/b*r",
    "/***",
    "/foo/***",
    "/foo/*/bar",
    "/foo/**/bar",
    "/**/foo",
    "/*/foo",
    "/*/*",
    "/**/**",
    "/*/**",
    "//*",
    "//**",
    "/foo//*",
    "/foo/*/",
    "/foo/**/",
    "/*/",
    "/foo.*",
    "/foo/*.*",
    "/foo/ *",
    "/foo/* ",
    # Over the limits.
    "/" + "a" * MAX_CHANNEL_LENGTH,
    "/a" * (MAX_CHANNEL_SEGMENTS + 1),
    "/" + "a" * (MAX_CHANNEL_LENGTH - 3) + "/**",
    "/a" * MAX_CHANNEL_SEGMENTS + "/*",
    "/a" * MAX_CHANNEL_SEGMENTS + "/**",
]


class StrSubclass(str):
    pass


NOT_STRINGS: list[object] = [
    None,
    0,
    1.5,
    True,
    b"/foo",
    bytearray(b"/foo"),
    memoryview(b"/foo"),
    ["/foo"],
    ("/foo",),
    {"/foo"},
    {"channel": "/foo"},
    StrSubclass("/foo"),
    StrSubclass("/foo/*"),
    object(),
]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names(name: str) -> None:
    assert is_valid_name(name)
    assert is_valid_pattern(name)
    assert not is_pattern(name)


@pytest.mark.parametrize("pattern", WILDCARD_PATTERNS)
def test_wildcard_patterns_are_patterns_not_names(pattern: str) -> None:
    assert is_valid_pattern(pattern)
    assert not is_valid_name(pattern)
    assert is_pattern(pattern)


@pytest.mark.parametrize("channel", INVALID_EVERYWHERE)
def test_invalid_channels(channel: str) -> None:
    assert not is_valid_name(channel)
    assert not is_valid_pattern(channel)


@pytest.mark.parametrize("value", NOT_STRINGS, ids=repr)
def test_non_strings_are_neither_names_nor_patterns(value: object) -> None:
    assert not is_valid_name(value)
    assert not is_valid_pattern(value)


def test_length_limit_is_exact() -> None:
    at_limit = "/" + "a" * (MAX_CHANNEL_LENGTH - 1)
    assert len(at_limit) == MAX_CHANNEL_LENGTH
    assert is_valid_name(at_limit)
    assert not is_valid_name(at_limit + "a")
    assert not is_valid_pattern(at_limit + "a")
    pattern_at_limit = at_limit[:-3] + "/**"
    assert len(pattern_at_limit) == MAX_CHANNEL_LENGTH
    assert is_valid_pattern(pattern_at_limit)
    assert not is_valid_pattern(at_limit[:-2] + "/**")


def test_depth_limit_is_exact() -> None:
    deepest = "/a" * MAX_CHANNEL_SEGMENTS
    assert is_valid_name(deepest)
    assert not is_valid_name(deepest + "/a")
    assert not is_valid_pattern(deepest + "/a")
    # A wildcard is a segment too.
    assert is_valid_pattern(deepest[:-2] + "/*")
    assert is_valid_pattern(deepest[:-2] + "/**")
    assert not is_valid_pattern(deepest + "/*")
    assert not is_valid_pattern(deepest + "/**")


def test_huge_inputs_are_refused_by_the_limits() -> None:
    # Each of these is grammatical: only the limits refuse it.
    assert not is_valid_name("/a" * 100_000)
    assert not is_valid_pattern("/a" * 100_000 + "/**")
    assert not is_valid_name("/" + "a" * 1_000_000)


# ---------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("channel", "meta", "service"),
    [
        ("/meta", True, False),
        ("/meta/handshake", True, False),
        ("/meta/connect", True, False),
        ("/meta/foo/bar", True, False),
        ("/meta/*", True, False),
        ("/meta/**", True, False),
        ("/service", False, True),
        ("/service/chat", False, True),
        ("/service/*", False, True),
        ("/service/**", False, True),
        ("/metadata", False, False),
        ("/met", False, False),
        ("/Meta", False, False),
        ("/META/handshake", False, False),
        ("/meta-x/handshake", False, False),
        ("/foo/meta", False, False),
        ("/foo/meta/handshake", False, False),
        ("/services", False, False),
        ("/servicex/chat", False, False),
        ("/Service/chat", False, False),
        ("/foo/service", False, False),
        ("/chat", False, False),
        ("/*", False, False),
        ("/**", False, False),
    ],
)
def test_is_meta_and_is_service(channel: str, meta: bool, service: bool) -> None:
    assert is_valid_pattern(channel)
    assert is_meta(channel) is meta
    assert is_service(channel) is service


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("/*", True),
        ("/**", True),
        ("/a/*", True),
        ("/a/**", True),
        ("/a/b/c/**", True),
        ("/a", False),
        ("/a/b", False),
        ("/meta/connect", False),
        ("/star", False),
    ],
)
def test_is_pattern(channel: str, expected: bool) -> None:
    assert is_pattern(channel) is expected


# ------------------------------------------------------------------ expand


def test_expand_documented_example() -> None:
    assert expand("/a/b") == ["/a/b", "/**", "/a/*", "/a/**"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("/a", {"/a", "/**", "/*"}),
        ("/a/b", {"/a/b", "/**", "/a/*", "/a/**"}),
        ("/a/b/c", {"/a/b/c", "/**", "/a/b/*", "/a/b/**", "/a/**"}),
        (
            "/meta/connect",
            {"/meta/connect", "/**", "/meta/*", "/meta/**"},
        ),
        (
            "/x/y/z/w",
            {"/x/y/z/w", "/**", "/x/y/z/*", "/x/y/z/**", "/x/y/**", "/x/**"},
        ),
    ],
)
def test_expand_examples(name: str, expected: set[str]) -> None:
    result = expand(name)
    assert result[0] == name
    assert len(result) == len(expected)
    assert set(result) == expected


def test_expand_deepest_name() -> None:
    name = "/a" * MAX_CHANNEL_SEGMENTS
    result = expand(name)
    # The name, /**, one single wildcard and one ** per proper prefix.
    assert len(result) == MAX_CHANNEL_SEGMENTS + 2
    assert len(set(result)) == len(result)


# ----------------------------------------------------------------- matches


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("/a", "/a", True),
        ("/a", "/ab", False),
        ("/ab", "/a", False),
        ("/a/b", "/a", False),
        ("/a", "/a/b", False),
        ("/*", "/a", True),
        ("/*", "/a/b", False),
        ("/**", "/a", True),
        ("/**", "/a/b/c", True),
        ("/**", "/meta/connect", True),
        ("/a/*", "/a/b", True),
        ("/a/*", "/a", False),
        ("/a/*", "/ab", False),
        ("/a/*", "/ab/c", False),
        ("/a/*", "/a/b/c", False),
        ("/a/*", "/b/c", False),
        ("/a/**", "/a/b", True),
        ("/a/**", "/a/b/c", True),
        ("/a/**", "/a/b/c/d/e", True),
        ("/a/**", "/a", False),
        ("/a/**", "/ab", False),
        ("/a/**", "/ab/c", False),
        ("/a/**", "/b/a/c", False),
        ("/a/b/*", "/a/b/c", True),
        ("/a/b/*", "/a/c/c", False),
        ("/a/b/**", "/a/b", False),
        ("/a/b/**", "/a/bb/c", False),
        ("/A/*", "/a/b", False),
    ],
)
def test_matches_examples(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected
    assert (pattern in expand(name)) is expected


# ----------------------------------------------- independent reference code


def reference_segment_ok(segment: str) -> bool:
    return segment != "" and all(c in ALL_SEGMENT_CHARS for c in segment)


def reference_is_valid_name(value: object) -> bool:
    if type(value) is not str or not value.startswith("/"):
        return False
    if len(value) > MAX_CHANNEL_LENGTH or value.count("/") > MAX_CHANNEL_SEGMENTS:
        return False
    return all(reference_segment_ok(s) for s in value[1:].split("/"))


def reference_is_valid_pattern(value: object) -> bool:
    if reference_is_valid_name(value):
        return True
    if type(value) is not str or not value.startswith("/"):
        return False
    if len(value) > MAX_CHANNEL_LENGTH or value.count("/") > MAX_CHANNEL_SEGMENTS:
        return False
    *head, last = value[1:].split("/")
    return last in ("*", "**") and all(reference_segment_ok(s) for s in head)


def reference_matches(pattern: str, name: str) -> bool:
    """Segment-wise: ``*`` is exactly one segment, ``**`` one or more."""
    *head, last = pattern[1:].split("/")
    segments = name[1:].split("/")
    if last == "**":
        return len(segments) > len(head) and segments[: len(head)] == head
    if last == "*":
        return len(segments) == len(head) + 1 and segments[: len(head)] == head
    return segments == [*head, last]


def reference_regex(pattern: str) -> re.Pattern[str]:
    """The pattern as a regex over the name's text."""
    if pattern.endswith("/**"):
        return re.compile(re.escape(pattern[:-3]) + r"(?:/[^/]+)+")
    if pattern.endswith("/*"):
        return re.compile(re.escape(pattern[:-2]) + r"/[^/]+")
    return re.compile(re.escape(pattern))


# -------------------------------------------------------------- strategies

segments = st.one_of(
    st.sampled_from(["a", "b", "ab", "meta", "service", "x-y"]),
    st.text(alphabet=SEGMENT_CHARS, min_size=1, max_size=4),
)
segment_lists = st.lists(segments, min_size=1, max_size=6)
names = segment_lists.map(lambda segs: "/" + "/".join(segs))
wildcard_patterns = st.builds(
    lambda head, last: "".join("/" + s for s in head) + "/" + last,
    st.lists(segments, max_size=5),
    st.sampled_from(["*", "**"]),
)
patterns = st.one_of(names, wildcard_patterns)


@st.composite
def name_and_pattern(draw: st.DrawFn) -> tuple[str, str]:
    """A name and a pattern that is often related to it (so both outcomes occur)."""
    name_segments = draw(segment_lists)
    name = "/" + "/".join(name_segments)
    how = draw(st.sampled_from(["prefix", "mutated-prefix", "independent", "same"]))
    if how == "same":
        return name, name
    if how == "independent":
        return name, draw(patterns)
    keep = draw(st.integers(0, len(name_segments)))
    head = list(name_segments[:keep])
    if how == "mutated-prefix" and head:
        i = draw(st.integers(0, len(head) - 1))
        head[i] = draw(segments)
    last = draw(st.sampled_from(["*", "**", "<segment>"]))
    if last == "<segment>":
        last = draw(segments)
    return name, "".join("/" + s for s in head) + "/" + last


# -------------------------------------------------------------- properties


@given(names)
def test_generated_names_are_valid(name: str) -> None:
    assert is_valid_name(name)
    assert is_valid_pattern(name)
    assert not is_pattern(name)


@given(wildcard_patterns)
def test_generated_wildcards_are_patterns_only(pattern: str) -> None:
    assert is_valid_pattern(pattern)
    assert not is_valid_name(pattern)
    assert is_pattern(pattern)


@given(name_and_pattern())
def test_matches_iff_pattern_in_expand(pair: tuple[str, str]) -> None:
    name, pattern = pair
    assert is_valid_name(name)
    assert is_valid_pattern(pattern)
    assert matches(pattern, name) == (pattern in expand(name))


@given(names)
def test_expand_has_no_duplicates_and_only_valid_patterns(name: str) -> None:
    result = expand(name)
    assert result[0] == name
    assert len(set(result)) == len(result)
    assert len(result) == name.count("/") + 2
    for pattern in result[1:]:
        assert is_valid_pattern(pattern)
        assert is_pattern(pattern)
        assert not is_valid_name(pattern)
    # Everything expand lists does match the name.
    for pattern in result:
        assert matches(pattern, name)


@given(name_and_pattern())
def test_matches_agrees_with_reference(pair: tuple[str, str]) -> None:
    name, pattern = pair
    expected = reference_matches(pattern, name)
    assert matches(pattern, name) == expected
    assert (reference_regex(pattern).fullmatch(name) is not None) == expected


@given(names, names)
def test_names_match_only_themselves(a: str, b: str) -> None:
    assert matches(a, b) == (a == b)


channelish = st.one_of(
    st.text(alphabet="/*ab-_$.% :\n\u00e9\u0663", max_size=12),
    patterns,
    patterns.map(lambda p: p + "/"),
    st.text(max_size=8),
)


@given(channelish)
def test_grammar_agrees_with_reference(value: str) -> None:
    assert is_valid_name(value) == reference_is_valid_name(value)
    assert is_valid_pattern(value) == reference_is_valid_pattern(value)


@given(patterns)
def test_classification_is_by_segment(channel: str) -> None:
    segments = channel[1:].split("/")
    assert is_meta(channel) == (segments[0] == "meta")
    assert is_service(channel) == (segments[0] == "service")
    assert is_pattern(channel) == (segments[-1] in ("*", "**"))
