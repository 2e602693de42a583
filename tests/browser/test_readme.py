"""README.md's snippets, as a reader uses them.

The browser snippet runs in Chromium against the chat demo's server (the
``localhost:9292`` of the README replaced by its address) and must see its
own message. No page of the docs installs the package from a registry: it
is not on one.
"""

from __future__ import annotations

import re

from ._support import REPO_ROOT, Browsers, Server

README = REPO_ROOT / "README.md"


def readme_block(language: str, after: str) -> str:
    """The first ```language block after the text ``after``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(after)
    match = re.compile(rf"```{language}\n(.*?)```", re.DOTALL).search(text, start)
    assert match is not None, f"no {language} block after {after!r}"
    return match.group(1)


def test_the_browser_snippet_sees_its_own_message(browsers: Browsers, chat_server: Server) -> None:
    snippet = readme_block("html", "In a web page").replace(
        "http://localhost:9292", chat_server.origin
    )
    url = f"{chat_server.origin}/readme-snippet.html"
    tab = browsers.open(f"{chat_server.origin}/", endpoint=chat_server.endpoint)
    page = tab.page
    # What the snippet logs, kept for the test (console.log still logs).
    page.add_init_script(
        """window.logged = [];
        const log = console.log.bind(console);
        console.log = (...args) => { window.logged.push(args); log(...args); };"""
    )
    page.route(
        url,
        lambda route: route.fulfill(
            status=200, body=f"<!doctype html>\n{snippet}", content_type="text/html"
        ),
    )
    page.goto(url)
    tab.wait_until(lambda: page.evaluate("window.logged.length") > 0, "the page to log a message")
    assert page.evaluate("window.logged") == [["got", {"text": "hello from the page"}]]


def test_no_doc_installs_from_a_registry() -> None:
    """`pip install bayeux-trio` (or with extras) would fail: it is installed from the clone."""
    wrong = re.compile(r"pip install\s+['\"]?bayeux-trio")
    for path in [README, *sorted((REPO_ROOT / "docs").glob("**/*.md"))]:
        text = path.read_text(encoding="utf-8")
        assert not wrong.search(text), f"{path.relative_to(REPO_ROOT)}: {wrong.search(text)}"


def test_the_readme_says_how_to_reach_bayeux_and_install_elsewhere() -> None:
    text = README.read_text(encoding="utf-8")
    assert ".venv/bin/bayeux" in text
    assert "source .venv/bin/activate" in text
    assert "pip install ." in text
    assert "pip install '.[redis]'" in text
    assert "Tested on Python 3.11, 3.12 and 3.13" in text
