"""Replay the fuzz seed corpus through both fuzz targets' one-input functions.

The targets live in ``fuzz/`` as scripts; ``make fuzz`` runs them under
libFuzzer. Here each seed runs once, uninstrumented, so a seed that breaks an
invariant fails the ordinary test run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests._support.ci import unavailable

try:
    import atheris  # noqa: F401  (the targets import it; make installs the fuzz extra)
except ImportError:  # pragma: no cover - depends on the environment
    unavailable("atheris is not installed (pip install -e '.[fuzz]')", allow_module_level=True)

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"
SEEDS = sorted(p for p in (FUZZ_DIR / "seeds").iterdir() if p.is_file())
TARGETS = ("fuzz_decode", "fuzz_engine")


@pytest.fixture(scope="module")
def targets() -> Iterator[dict[str, ModuleType]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(FUZZ_DIR))
        yield {name: importlib.import_module(name) for name in TARGETS}


def test_there_are_seeds() -> None:
    assert len(SEEDS) >= 20
    names = {p.name for p in SEEDS}
    assert {"handshake.json", "primitive-1.json", "meta-subscribe-x.json"} <= names


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: p.name)
def test_seed(targets: dict[str, ModuleType], target: str, seed: Path) -> None:
    test_one_input: Callable[[bytes], None] = targets[target].test_one_input
    test_one_input(seed.read_bytes())


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff" * 64, bytes(range(256))])
@pytest.mark.parametrize("target", TARGETS)
def test_odd_inputs(targets: dict[str, ModuleType], target: str, data: bytes) -> None:
    targets[target].test_one_input(data)


def test_seeds_reach_deep_paths(targets: dict[str, ModuleType]) -> None:
    # The prefix's clients are subscribed, so a publish seed fans out and an
    # unknown-client seed is refused: the harness is not just bouncing errors.
    engine = targets["fuzz_engine"]
    publish = engine.run((FUZZ_DIR / "seeds" / "publish.json").read_bytes())
    assert publish.deliveries >= 1
    assert publish.events["Published"] >= 1
    disconnect = engine.run((FUZZ_DIR / "seeds" / "disconnect.json").read_bytes())
    assert disconnect.events["Disconnected"] >= 1
