"""Give memory back after a burst of connections has gone.

Two things keep a CPython server's memory high once many clients have left:

* Reference cycles among the departed connections' objects (tasks, cancelled
  scopes, exceptions and their frames) are freed only by the cyclic garbage
  collector, whose oldest generation runs rarely, and an idle server
  allocates too little to trigger it at all.
* Freed memory stays with the allocator. glibc returns pages from the middle
  of its heap only on ``malloc_trim``; jemalloc returns them by itself a few
  seconds later; CPython's own small-object allocator (the default) returns
  an arena only once every object in it is gone.

:class:`ReclaimPolicy` decides, from periodic samples of the number of open
connections, when a burst has ended: the count has fallen by at least
``after`` connections to half its peak or less, and stayed put for one
sample (so that the last closing connections' garbage is there to collect).
Then :func:`reclaim` runs one full collection and ``malloc_trim(0)`` where
glibc has it. docs/deployment.md ("Memory") has the figures.

:func:`tune_gc` is the other half, for the way up: while thousands of clients
connect, CPython's collector walks every live object in a full collection
each time the heap has grown by a quarter, and those walks grow with the
heap (docs/benchmarks.md, "Connection setup").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SERVING_GC_OLDEST", "ReclaimPolicy", "reclaim", "tune_gc"]


@dataclass(slots=True)
class ReclaimPolicy:
    """When to reclaim, from samples of the open connection count.

    Attributes:
        after: the smallest fall from the peak worth a reclaim.
        peak: the highest count since the last reclaim.
        last: the previous sample.
        runs: reclaims decided so far.
    """

    after: int
    peak: int = 0
    last: int = 0
    runs: int = 0

    def sample(self, connections: int) -> bool:
        """Record one sample; True if memory should be reclaimed now."""
        settled = connections == self.last
        self.last = connections
        if connections > self.peak:
            self.peak = connections
            return False
        fell = self.peak - connections
        if settled and fell >= self.after and connections <= self.peak // 2:
            self.peak = connections
            self.runs += 1
            return True
        return False


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on other C libraries."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_malloc_trim = _find_malloc_trim()


def reclaim() -> int:
    """Collect every garbage cycle and trim the C heap; returns objects collected."""
    collected = gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
    return collected


#: collections of the middle generation between two looks at the oldest one
#: (CPython's default is 10): see :func:`tune_gc`
SERVING_GC_OLDEST = 100


def tune_gc() -> int:
    """Garbage collection for a process that serves many long-lived connections.

    Moves everything alive now (modules, the server, its configuration) out of
    the collector's sight (``gc.freeze``), and looks at the oldest generation
    after every 100 collections of the middle one instead of 10. Connecting
    19,000 clients then costs one full collection instead of about ten, each
    walking every connection set up so far (a quarter less server CPU per
    connection set up here). Young garbage is collected as before; cycles
    that outlive two young collections wait longer, and the full collection
    after a burst of departures (:class:`ReclaimPolicy`) still runs.
    ``bayeux serve`` calls this once it serves (``--gc serving``, the
    default); an embedding program may call it after its own start-up.
    Returns how many objects are frozen.
    """
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, SERVING_GC_OLDEST)
    return gc.get_freeze_count()
