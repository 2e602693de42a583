"""The broadcast demo in Chromium: a backend pushes, every open page shows it.

Three senders, as the demo's page lists them: ``curl ... -d 'message=...'``
(the seed's command, run as written), ``bayeux publish``, and Python (the
demo's notify.py over HTTP, and server.publish() inside an embedding server).
"""

from __future__ import annotations

import itertools
import shlex
import subprocess
import sys
from pathlib import Path

from tests._support.ci import require_tool
from tests._support.ports import free_port

from ._support import HOST, REPO_ROOT, Browsers, Server, Tab, expect, running

_texts = itertools.count(1)
SUBPROCESS_TIMEOUT = 30.0


def open_feed(browsers: Browsers, server: Server, query: str = "") -> Tab:
    tab = browsers.open(f"{server.origin}/{query}", endpoint=server.endpoint)
    expect(tab.page.locator("#listening")).to_have_attribute("data-state", "listening")
    return tab


def expect_notification(tab: Tab, text: str, level: str = "info") -> None:
    item = tab.page.locator("#feed li").filter(has_text=text)
    expect(item).to_have_count(1)
    expect(item).to_have_attribute("data-level", level)


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, (
        f"{command}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result


def test_curl_reaches_open_pages(browsers: Browsers, broadcast_server: Server) -> None:
    require_tool("curl", "apt-get install curl")
    pages = [
        open_feed(browsers, broadcast_server),
        open_feed(browsers, broadcast_server, "?transport=long-polling"),
    ]
    text = f"Deploy finished {next(_texts)}"
    # The command from the README and the page, with this server's port.
    command = (
        f"curl http://localhost:9292/faye "
        f"""-d 'message={{"channel":"/notifications","data":"{text}"}}'"""
    ).replace("localhost:9292", f"{HOST}:{broadcast_server.port}")
    result = run(shlex.split(command))
    assert result.stdout.startswith('[{"channel":"/notifications","successful":true')
    for tab in pages:
        expect_notification(tab, text)


def test_bayeux_publish_reaches_open_pages(browsers: Browsers, broadcast_server: Server) -> None:
    pages = [
        open_feed(browsers, broadcast_server),
        open_feed(browsers, broadcast_server, "?transport=callback-polling"),
    ]
    text = f"Published from the command line {next(_texts)}"
    data = f'{{"text": "{text}", "level": "warning"}}'
    command = [sys.executable, "-m", "bayeux_trio", "publish"]
    run([*command, broadcast_server.endpoint, "/notifications", data])
    for tab in pages:
        expect_notification(tab, text, "warning")


def test_python_notify_reaches_open_pages(browsers: Browsers, broadcast_server: Server) -> None:
    tab = open_feed(browsers, broadcast_server)
    text = f"Disk almost full {next(_texts)}"
    notify = str(Path("examples") / "broadcast" / "notify.py")
    run([sys.executable, notify, "--url", broadcast_server.endpoint, "--level", "alert", text])
    expect_notification(tab, text, "alert")


def test_server_side_publish_from_python(browsers: Browsers, tmp_path: Path) -> None:
    """``python -m examples.broadcast.server``: each stdin line is a server.publish()."""
    port = free_port()
    server = Server(port, [], tmp_path / "server.log", stdin=True)
    command = [sys.executable, "-m", "examples.broadcast.server", "--host", HOST]
    server.start([*command, "--port", str(port)])
    with running(server):
        pages = [open_feed(browsers, server), open_feed(browsers, server, "?transport=eventsource")]
        server.write_line("Backup complete")
        server.write_line("!Certificate expires tomorrow")
        for tab in pages:
            expect_notification(tab, "Backup complete")
            expect_notification(tab, "Certificate expires tomorrow", "alert")
        # The newest is on top.
        expect(pages[0].page.locator("#feed li").first).to_contain_text("Certificate expires")


def test_send_one_commands_work_as_shown(browsers: Browsers, broadcast_server: Server) -> None:
    """The page's "Send one" commands name this server and run as printed, from the clone."""
    require_tool("curl", "apt-get install curl")
    tab = open_feed(browsers, broadcast_server)
    tab.page.click("details summary")
    shown_text = "\n".join(tab.page.locator("details pre").all_inner_texts())
    commands = [line for line in shown_text.splitlines() if line.strip()]
    assert [command.split()[0] for command in commands] == [
        "curl",
        ".venv/bin/bayeux",
        ".venv/bin/python",
    ], commands
    feed = tab.page.locator("#feed li")
    for shown, command in enumerate(commands, start=1):
        words = shlex.split(command)
        assert broadcast_server.endpoint in words, command
        if words[0].startswith(".venv/"):
            assert (REPO_ROOT / words[0]).is_file(), f"{words[0]} is missing: run make first"
        # Through a shell, word for word as a reader pastes it.
        run(["sh", "-c", command])
        expect(feed).to_have_count(shown)
        expect(feed.first).to_contain_text("Deploy finished")


def test_send_one_commands_are_not_clipped(browsers: Browsers, broadcast_server: Server) -> None:
    """On a narrow screen every command is wholly in view, and selecting it copies it whole."""
    tab = open_feed(browsers, broadcast_server)
    page = tab.page
    page.set_viewport_size({"width": 360, "height": 800})
    page.click("details summary")
    blocks = page.locator("details pre")
    expect(blocks.first).to_be_visible()
    for index in range(blocks.count()):
        pre = blocks.nth(index)
        expect(pre).to_be_visible()
        box = page.evaluate(
            """(pre) => {
                const range = document.createRange();
                range.selectNodeContents(pre);
                const selection = getSelection();
                selection.removeAllRanges();
                selection.addRange(range);
                const rect = pre.getBoundingClientRect();
                return {hidden: pre.scrollWidth - pre.clientWidth, right: rect.right,
                        width: innerWidth, selected: selection.toString(), text: pre.textContent};
            }""",
            pre.element_handle(),
        )
        assert box["hidden"] <= 0, f"part of the command is out of view: {box}"
        assert box["right"] <= box["width"], box
        # soft wraps add no line breaks to what is copied
        assert box["selected"] == box["text"], box
