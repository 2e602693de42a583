"""The server's one wall-clock reading.

Everything else in bayeux_trio runs on trio's monotonic clock, which cannot
jump. Timesync (CometD's extension) is the exception: it tells clients the
server's wall-clock time, so that is read here, and only here.
"""

from __future__ import annotations

import time

__all__ = ["wall_clock_ms"]


def wall_clock_ms() -> float:
    """Milliseconds since the Unix epoch, for timesync answers."""
    return time.time() * 1000.0
