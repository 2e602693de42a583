"""Draw the session state machine of ``docs/protocol.md`` from the code.

The diagram is a Mermaid ``stateDiagram-v2`` block generated from
:data:`bayeux_core.TRANSITIONS`, kept between the markers
``<!-- state-diagram:begin -->`` and ``<!-- state-diagram:end -->``. Run::

    python docs/make_state_diagram.py            # print the block
    python docs/make_state_diagram.py --write    # rewrite it in docs/protocol.md
    python docs/make_state_diagram.py --check    # exit 1 if docs/protocol.md is stale

``tests/core/test_docs.py`` runs the check, so a change to the table that is
not reflected in the docs fails the tests.

How the table becomes a picture:

* One arrow per (from, to) pair of states; its label lists every message kind
  that takes that path, grouped by what the engine does. Self-loops are
  collapsed in the same way, so each state has at most one loop, and on a
  loop the kinds that simply do their own job (subscribe, unsubscribe,
  publish, ``/service`` publish) share one line.
* A handshake never changes the session its message names: it creates a new
  one, in the state :class:`bayeux_core.Session` starts in. So it is drawn as
  an arrow from ``none`` to that state, and left out of the other states'
  loops (which would only say "creates another session").
* Rows whose outcome is "nothing" are left out.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bayeux_core import TRANSITIONS, MessageKind, Outcome, Session, SessionState

PROTOCOL_MD = Path(__file__).resolve().parent / "protocol.md"
BEGIN = "<!-- state-diagram:begin -->"
END = "<!-- state-diagram:end -->"

#: Short names for message kinds in arrow labels.
_KIND_LABELS = {
    MessageKind.HANDSHAKE: "handshake",
    MessageKind.CONNECT: "connect",
    MessageKind.SUBSCRIBE: "subscribe",
    MessageKind.UNSUBSCRIBE: "unsubscribe",
    MessageKind.DISCONNECT: "disconnect",
    MessageKind.OTHER_META: "other /meta",
    MessageKind.SERVICE: "/service publish",
    MessageKind.PUBLISH: "publish",
    MessageKind.EXPIRE: "session timeout",
}
_STATE_LABELS = {
    SessionState.NONE: "none (no such session)",
    SessionState.HANDSHAKEN: "handshaken",
    SessionState.CONNECTED: "connected",
}


#: Outcomes that only do what the message asks and never move the session.
#: On a self-loop their kinds share one line, without the outcome text.
_PLAIN = frozenset({Outcome.SUBSCRIBE, Outcome.UNSUBSCRIBE, Outcome.PUBLISH, Outcome.SERVICE})


def _label(groups: dict[Outcome, list[MessageKind]], loop: bool) -> str:
    lines: list[str] = []
    plain: list[MessageKind] = []
    for outcome, kinds in groups.items():
        if loop and outcome in _PLAIN:
            if not plain:
                lines.append("")  # placeholder: the plain kinds go where the first was
            plain.extend(kinds)
            continue
        names = ", ".join(_KIND_LABELS[kind] for kind in kinds)
        lines.append(f"{names} → {outcome.value}")
    if plain:
        lines[lines.index("")] = ", ".join(_KIND_LABELS[kind] for kind in plain)
    return "<br/>".join(lines)


def render() -> str:
    """The Mermaid block (fences included) for the current TRANSITIONS."""
    created_in = Session("diagram").state
    # (from, to) -> outcome -> kinds, in table order
    edges: dict[tuple[SessionState, SessionState], dict[Outcome, list[MessageKind]]] = {}
    for (state, kind), (outcome, next_state) in TRANSITIONS.items():
        if outcome is Outcome.IGNORE:
            continue
        target = next_state
        if outcome is Outcome.HANDSHAKE:
            if state is not SessionState.NONE:
                continue
            target = created_in
        edges.setdefault((state, target), {}).setdefault(outcome, []).append(kind)
    lines = ["```mermaid", "stateDiagram-v2"]
    for state in SessionState:
        lines.append(f'    state "{_STATE_LABELS[state]}" as {state.name}')
    lines.append(f"    [*] --> {SessionState.NONE.name}")
    for (source, target), groups in edges.items():
        label = _label(groups, loop=source is target)
        lines.append(f"    {source.name} --> {target.name} : {label}")
    lines.append("```")
    return "\n".join(lines) + "\n"


def replace_block(text: str, block: str) -> str:
    """``text`` with what lies between the markers replaced by ``block``."""
    start = text.find(BEGIN)
    end = text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers {BEGIN} ... {END} are missing or out of order")
    head = text[: start + len(BEGIN)]
    return f"{head}\n{block}{text[end:]}"


def is_current(path: Path = PROTOCOL_MD) -> bool:
    """True if the diagram in ``path`` is what :func:`render` draws now."""
    text = path.read_text(encoding="utf-8")
    return replace_block(text, render()) == text


def write(path: Path = PROTOCOL_MD) -> bool:
    """Rewrite the diagram in ``path``; True if it changed."""
    text = path.read_text(encoding="utf-8")
    updated = replace_block(text, render())
    if updated == text:
        return False
    path.write_text(updated, encoding="utf-8")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the block in the file")
    mode.add_argument("--check", action="store_true", help="exit 1 if the block is stale")
    parser.add_argument("--path", type=Path, default=PROTOCOL_MD, help="default: %(default)s")
    args = parser.parse_args(argv)
    if args.write:
        changed = write(args.path)
        print(f"{args.path}: {'updated' if changed else 'already current'}")
        return 0
    if args.check:
        if is_current(args.path):
            return 0
        print(
            f"{args.path}: the state diagram is stale;"
            " run python docs/make_state_diagram.py --write",
            file=sys.stderr,
        )
        return 1
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
