"""ALERT-style budget controller (Wan et al., USENIX ATC 2020): pick the operating point (sd, sw)
with the lowest error whose latency meets the budget with high probability and whose power stays
under the cap, tracking how much slower or faster the machine runs than when it was profiled.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatingPoint:
    """A profiled point: sparsities, median latency (ms), power (W, None if unmeasured) and
    validation error (lower is better)."""

    data_sparsity: float
    model_sparsity: float
    latency_ms: float
    error: float
    power_w: float | None = None


class SlowdownFilter:
    """Scalar Kalman filter on the slowdown ξ = measured latency / profiled latency.

    State: mean and variance of ξ (random walk with process noise ``drift``); the measurement noise
    is learned online from the innovations, so ``predictive_std`` covers frame-to-frame jitter. An
    innovation beyond ``jump_sigmas`` predictive deviations is a change of regime (a co-runner
    started or stopped): the state variance is opened up so the estimate follows within a frame or
    two, and the jump is kept out of the noise estimate.
    """

    def __init__(self, *, drift: float = 1e-3, initial_noise: float = 0.05**2, noise_memory: float = 0.05,
                 jump_sigmas: float = 4.0) -> None:
        self.mean, self.variance = 1.0, 0.1**2     # the profile was taken on this machine: trust it, loosely
        self.drift, self.noise, self.memory, self.jump_sigmas = drift, initial_noise, noise_memory, jump_sigmas

    def update(self, slowdown: float) -> None:
        self.variance += self.drift
        innovation = slowdown - self.mean
        if abs(innovation) > self.jump_sigmas * self.predictive_std:
            self.variance += innovation**2
        else:
            self.noise = (1 - self.memory) * self.noise + self.memory * max(innovation**2 - self.variance, 1e-6)
        gain = self.variance / (self.variance + self.noise)
        self.mean += gain * innovation
        self.variance *= 1 - gain

    @property
    def predictive_std(self) -> float:
        return math.sqrt(self.variance + self.noise)


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


class Controller:
    """Chooses an operating point per frame.

    latency_budget_ms : target for the ``confidence`` quantile of latency (e.g. p95); None: none.
    power_cap_w : predicted power must stay at or below it; None: none (or no meter).
    dwell_frames : minimum frames between voluntary switches (a point that became infeasible is
        left at once). hysteresis : a point is entered only if it meets the budget shrunk by this
        fraction, and kept while it meets the full budget, so a point at the edge does not flap.
    """

    def __init__(self, points: list[OperatingPoint], *, latency_budget_ms: float | None = None,
                 power_cap_w: float | None = None, confidence: float = 0.95, dwell_frames: int = 10,
                 hysteresis: float = 0.1) -> None:
        if not points:
            raise ValueError("the controller needs at least one profiled operating point")
        self.points = sorted(points, key=lambda p: p.error)
        self.latency_budget_ms, self.power_cap_w = latency_budget_ms, power_cap_w
        self.confidence, self.dwell_frames, self.hysteresis = confidence, dwell_frames, hysteresis
        self.slowdown = SlowdownFilter()
        self.power_ratio = 1.0
        self.allowed = self.points
        self.current = self.points[0]
        self.frames_since_switch = 0
        self.switches = 0
        self.ignored = 0
        self._infeasible_said = False

    def set_budget(self, *, latency_ms: float | None = None, power_w: float | None = None) -> None:
        """Change the budgets at run time (None lifts a budget)."""
        self.latency_budget_ms, self.power_cap_w = latency_ms, power_w
        self._infeasible_said = False

    def set_bounds(self, data: tuple[float, float] = (0.0, 1.0), model: tuple[float, float] = (0.0, 1.0)) -> None:
        """Restrict the points to sd ∈ [data] and sw ∈ [model] (inclusive). Raises ValueError and
        changes nothing when no profiled point lies inside."""
        self.allowed = self.points_within(data, model)
        self._infeasible_said = False

    def points_within(self, data: tuple[float, float], model: tuple[float, float]) -> list[OperatingPoint]:
        """The profiled points with sd ∈ [data] and sw ∈ [model]; ValueError (with the reason)
        for bounds out of order or with no point inside."""
        for name, (low, high) in (("data", data), ("model", model)):
            if not 0.0 <= low <= high <= 1.0:
                raise ValueError(f"{name} sparsity bounds must satisfy 0 <= low <= high <= 1, got ({low}, {high})")
        eps = 1e-9
        allowed = [p for p in self.points if data[0] - eps <= p.data_sparsity <= data[1] + eps
                   and model[0] - eps <= p.model_sparsity <= model[1] + eps]
        if not allowed:
            raise ValueError(f"no profiled operating point has sd in {data} and sw in {model}; profiled: "
                             f"{sorted({(p.data_sparsity, p.model_sparsity) for p in self.points})}")
        return allowed

    def meets_latency(self, point: OperatingPoint, slack: float = 1.0) -> bool:
        """P(latency ≤ slack · budget) ≥ confidence under the filtered slowdown."""
        if self.latency_budget_ms is None:
            return True
        z = (slack * self.latency_budget_ms / point.latency_ms - self.slowdown.mean) / self.slowdown.predictive_std
        return _normal_cdf(z) >= self.confidence

    def predicted_power(self, point: OperatingPoint) -> float | None:
        return None if point.power_w is None else point.power_w * self.power_ratio

    def meets_power(self, point: OperatingPoint) -> bool:
        power = self.predicted_power(point)
        return self.power_cap_w is None or power is None or power <= self.power_cap_w

    def feasible(self) -> list[OperatingPoint]:
        """Points that may be entered now (budget shrunk by the hysteresis), most accurate first."""
        return [p for p in self.allowed if self.meets_latency(p, 1.0 - self.hysteresis) and self.meets_power(p)]

    def choose(self) -> OperatingPoint:
        """The point for the next frame."""
        feasible = self.feasible()
        if not feasible:
            fastest = min(self.allowed, key=lambda p: p.latency_ms)
            if not self._infeasible_said:
                log.warning("no operating point meets the budget (latency %s ms, power %s W); running the fastest",
                            self.latency_budget_ms, self.power_cap_w)
                self._infeasible_said = True
            return self._switch(fastest)
        best = feasible[0]
        current = self.current
        if current not in self.allowed or not (self.meets_latency(current) and self.meets_power(current)):
            return self._switch(best)                                   # safety first, no dwell
        if best.error < self.current.error and self.frames_since_switch >= self.dwell_frames:
            return self._switch(best)
        self.frames_since_switch += 1
        return self.current

    def _switch(self, point: OperatingPoint) -> OperatingPoint:
        if point != self.current:
            self.current, self.frames_since_switch = point, 0
            self.switches += 1
        else:
            self.frames_since_switch += 1
        return point

    def observe(self, latency_ms: float, power_w: float | None = None, point: OperatingPoint | None = None) -> None:
        """Feed one frame's measured latency (and power) at ``point`` (default: the current one)."""
        point = point or self.current
        if not (latency_ms > 0 and math.isfinite(latency_ms)):
            self.ignored += 1
            return
        self.slowdown.update(latency_ms / point.latency_ms)
        if power_w is not None and point.power_w and math.isfinite(power_w):
            self.power_ratio = 0.9 * self.power_ratio + 0.1 * power_w / point.power_w
