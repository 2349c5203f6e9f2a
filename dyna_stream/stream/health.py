"""A node's health over an interval: rates, drops, latency and operating point as named values,
with a level. The ZeroMQ node logs it; the ROS 2 node publishes it on /diagnostics."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

# pipeline counters that mean a frame or a window was not forecast
DROP_COUNTERS = ("rejected", "malformed", "duplicate", "out_of_order", "windows_skipped", "inference_errors",
                 "sink_errors", "inactive", "lost")


class Level(IntEnum):
    """Same numbering as diagnostic_msgs/DiagnosticStatus."""

    OK = 0
    WARN = 1
    ERROR = 2


@dataclass
class Health:
    level: Level
    message: str
    values: dict[str, Any] = field(default_factory=dict)

    def strings(self) -> dict[str, str]:
        """Values as text (DiagnosticStatus KeyValue), floats with 3 significant decimals."""
        return {key: ("" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value))
                for key, value in self.values.items()}


def summarise(now: dict[str, Any], before: dict[str, Any], interval_s: float, point: dict[str, Any],
              latency_budget_ms: float | None = None) -> Health:
    """``now``/``before``: :meth:`Pipeline.stats` at the end/start of the interval; ``point``: the
    forecaster's operating point. ERROR when a forecast failed in the interval, WARN when no frame
    arrived or when the inference p95 exceeds the latency budget (the quantity the budget bounds;
    the receive → publish percentiles add queueing and transport and are reported beside it)."""
    delta = {key: now.get(key, 0) - before.get(key, 0) for key in ("received", "published", *DROP_COUNTERS)}
    values: dict[str, Any] = {
        "frames_per_s": delta["received"] / interval_s, "forecasts_per_s": delta["published"] / interval_s,
        "latency_p50_ms": now.get("latency_p50_ms", math.nan), "latency_p99_ms": now.get("latency_p99_ms", math.nan),
        "inference_p95_ms": now.get("inference_p95_ms", math.nan),
        **{f"{key}_total": now.get(key, 0) for key in ("received", "published", *DROP_COUNTERS)},
        **{key: point.get(key) for key in ("data_sparsity", "model_sparsity", "inference_ms", "power_w",
                                           "latency_budget_ms", "power_cap_w", "switches") if key in point},
    }
    if delta["inference_errors"]:
        return Health(Level.ERROR, f"{delta['inference_errors']} forecasts failed", values)
    if delta["received"] == 0:
        return Health(Level.WARN, "no input frames", values)
    p95 = values["inference_p95_ms"]
    if latency_budget_ms and p95 > latency_budget_ms:
        return Health(Level.WARN, f"inference p95 {p95:.1f} ms over the {latency_budget_ms:.1f} ms budget", values)
    dropped = sum(delta[key] for key in DROP_COUNTERS)
    return Health(Level.OK, f"{values['forecasts_per_s']:.2f} forecasts/s, {dropped} dropped", values)
