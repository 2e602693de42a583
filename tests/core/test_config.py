"""EngineConfig: defaults, and every check made when one is built."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bayeux_core import CONNECTION_TYPES, EngineConfig, OverflowPolicy

TIME_FIELDS = ["timeout", "interval", "session_timeout", "error_interval"]
COUNT_FIELDS = ["max_queue", "max_batch", "max_subscriptions", "max_clients"]
#: None means "follow timeout" (session_timeout) or "no limit" (max_batch)
OPTIONAL_FIELDS = {"session_timeout", "max_batch"}


def make(**kwargs: Any) -> EngineConfig:
    """Build a config from untyped keywords (the point is to pass bad types)."""
    return EngineConfig(**kwargs)


def test_defaults() -> None:
    config = EngineConfig()
    assert config.timeout == 25.0
    assert config.interval == 0.0
    assert config.session_timeout is None  # Faye's rule: twice the timeout
    assert config.session_expiry == 50.0
    assert config.error_interval == 1.0
    assert config.max_queue == 10_000
    assert config.overflow is OverflowPolicy.DROP_OLDEST
    assert config.max_batch is None  # no limit, as Faye
    assert config.max_subscriptions == 1_000
    assert config.max_clients == 1_000_000
    assert config.connection_types == CONNECTION_TYPES


def test_connection_types_in_faye_order() -> None:
    assert CONNECTION_TYPES == (
        "long-polling",
        "cross-origin-long-polling",
        "callback-polling",
        "websocket",
        "eventsource",
        "in-process",
    )


def test_frozen_slotted_keyword_only() -> None:
    config = EngineConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.timeout = 1.0  # type: ignore[misc]
    assert not hasattr(config, "__dict__")
    with pytest.raises(TypeError):
        EngineConfig(25.0)  # type: ignore[call-arg]
    assert hash(config) == hash(EngineConfig())
    assert config == EngineConfig()


def test_replace_revalidates() -> None:
    config = dataclasses.replace(EngineConfig(), timeout=5)
    assert config.timeout == 5
    with pytest.raises(ValueError, match="timeout"):
        dataclasses.replace(config, timeout=-1)


def test_overflow_policies() -> None:
    assert EngineConfig(overflow=OverflowPolicy.DISCONNECT).overflow is OverflowPolicy.DISCONNECT
    assert {p.value for p in OverflowPolicy} == {"drop-oldest", "disconnect"}


# ------------------------------------------------------------------- times


@pytest.mark.parametrize("field", TIME_FIELDS)
@pytest.mark.parametrize("value", [0, 0.0, -0.0, 1, 0.001, 25.5, 10**6, 1e9])
def test_time_fields_accept_finite_non_negative(field: str, value: float) -> None:
    assert getattr(make(**{field: value}), field) == value


@pytest.mark.parametrize("field", TIME_FIELDS)
@pytest.mark.parametrize(
    "value",
    [-1, -0.001, -1e-300, float("nan"), float("inf"), float("-inf")],
    ids=repr,
)
def test_time_fields_refuse_negative_and_non_finite(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must be a finite number >= 0"):
        make(**{field: value})


@pytest.mark.parametrize("field", TIME_FIELDS)
@pytest.mark.parametrize("value", ["25", None, True, False, b"1", [1.0], 1j, object()], ids=repr)
def test_time_fields_refuse_non_numbers(field: str, value: object) -> None:
    if value is None and field in OPTIONAL_FIELDS:
        assert getattr(make(**{field: value}), field) is None
        return
    with pytest.raises(ValueError, match=rf"^{field} must be a finite number >= 0"):
        make(**{field: value})


# ------------------------------------------------------------------ counts


@pytest.mark.parametrize("field", COUNT_FIELDS)
@pytest.mark.parametrize("value", [1, 2, 10**9])
def test_count_fields_accept_positive_ints(field: str, value: int) -> None:
    assert getattr(make(**{field: value}), field) == value


@pytest.mark.parametrize("field", COUNT_FIELDS)
@pytest.mark.parametrize(
    "value", [0, -1, 1.0, 5.5, "10", None, True, False, float("inf")], ids=repr
)
def test_count_fields_refuse_other_values(field: str, value: object) -> None:
    if value is None and field in OPTIONAL_FIELDS:
        assert getattr(make(**{field: value}), field) is None
        return
    with pytest.raises(ValueError, match=rf"^{field} must be an int >= 1"):
        make(**{field: value})


# ---------------------------------------------------------------- overflow


@pytest.mark.parametrize("value", ["drop-oldest", "disconnect", None, 0], ids=repr)
def test_overflow_must_be_a_policy(value: object) -> None:
    with pytest.raises(ValueError, match=r"^overflow must be an OverflowPolicy"):
        make(overflow=value)


# -------------------------------------------------------- connection types


@pytest.mark.parametrize(
    "value",
    [("websocket",), ("long-polling", "websocket"), ("custom",)],
)
def test_connection_types_accepted(value: tuple[str, ...]) -> None:
    assert EngineConfig(connection_types=value).connection_types == value


@pytest.mark.parametrize(
    "value",
    [
        (),
        ("",),
        ("websocket", ""),
        ("websocket", None),
        ("websocket", 1),
        (b"websocket",),
        # Not a tuple: a str is an iterable of one-letter names, and a list
        # would make the frozen config unhashable.
        "websocket",
        ["websocket"],
        None,
    ],
    ids=repr,
)
def test_connection_types_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"^connection_types must be a non-empty tuple"):
        make(connection_types=value)


def test_first_bad_field_is_reported() -> None:
    # Times are checked first, then counts, then overflow, then types.
    with pytest.raises(ValueError, match=r"^timeout"):
        make(timeout=-1, max_queue=0, overflow=None, connection_types=())
    with pytest.raises(ValueError, match=r"^max_queue"):
        make(max_queue=0, overflow=None, connection_types=())
    with pytest.raises(ValueError, match=r"^overflow"):
        make(overflow=None, connection_types=())


# ------------------------------------------------ hardening limits (issue 8)


def test_hardening_defaults() -> None:
    config = EngineConfig()
    assert config.max_clients_per_address is None
    assert config.max_json_depth == 64
    assert config.js_safe_integers is False


@pytest.mark.parametrize("value", [None, 1, 2, 10**6])
def test_max_clients_per_address_accepts_none_or_positive(value: int | None) -> None:
    assert EngineConfig(max_clients_per_address=value).max_clients_per_address == value


@pytest.mark.parametrize("value", [0, -1, 1.0, "3", True, float("inf")], ids=repr)
def test_max_clients_per_address_refuses_other_values(value: object) -> None:
    with pytest.raises(ValueError, match=r"^max_clients_per_address must be None or an int >= 1"):
        make(max_clients_per_address=value)


@pytest.mark.parametrize("value", [3, 4, 64, 255, 1024])
def test_max_json_depth_accepts_3_to_1024(value: int) -> None:
    assert EngineConfig(max_json_depth=value).max_json_depth == value


@pytest.mark.parametrize("value", [2, 0, -1, 1025, 64.0, "64", None, True], ids=repr)
def test_max_json_depth_refuses_other_values(value: object) -> None:
    with pytest.raises(ValueError, match=r"^max_json_depth must be an int from 3 to 1024"):
        make(max_json_depth=value)


@pytest.mark.parametrize("value", [0, 1, "yes", None], ids=repr)
def test_js_safe_integers_must_be_a_bool(value: object) -> None:
    with pytest.raises(ValueError, match=r"^js_safe_integers must be a bool"):
        make(js_safe_integers=value)
