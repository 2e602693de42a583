"""What every fuzz target shares: core instrumentation and the libFuzzer entry.

Not a target itself (``make fuzz`` runs ``fuzz/fuzz_*.py`` only).
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path

import atheris

import bayeux_core

FUZZ_DIR = Path(__file__).resolve().parent
SEEDS = FUZZ_DIR / "seeds"


def instrument_core(packages: Sequence[str] = (bayeux_core.__name__,)) -> None:
    """Add coverage instrumentation to every function of ``packages``.

    The targets import the core at module level (their one-input functions
    are also replayed by pytest), so ``atheris.instrument_imports`` would come
    too late. The code objects are patched in place instead.
    """
    for package in packages:
        importlib.import_module(package)
        _instrument_package(package)


def _instrument_package(package: str) -> None:
    for name, module in list(sys.modules.items()):
        if name != package and not name.startswith(package + "."):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, types.FunctionType) and value.__module__ == name:
                atheris.instrument_func(value)
            elif isinstance(value, type) and value.__module__ == name:
                for member in list(vars(value).values()):
                    function = member
                    if isinstance(member, (staticmethod, classmethod)):
                        function = member.__func__
                    elif isinstance(member, property):
                        function = member.fget
                    if isinstance(function, types.FunctionType):
                        atheris.instrument_func(function)


def run(
    target: str,
    test_one_input: Callable[[bytes], None],
    argv: list[str],
    *,
    server: bool = False,
) -> None:
    """Fuzz ``test_one_input`` under libFuzzer; ``argv`` as on the command line.

    With no corpus directory on the command line, new inputs are kept in
    ``fuzz/corpus-<target>/`` (ignored by git) and the seeds are read too:
    ``fuzz/seeds/`` (bodies), or for a ``server`` target (byte streams, see
    ``_server_harness.py``) ``fuzz/seeds-<target>/``. A server target's
    coverage also counts ``bayeux_trio``, and it gets ``fuzz/server.dict``.
    """
    args = list(argv)
    if all(arg.startswith("-") for arg in args[1:]):
        corpus = FUZZ_DIR / f"corpus-{target}"
        corpus.mkdir(exist_ok=True)
        args += [str(corpus), str(FUZZ_DIR / f"seeds-{target}" if server else SEEDS)]
    if server and not any(arg.startswith("-dict=") for arg in args):
        args.append(f"-dict={FUZZ_DIR / 'server.dict'}")
    instrument_core(("bayeux_core", "bayeux_trio") if server else ("bayeux_core",))
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()
