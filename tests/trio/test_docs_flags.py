"""Every ``bayeux serve`` option is documented in docs/server.md's table."""

from __future__ import annotations

import argparse
from pathlib import Path

from bayeux_trio.cli._main import _parser

SERVER_MD = Path(__file__).resolve().parents[2] / "docs" / "server.md"


def _serve_options() -> set[str]:
    parser = _parser()
    commands = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    serve = commands.choices["serve"]
    return {
        option
        for action in serve._actions
        if action.help is not argparse.SUPPRESS
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }


def test_every_serve_option_has_a_row_in_the_server_docs() -> None:
    table = SERVER_MD.read_text()
    options = _serve_options()
    assert "--max-json-depth" in options  # the parser was found
    missing = sorted(option for option in options if f"| `{option}` |" not in table)
    assert missing == []
