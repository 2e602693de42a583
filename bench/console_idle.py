"""What the operator's console costs an idle server (issue 19: under 1% of a core).

    .venv/bin/python bench/console_idle.py [--seconds 30] [--rounds 3] [--json FILE]

Two ``bayeux serve`` processes run side by side on 127.0.0.1 with the admin
API: ``off`` without ``--console-path`` and ``on`` with it (the 1 s timer that
keeps the rate history runs there). Each round measures both processes over
two windows of ``--seconds``: one with no console page open, one with the
console open in headless Chromium on ``on`` (signed in, the overview shown,
polling ``GET /admin/stats`` once a second). The order of the two windows
alternates from round to round (closed, open; open, closed; ...) so that a
drift of the machine falls on both. No Bayeux client is connected: the
figure is what the console adds to a server with nothing else to do.

CPU is the server process's ``utime + stime`` from ``/proc/<pid>/stat`` (in
10 ms ticks), divided by the window's wall time: percent of one core. The
page's own requests are counted from Chromium. Reported per window kind:
the median over rounds of each server's CPU %, and for ``on`` the median of
the per-round differences open - closed (what the open page costs) and
closed ``on`` - closed ``off`` (what the history timer costs).

Needs Chromium (``/usr/bin/chromium`` or ``BAYEUX_CHROMIUM``) and Playwright
for Python (the ``test`` extra). Every wait is bounded; loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.browser._support import (  # noqa: E402
    Server,
    launch_chromium,
    running,
    start_server,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser

__all__ = ["main"]

TOKEN = "bench-console-token-0123456789abcdef"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid``, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start(folder: Path, name: str, console: bool) -> Server:
    log_dir = folder / name
    log_dir.mkdir()
    token_file = log_dir / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    args = [
        "--admin-path",
        "/admin",
        "--admin-token-file",
        str(token_file),
        "--log-level",
        "warning",
    ]
    if console:
        args += ["--console-path", "/console"]
    return start_server(log_dir, args)


def measure(servers: dict[str, Server], seconds: float, pump: Any = None) -> dict[str, float]:
    """Each server's CPU % of one core over ``seconds`` of wall time."""
    pids = {name: server.process.pid for name, server in servers.items() if server.process}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    deadline = started + seconds
    # The page runs in Chromium's own processes; this one only has to keep
    # Playwright's event loop turning while the window lasts.
    for _ in range(int(seconds * 10) + 10):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if pump is not None:
            pump(min(left, 0.5))
        else:
            time.sleep(min(left, 0.5))
    wall = time.monotonic() - started
    return {name: 100 * (cpu_seconds(pid) - before[name]) / wall for name, pid in pids.items()}


def open_window(
    browser: Browser, on: Server, servers: dict[str, Server], seconds: float
) -> tuple[dict[str, float], int]:
    """The console open on ``on``, signed in, overview live: CPU % and the page's requests."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(f"{on.origin}/console/")
        page.fill("#token", TOKEN)
        page.press("#token", "Enter")
        page.wait_for_selector("#status[data-state=live]", timeout=15_000)
        page.wait_for_timeout(1500)  # settled: the first polls are done
        requests.clear()
        cpu = measure(servers, seconds, pump=lambda s: page.wait_for_timeout(s * 1000))
        return cpu, len(requests)
    finally:
        context.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each window")
    parser.add_argument("--rounds", type=int, default=3, help="closed/open pairs")
    parser.add_argument("--json", type=Path, help="write the results here too")
    options = parser.parse_args(argv)

    windows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        with (
            running(start(base, "off", console=False)) as off,
            running(start(base, "on", console=True)) as on,
            launch_chromium() as browser,
        ):
            servers = {"off": off, "on": on}
            time.sleep(2)  # start-up work done
            for round_number in range(options.rounds):
                order = ("closed", "open") if round_number % 2 == 0 else ("open", "closed")
                for kind in order:
                    if kind == "closed":
                        cpu = measure(servers, options.seconds)
                        windows.append(
                            {"round": round_number, "page": kind, "cpu": cpu, "requests": 0}
                        )
                        print(f"round {round_number + 1} closed: {fmt(cpu)}", flush=True)
                        continue
                    cpu, calls = open_window(browser, on, servers, options.seconds)
                    windows.append(
                        {"round": round_number, "page": kind, "cpu": cpu, "requests": calls}
                    )
                    print(
                        f"round {round_number + 1} open:   {fmt(cpu)}  "
                        f"({calls / options.seconds:.2f} page requests/s)",
                        flush=True,
                    )

    def median(kind: str, name: str) -> float:
        return float(statistics.median(w["cpu"][name] for w in windows if w["page"] == kind))

    page_cost = statistics.median(
        open_["cpu"]["on"] - closed["cpu"]["on"] for open_, closed in pairs(windows)
    )
    timer_cost = statistics.median(
        w["cpu"]["on"] - w["cpu"]["off"] for w in windows if w["page"] == "closed"
    )
    summary = {
        "seconds": options.seconds,
        "rounds": options.rounds,
        "closed": {"off": median("closed", "off"), "on": median("closed", "on")},
        "open": {"off": median("open", "off"), "on": median("open", "on")},
        "open_minus_closed": page_cost,
        "console_on_minus_off_closed": timer_cost,
        "windows": windows,
    }
    print()
    print(f"{options.rounds} rounds of {options.seconds:g} s windows, no Bayeux clients")
    print("median CPU, % of one core     off      on")
    for kind in ("closed", "open"):
        print(f"  console page {kind:6}    {median(kind, 'off'):6.3f}  {median(kind, 'on'):6.3f}")
    print(f"page open - closed (on), median of rounds: {page_cost:+.3f} % of a core")
    print(f"console on - off, page closed:             {timer_cost:+.3f} % of a core")
    if options.json:
        options.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


def pairs(windows: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(open, closed) windows of the same round."""
    for number in sorted({w["round"] for w in windows}):
        of_round = {w["page"]: w for w in windows if w["round"] == number}
        yield of_round["open"], of_round["closed"]


def fmt(cpu: dict[str, float]) -> str:
    return "  ".join(f"{name} {value:6.3f}%" for name, value in cpu.items())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
