"""The README's screenshot of the chat demo can be taken again (tests/browser/screenshot.py)."""

from __future__ import annotations

from pathlib import Path

from ._support import Browsers, Server
from .screenshot import OUTPUT, take_screenshot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_screenshot_of_the_chat_demo(
    browsers: Browsers, chat_server: Server, tmp_path: Path
) -> None:
    output = tmp_path / "chat.png"
    take_screenshot(browsers, chat_server, output)
    assert output.read_bytes().startswith(PNG_SIGNATURE)


def test_readme_shows_the_committed_screenshot() -> None:
    assert OUTPUT.read_bytes().startswith(PNG_SIGNATURE)
    readme = (OUTPUT.parents[1] / "README.md").read_text()
    assert "](docs/chat.png)" in readme
