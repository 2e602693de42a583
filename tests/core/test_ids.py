"""random_client_id(): 160 CSPRNG bits as 31 base-36 characters."""

from __future__ import annotations

import re
import secrets

import pytest

from bayeux_core import random_client_id
from bayeux_core._ids import CLIENT_ID_LENGTH

ID_RE = re.compile(r"[0-9a-z]{31}")


def test_length_constant() -> None:
    assert CLIENT_ID_LENGTH == 31
    # 31 base-36 digits hold 160 bits; 30 do not.
    assert 36**31 >= 2**160 > 36**30


def test_shape() -> None:
    for _ in range(200):
        client_id = random_client_id()
        assert type(client_id) is str
        assert len(client_id) == CLIENT_ID_LENGTH
        assert ID_RE.fullmatch(client_id)


def test_distinct_over_many_draws() -> None:
    ids = {random_client_id() for _ in range(10_000)}
    assert len(ids) == 10_000


def test_uses_many_digits() -> None:
    # Not a statistical test: 10,000 ids of 31 characters use every digit
    # unless the conversion is broken (a chance of about 36 * (35/36)**310000).
    seen = set("".join(random_client_id() for _ in range(10_000)))
    assert seen == set("0123456789abcdefghijklmnopqrstuvwxyz")


@pytest.mark.parametrize(
    "raw",
    [
        bytes(20),
        b"\x00" * 19 + b"\x01",
        b"\x00" * 19 + b"\x23",  # 35
        b"\x00" * 19 + b"\x24",  # 36
        b"\xff" * 20,
        bytes(range(1, 21)),
        b"\x80" + bytes(19),
    ],
    ids=lambda raw: raw.hex(),
)
def test_base36_conversion_is_exact(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_token_bytes(n: int) -> bytes:
        calls.append(n)
        return raw

    monkeypatch.setattr(secrets, "token_bytes", fake_token_bytes)
    client_id = random_client_id()
    assert calls == [20]
    assert len(client_id) == CLIENT_ID_LENGTH
    assert ID_RE.fullmatch(client_id)
    assert int(client_id, 36) == int.from_bytes(raw, "big")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (bytes(20), "0" * 31),
        (b"\x00" * 19 + b"\x01", "0" * 30 + "1"),
        (b"\x00" * 19 + b"\x23", "0" * 30 + "z"),
        (b"\x00" * 19 + b"\x24", "0" * 29 + "10"),
        (b"\x00" * 19 + b"\xff", "0" * 29 + "73"),  # 255 = 7 * 36 + 3
        (b"\xff" * 20, "twj4yidkw7a8pn4g709kzmfoaol3x8f"),
    ],
)
def test_base36_known_values(raw: bytes, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "token_bytes", lambda n: raw)
    assert random_client_id() == expected
