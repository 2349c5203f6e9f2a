"""Source → validation → RingBuffer → forecaster → sinks, transport-agnostic.

Sources call :meth:`Pipeline.submit` from their own threads. Inference runs on the pipeline's
worker thread with latest-window semantics: while a forecast is being computed, newer complete
windows replace the pending one (each replaced window is counted as skipped), so the node never
falls behind on stale data.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import DataError
from .ring_buffer import Push, RingBuffer

log = logging.getLogger(__name__)


@dataclass
class StreamResult:
    """One published forecast.

    seq : pipeline's output counter.  stamp_ns, frame_id : of the newest input frame.
    forecast : (T_out, C, H, W) physical units.  importance : S (H, W) ∈ [0, 1].
    latency_ms : receive of the newest input frame → result ready.  info : operating point, MACs.
    """

    seq: int
    stamp_ns: int
    frame_id: str
    forecast: np.ndarray
    importance: np.ndarray
    units: str
    latency_ms: float
    info: dict[str, Any] = field(default_factory=dict)


class Sink(Protocol):
    def publish(self, result: StreamResult) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Pending:
    """A complete window is waiting; its frames are copied out of the buffer only when the worker
    takes it, so the receive path never copies whole windows."""

    frame_id: str
    received_ns: int


@dataclass
class _Job:
    frames: np.ndarray
    stamps: np.ndarray
    frame_id: str
    received_ns: int


class Pipeline:
    """Owns the buffer, the worker thread and the sinks.

    forecaster : frames (T_in, C, H, W) float32 physical → object with ``forecast`` (T_out, C, H, W),
        ``importance`` (H, W) and ``macs``; e.g. :class:`dyna_stream.predictor.Predictor`.
    """

    def __init__(self, forecaster: Callable[[np.ndarray], Any], buffer: RingBuffer, sinks: list[Sink], *,
                 units: str = "", latency_window: int = 1000) -> None:
        self.forecaster, self.buffer, self.sinks, self.units = forecaster, buffer, sinks, units
        self.counts: Counter[str] = Counter()
        self._latencies: deque[float] = deque(maxlen=latency_window)       # receive → publish, ms
        self._inference_ms: deque[float] = deque(maxlen=latency_window)    # the forecaster's call alone, ms
        self._lock = threading.Condition()
        self._pending: _Pending | None = None
        self._running = False
        self._worker: threading.Thread | None = None
        self._seq = 0

    def start(self) -> Pipeline:
        self._running = True
        self._worker = threading.Thread(target=self._run, name="dyna_stream-inference", daemon=True)
        self._worker.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the forecast in progress, then close the sinks."""
        with self._lock:
            self._running = False
            self._lock.notify_all()
        if self._worker is not None:
            self._worker.join(timeout_s)
        for sink in self.sinks:
            sink.close()

    def count_malformed(self, reason: str) -> None:
        with self._lock:
            self.counts["malformed"] += 1
            self.counts[f"malformed:{reason}"] += 1

    def count_lost(self, frames: int) -> None:
        """Frames a sender numbered but that never arrived (gaps in its ``seq``)."""
        with self._lock:
            self.counts["lost"] += frames

    def submit(self, frame: np.ndarray, stamp_ns: int, frame_id: str = "",
               received_ns: int | None = None) -> Push | None:
        """Take one frame (thread-safe). Returns what the buffer did, or None if it was refused."""
        received_ns = received_ns if received_ns is not None else time.time_ns()
        with self._lock:
            self.counts["received"] += 1
            try:
                outcome = self.buffer.push(frame, stamp_ns)
            except DataError as exc:
                self.counts["rejected"] += 1
                if self.counts["rejected"] in (1, 10, 100) or self.counts["rejected"] % 1000 == 0:
                    log.warning("frame rejected (%d so far): %s", self.counts["rejected"], exc)
                return None
            self.counts[outcome.value] += 1
            if outcome in (Push.DUPLICATE, Push.OUT_OF_ORDER) or not self.buffer.full:
                return outcome
            if self._pending is not None:
                self.counts["windows_skipped"] += 1
            self._pending = _Pending(frame_id, received_ns)
            self._lock.notify()
            return outcome

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._pending is None and self._running:
                    self._lock.wait()
                if self._pending is None:
                    return
                pending, self._pending = self._pending, None
                if not self.buffer.full:          # a gap emptied the window after it was marked
                    continue
                job = _Job(*self.buffer.window(), pending.frame_id, pending.received_ns)
            self._infer(job)

    def _infer(self, job: _Job) -> None:
        started = time.perf_counter()
        try:
            result = self.forecaster(job.frames)
        except Exception:  # a failing forecast must not kill the node; the next window retries
            with self._lock:
                self.counts["inference_errors"] += 1
            log.exception("forecast failed")
            return
        inference_ms = (time.perf_counter() - started) * 1e3
        latency_ms = (time.time_ns() - job.received_ns) / 1e6
        with self._lock:
            self._seq += 1
            self.counts["published"] += 1
            self._latencies.append(latency_ms)
            self._inference_ms.append(inference_ms)
            seq = self._seq
        output = StreamResult(seq, int(job.stamps[-1]), job.frame_id, result.forecast, result.importance,
                              self.units, latency_ms, {"macs": float(getattr(result, "macs", 0.0)),
                                                       **getattr(self.forecaster, "operating_point", {})})
        for sink in self.sinks:
            try:
                sink.publish(output)
            except Exception:
                with self._lock:
                    self.counts["sink_errors"] += 1
                log.exception("sink %s failed", type(sink).__name__)

    def stats(self) -> dict[str, Any]:
        """Counters, receive → publish latency percentiles (ms) and the inference p95 (ms, what a
        latency budget bounds) over the recent window."""
        with self._lock:
            latencies, inference = np.array(self._latencies), np.array(self._inference_ms)
            stats: dict[str, Any] = dict(self.counts)
        if latencies.size:
            stats.update(latency_p50_ms=float(np.percentile(latencies, 50)),
                         latency_p99_ms=float(np.percentile(latencies, 99)),
                         inference_p95_ms=float(np.percentile(inference, 95)))
        return stats
