"""Take the chat demo's screenshot shown in the README (docs/chat.png).

    .venv/bin/python -m tests.browser.screenshot [OUTPUT.png]

Starts the chat demo's server on a free port, opens two pages in Chromium,
lets them talk, and saves the first page. test_screenshot.py runs the same
function into a temporary folder, so this script keeps working.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from ._support import CHAT_ARGS, REPO_ROOT, Browsers, Server, launch_chromium, running, start_server
from .test_chat import expect_line, open_chat, say

OUTPUT = REPO_ROOT / "docs" / "chat.png"
CONVERSATION = [
    ("alice", "Has anyone tried the new Bayeux server?"),
    ("bob", "Yes! Same client.js API as Faye, and the pages did not change."),
    ("alice", "And if the server restarts?"),
    ("bob", "The page reconnects and subscribes again by itself."),
]


def take_screenshot(browsers: Browsers, server: Server, output: Path) -> None:
    alice = open_chat(browsers, server, room="lobby", name="alice")
    bob = open_chat(browsers, server, room="lobby", name="bob")
    for tab in (alice, bob):
        tab.page.set_viewport_size({"width": 900, "height": 560})
    pages = {"alice": alice, "bob": bob}
    for name, text in CONVERSATION:
        say(pages[name], text)
        expect_line(alice, name, text)
    bob.page.fill("#room", "python")
    bob.page.click("#join")
    say(bob, "Anyone in #python?")  # shows as unread on alice's page
    alice.page.locator("#rooms li[data-room='python'] .unread").filter(has_text="1").wait_for()
    alice.page.fill("#message", "Nice, let me try it")
    alice.page.screenshot(path=str(output))


def main(argv: list[str]) -> int:
    output = Path(argv[0]) if argv else OUTPUT
    with tempfile.TemporaryDirectory() as log_dir:
        server = start_server(Path(log_dir), CHAT_ARGS)
        with running(server), launch_chromium() as browser:
            browsers = Browsers(browser)
            try:
                take_screenshot(browsers, server, output)
            finally:
                browsers.close()
    print(f"saved {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
