"""Cyclic-collector settings for a process that serves or moves data for a long time.

A batch read of 1000 records, or a page of a bulk job, makes tens of thousands of
short-lived objects. At the interpreter's defaults the youngest generation is collected
dozens of times per request, and each full collection walks every object the process
holds, most of them made at start-up and alive until it stops (the runtime, the app, the
policy engine). Measured in bench/batch_read.py, the collector took about a tenth of a
batch read's time.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 20_000
"""Allocations between collections of the youngest generation (the default is 700)."""


@contextmanager
def long_lived_heap() -> Iterator[None]:
    """While the block runs, what is alive on entry is frozen out of the collector, and
    the youngest generation is collected less often. Both are undone on exit, so a
    process that runs many blocks (the tests start many apps) keeps none of their
    garbage frozen."""
    thresholds = gc.get_threshold()
    gc.collect()  # garbage frozen now would be kept until the block ends
    gc.freeze()
    gc.set_threshold(max(YOUNG_THRESHOLD, thresholds[0]), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
