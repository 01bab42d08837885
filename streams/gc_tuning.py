"""CPython's cyclic garbage collector, set for a worker that churns short-lived containers.

Almost everything the hot path allocates (records, dicts, dataclasses) is freed by reference
counting the moment it is dropped; the cyclic collector finds next to nothing. With CPython's
default thresholds (700, 10, 10) it still ran constantly, and every full collection walked all
long-lived objects again (Faust, aiokafka, modules, metrics). Measured over one benchmark
worker's life (start, warm-up and a 150,000-event drain of 16-18 s; 2 cores): 26 full collections
of about 80 ms each plus about 3,800 younger ones, some 3 s, all holding the interpreter lock;
each full collection also an 80 ms pause in the middle of the p99 latency budget.

So a worker:
- raises the thresholds (`Settings.gc_thresholds`): a young collection every 50,000 net
  allocations instead of 700, full ones far more rarely;
- freezes what it holds once it has started (`gc.freeze`): those objects move to a permanent
  generation that no collection walks again;
- reports each collection's pause (`stockstream_gc_pause_seconds`), so an SRE sees whether GC
  shows up in latency at peak.
Cycles are still collected, only later: a leak of cyclic garbage would show as the process's RSS
growing (not among the worker's own metrics; watch the container's memory).
"""

from __future__ import annotations

import gc
import logging
from time import perf_counter

from streams import metrics

log = logging.getLogger(__name__)


_collection_started = 0.0


def _observe(phase: str, info: dict) -> None:
    global _collection_started
    if phase == "start":
        _collection_started = perf_counter()
    else:
        metrics.GC_PAUSE.labels(str(info["generation"])).observe(perf_counter() - _collection_started)


def configure(thresholds: tuple[int, int, int]) -> None:
    gc.set_threshold(*thresholds)
    if _observe not in gc.callbacks:
        gc.callbacks.append(_observe)


def freeze_startup() -> int:
    """Everything alive now (the started worker) goes to the permanent generation. Returns how
    many objects that is. Collects first so that startup garbage is not kept for good."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("gc: %d startup objects frozen, thresholds %s", frozen, gc.get_threshold())
    return frozen
