"""Batch-1 latency of a forecaster, the way DESIGN §7 fixes it: median (and p95) of timed runs
after warm-up, on one real window, in this process."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Latency:
    """median_ms, p95_ms : wall-clock milliseconds per call; macs : backbone MACs of the last call."""

    median_ms: float
    p95_ms: float
    macs: float


def batch1_latency(call: Callable[[], float], *, runs: int = 20, warmup: int = 3) -> Latency:
    """Time ``call`` (one batch-1 forecast returning its executed MACs) ``runs`` times after ``warmup``."""
    for _ in range(warmup):
        call()
    latencies, macs = [], 0.0
    for _ in range(runs):
        started = time.perf_counter()
        macs = call()
        latencies.append((time.perf_counter() - started) * 1e3)
    latencies.sort()
    return Latency(statistics.median(latencies), latencies[min(runs - 1, int(0.95 * runs))], macs)
