"""The broadcast demo in Chromium: a backend pushes, every open page shows it.

Three senders, as the demo's page lists them: ``curl ... -d 'message=...'``
(the seed's command, run as written), ``bayeux publish``, and Python (the
demo's notify.py over HTTP, and server.publish() inside an embedding server).
"""

from __future__ import annotations

import itertools
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ._support import HOST, REPO_ROOT, Browsers, Server, Tab, expect, free_port, in_ci, running

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
    curl = shutil.which("curl")
    if curl is None:
        if in_ci():
            pytest.fail("curl is missing under CI=true", pytrace=False)
        pytest.skip("curl is not installed")
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
