"""Small timing helpers shared by the benchmarks (medians, percentiles, rates)."""

from __future__ import annotations

import math
import resource
import statistics
import time
from collections.abc import Callable


def children_cpu() -> float:
    """User + system CPU seconds of the finished child processes (``openssl`` runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def durations(fn: Callable[[], object], seconds: float, *, min_runs: int = 3,
              max_runs: int = 100_000, warmup: int = 1,
              clock: Callable[[], float] = time.process_time) -> list[float]:
    """``clock`` time of each call of ``fn``: at least ``min_runs`` calls, then until ``seconds`` pass.

    The default clock is this process's CPU time: on a machine shared with
    other work, wall time measures the neighbours as much as the code.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < seconds):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return times


def per_call(fn: Callable[[], object], seconds: float, *, batch: int = 100) -> float:
    """Median CPU seconds per call for very cheap calls, timed in batches of ``batch``."""
    batches = durations(lambda: [fn() for _ in range(batch)], seconds, min_runs=5)
    return statistics.median(batches) / batch


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest-rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]
