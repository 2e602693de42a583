"""Plots of a ``bench/server_bench.py --json`` result file (matplotlib, PNG).

From the sweeps ``p1`` (WebSocket fan-out at several subscriber counts) and
``p2`` (10,000 deliveries/s offered to several subscriber counts) it draws:

* ``fanout.png``: deliveries/s and deliveries per server CPU-second against
  the subscriber count, ours and Faye's;
* ``latency.png``: latency p50 and p99, and server CPU %, against the
  subscriber count at a fixed 10,000 deliveries/s.

Usage: ``python bench/plot_server_bench.py RESULTS.json OUT_DIR``. Needs the
``bench`` extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SERVERS = (("ours", "bayeux-trio", "tab:blue"), ("faye", "Faye 1.4.3", "tab:orange"))


def _points(data: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    found = [s for s in data["scenarios"] if s["id"].startswith(prefix) and s["point"]]
    return sorted(found, key=lambda s: int(s["point"]))


def _series(points: list[dict[str, Any]], server: str, key: str) -> tuple[list[int], list[float]]:
    xs: list[int] = []
    ys: list[float] = []
    for point in points:
        value = point["medians"][server].get(key)
        if value is not None:
            xs.append(int(point["point"]))
            ys.append(float(value))
    return xs, ys


def _panel(
    axis: Any, points: list[dict[str, Any]], key: str, title: str, styles: Sequence[str] = ("-",)
) -> None:
    for server, label, color in SERVERS:
        for style in styles:
            xs, ys = _series(points, server, key)
            axis.plot(xs, ys, style, marker="o", color=color, label=label)
    axis.set_xscale("log")
    axis.set_xlabel("subscribers")
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()


def plot(data: dict[str, Any], out: Path) -> list[Path]:
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    when = data["machine"]["date"]

    fanout = _points(data, "p1-")
    if fanout:
        figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        _panel(axes[0], fanout, "deliveries_per_s", "WebSocket fan-out: deliveries/s")
        _panel(axes[1], fanout, "deliveries_per_cpu_s", "deliveries per server CPU-second")
        axes[1].set_yscale("log")
        figure.suptitle(f"One publisher, 100,000 deliveries per run ({when})")
        figure.tight_layout()
        path = out / "fanout.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)

    latency = _points(data, "p2-")
    if latency:
        figure, axes = plt.subplots(1, 3, figsize=(14, 4.2))
        _panel(axes[0], latency, "p50_ms", "latency p50 (ms)")
        _panel(axes[1], latency, "p99_ms", "latency p99 (ms)")
        _panel(axes[2], latency, "server_cpu_percent", "server CPU %")
        for axis in axes[:2]:
            axis.set_yscale("log")
        figure.suptitle(f"10,000 deliveries/s offered, WebSocket ({when})")
        figure.tight_layout()
        path = out / "latency.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        print("matplotlib is missing: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    data = json.loads(Path(args[0]).read_text())
    for path in plot(data, Path(args[1])):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
