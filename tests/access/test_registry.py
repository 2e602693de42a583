"""TokenRegistry: the seed's tokens.json, looked up by digest, reloaded when it changes.

Time is a fake monotonic clock; a change is a rewrite of the file (its size
or mtime changes), so no test sleeps.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from bayeux_trio.access import TokenFileSettings
from bayeux_trio.access._registry import TokenRegistry

ROOT = Path(__file__).resolve().parent.parent.parent
SEED = {
    "alice": {"token": "alice-7f3a9c1e", "follows": ["bob"], "info": {"name": "Alice"}},
    "bob": {"token": "bob-51e2d80a", "follows": ["alice"]},
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, content: Any) -> None:
    """Rewrite ``path`` so that a stat sees a new version even within one mtime tick."""
    before = path.stat() if path.exists() else None
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    after = path.stat()
    if before is not None and (after.st_mtime_ns, after.st_size) == (
        before.st_mtime_ns,
        before.st_size,
    ):
        os.utime(path, ns=(after.st_atime_ns, after.st_mtime_ns + 1_000_000))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    write(path, SEED)
    return path


@pytest.fixture
def registry(tokens: Path, clock: Clock) -> TokenRegistry:
    return TokenRegistry(TokenFileSettings(file=tokens), clock=clock)


def test_lookup(registry: TokenRegistry) -> None:
    assert registry.user_of("alice-7f3a9c1e") == "alice"
    assert registry.user_of("bob-51e2d80a") == "bob"
    assert registry.user_of("alice-7f3a9c1") is None
    assert registry.user_of("alice") is None
    assert registry.users == {"alice", "bob"}
    assert registry.info_of("alice") == {"name": "Alice"}
    assert registry.info_of("bob") is None
    assert registry.info_of("nobody") is None


@pytest.mark.parametrize("token", [None, "", 42, b"alice-7f3a9c1e", ["alice-7f3a9c1e"]])
def test_not_a_token(registry: TokenRegistry, token: object) -> None:
    assert registry.user_of(token) is None


def test_the_seeds_own_file(clock: Clock) -> None:
    path = ROOT / "examples" / "private_chat" / "tokens.json"
    registry = TokenRegistry(TokenFileSettings(file=path), clock=clock)
    assert registry.users == {"alice", "bob", "carol", "dave"}
    assert registry.user_of("carol-c04b17f5") == "carol"


def test_short_form(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "tokens.json"
    write(path, {"alice": "a-token", "bob": {"token": "b-token", "info": [1, 2]}})
    registry = TokenRegistry(TokenFileSettings(file=path), clock=clock)
    assert registry.user_of("a-token") == "alice"
    assert registry.user_of("b-token") == "bob"
    assert registry.info_of("alice") is None
    assert registry.info_of("bob") == [1, 2]


def test_an_empty_file_object_means_nobody(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "tokens.json"
    write(path, {})
    registry = TokenRegistry(TokenFileSettings(file=path), clock=clock)
    assert registry.users == frozenset()
    assert registry.user_of("anything") is None


def test_unicode_tokens_and_users(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "tokens.json"
    path.write_text('{"zoë": "t\\u00e9st", "ünï": "\\ud800lone"}', encoding="utf-8")
    registry = TokenRegistry(TokenFileSettings(file=path), clock=clock)
    assert registry.user_of("tést") == "zoë"
    assert registry.user_of("\ud800lone") == "ünï"


def test_lookups_use_digests_not_tokens(registry: TokenRegistry) -> None:
    """No token is kept in the clear, so no comparison runs over one."""
    kept = repr(vars(registry)) if hasattr(registry, "__dict__") else ""
    kept += repr(registry._entries)
    assert "alice-7f3a9c1e" not in kept
    assert all(len(digest) == 32 for digest in registry._entries.by_digest)


# ---------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("", "not JSON"),
        ("{", "not JSON"),
        ("[]", "want a JSON object"),
        ('"alice"', "want a JSON object"),
        ('{"alice": 1}', "user 'alice': want \"token\""),
        ('{"alice": ""}', "user 'alice': want \"token\""),
        ('{"alice": null}', "user 'alice': want \"token\""),
        ('{"alice": {"follows": []}}', "user 'alice': want \"token\""),
        ('{"alice": {"token": 5}}', "user 'alice': want \"token\""),
        ('{"alice": {"token": ""}}', "user 'alice': want \"token\""),
        ('{"": "t"}', "user '': want 1 to 256"),
        (json.dumps({"x" * 257: "t"}), "want 1 to 256"),
        ('{"alice": "t", "bob": {"token": "t"}}', "users 'alice' and 'bob' have the same token"),
        ('{"alice": "t1", "alice": "t2"}', "'alice' appears twice"),
        ("[" * 100_000, "not JSON"),
    ],
)
def test_bad_shapes_are_refused(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=r"^file: ") as caught:
        TokenRegistry(TokenFileSettings(file=path))
    assert why in str(caught.value)
    assert '"t"' not in str(caught.value)  # tokens are never quoted


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_bytes(b'{"alice": "\xff"}')
    with pytest.raises(ValueError, match=r"^file: .*not UTF-8"):
        TokenRegistry(TokenFileSettings(file=path))


def test_ambiguous_tokens_never_name_the_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    write(path, {"alice": "shared-secret", "bob": "shared-secret"})
    with pytest.raises(ValueError, match=r"^file: .*same token") as caught:
        TokenRegistry(TokenFileSettings(file=path))
    assert "shared-secret" not in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^file: cannot read .*nope\.json"):
        TokenRegistry(TokenFileSettings(file=tmp_path / "nope.json"))


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^file: cannot read"):
        TokenRegistry(TokenFileSettings(file=tmp_path))


@pytest.mark.parametrize("every", [-1.0, float("nan"), float("inf")])
def test_check_every_must_be_a_time(tokens: Path, every: float) -> None:
    with pytest.raises(ValueError, match=r"^check_every: "):
        TokenRegistry(TokenFileSettings(file=tokens), check_every=every)


# ------------------------------------------------------------------ reloads


def test_reload_on_change_waits_for_check_every(
    tokens: Path, clock: Clock, registry: TokenRegistry
) -> None:
    write(tokens, {**SEED, "carol": "carol-token"})
    assert registry.user_of("carol-token") is None  # not checked yet
    clock.now += 0.5
    assert registry.user_of("carol-token") is None
    clock.now += 0.5
    assert registry.user_of("carol-token") == "carol"
    assert registry.users == {"alice", "bob", "carol"}


def test_check_every_is_configurable(tokens: Path, clock: Clock) -> None:
    registry = TokenRegistry(TokenFileSettings(file=tokens), clock=clock, check_every=10)
    write(tokens, {"carol": "carol-token"})
    clock.now += 9
    assert registry.users == {"alice", "bob"}
    assert registry.has("alice")
    clock.now += 1
    assert registry.users == {"carol"}
    assert not registry.has("alice")
    assert registry.has("carol")


def test_the_file_is_not_read_while_unchanged(
    tokens: Path, clock: Clock, registry: TokenRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []
    read_bytes = Path.read_bytes

    def counting(self: Path) -> bytes:
        reads.append(self)
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    for _ in range(5):
        clock.now += 2
        assert registry.user_of("alice-7f3a9c1e") == "alice"
    assert reads == []
    write(tokens, {"alice": "new-alice"})
    clock.now += 2
    assert registry.user_of("new-alice") == "alice"
    assert reads == [tokens]


def test_a_removed_user_stops_working_at_the_next_reload(
    tokens: Path, clock: Clock, registry: TokenRegistry
) -> None:
    assert registry.user_of("bob-51e2d80a") == "bob"
    write(tokens, {"alice": SEED["alice"]})
    clock.now += 1
    assert registry.user_of("bob-51e2d80a") is None
    assert registry.user_of("alice-7f3a9c1e") == "alice"
    assert registry.users == {"alice"}


def test_a_changed_token_replaces_the_old_one(
    tokens: Path, clock: Clock, registry: TokenRegistry
) -> None:
    write(tokens, {**SEED, "alice": {"token": "alice-rotated", "info": "new"}})
    clock.now += 1
    assert registry.user_of("alice-7f3a9c1e") is None
    assert registry.user_of("alice-rotated") == "alice"
    assert registry.info_of("alice") == "new"


def test_a_replaced_file_is_seen_by_its_inode(
    tokens: Path, clock: Clock, registry: TokenRegistry
) -> None:
    """Editors and deploy tools write a new file and rename it over the old one."""
    fresh = tokens.with_name("tokens.json.new")
    write(fresh, {"dave": "dave-token"})
    os.replace(fresh, tokens)
    clock.now += 1
    assert registry.user_of("dave-token") == "dave"


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "bayeux.access" and record.levelno == logging.WARNING
    ]


@pytest.mark.parametrize(
    "broken", ["{", "[]", '{"alice": 5}', '{"a": "t", "b": "t"}', '{"alice": "x", "alice": "y"}']
)
def test_a_broken_file_keeps_the_old_users_and_warns_once(
    tokens: Path,
    clock: Clock,
    registry: TokenRegistry,
    caplog: pytest.LogCaptureFixture,
    broken: str,
) -> None:
    caplog.set_level(logging.INFO, logger="bayeux.access")
    write(tokens, broken)
    for _ in range(5):
        clock.now += 1
        assert registry.user_of("alice-7f3a9c1e") == "alice"
        assert registry.users == {"alice", "bob"}
    warnings = warnings_in(caplog)
    assert len(warnings) == 1
    assert str(tokens) in warnings[0]
    assert "keeping the previous users" in warnings[0]
    assert '"t"' not in warnings[0]
    assert "'t'" not in warnings[0]


def test_each_broken_version_warns_once(
    tokens: Path, clock: Clock, registry: TokenRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bayeux.access")
    write(tokens, "{")
    clock.now += 1
    registry.users  # noqa: B018
    write(tokens, "{{")
    clock.now += 1
    registry.users  # noqa: B018
    clock.now += 1
    assert registry.users == {"alice", "bob"}
    assert len(warnings_in(caplog)) == 2


def test_recovery_after_a_broken_file(
    tokens: Path, clock: Clock, registry: TokenRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bayeux.access")
    write(tokens, '{"alice": ')
    clock.now += 1
    assert registry.user_of("alice-7f3a9c1e") == "alice"
    write(tokens, {"erin": "erin-token"})
    clock.now += 1
    assert registry.user_of("erin-token") == "erin"
    assert registry.user_of("alice-7f3a9c1e") is None
    assert len(warnings_in(caplog)) == 1
    assert any("reloaded, 1 users" in r.getMessage() for r in caplog.records)


def test_a_deleted_file_keeps_the_old_users_until_it_is_back(
    tokens: Path, clock: Clock, registry: TokenRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bayeux.access")
    tokens.unlink()
    for _ in range(3):
        clock.now += 1
        assert registry.user_of("bob-51e2d80a") == "bob"
    warnings = warnings_in(caplog)
    assert len(warnings) == 1
    assert "cannot read" in warnings[0]
    write(tokens, {"bob": "bob-new"})
    clock.now += 1
    assert registry.user_of("bob-new") == "bob"
    assert registry.user_of("bob-51e2d80a") is None


def test_an_unreadable_file_keeps_the_old_users(
    tokens: Path,
    clock: Clock,
    registry: TokenRegistry,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """stat works, reading fails (permissions, or gone in between): as broken."""
    caplog.set_level(logging.WARNING, logger="bayeux.access")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    write(tokens, {"mallory": "m"})
    clock.now += 1
    assert registry.users == {"alice", "bob"}
    assert len(warnings_in(caplog)) == 1
    assert "Permission denied" in warnings_in(caplog)[0]
