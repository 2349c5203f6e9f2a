"""The budget controller against a simulated plant (deterministic seeds)."""
import math

import numpy as np
import pytest

from dyna_stream.control.controller import Controller, OperatingPoint

# profiled on this machine: (sd=sw, median ms, power W, validation MSE)
PROFILE = [OperatingPoint(s, s, ms, error, watts) for s, ms, watts, error in
           [(0.0, 30.0, 12.0, 50.0), (0.3, 19.5, 10.0, 50.6), (0.5, 13.0, 8.0, 51.2), (0.7, 9.5, 6.5, 51.0 + 0.9),
            (0.9, 6.3, 5.0, 53.0)]]


def simulate(controller, slowdown, frames, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    chosen, latencies = [], []
    for t in range(frames):
        point = controller.choose()
        latency = point.latency_ms * slowdown(t) * math.exp(rng.normal(0, noise))
        controller.observe(latency, point.power_w * 1.0)
        chosen.append(point)
        latencies.append(latency)
    return chosen, np.array(latencies)


def test_a_step_slowdown_is_absorbed_within_a_few_frames_then_the_budget_holds():
    controller = Controller(PROFILE, latency_budget_ms=25.0)
    step_at, settle = 200, 15
    chosen, latencies = simulate(controller, lambda t: 1.0 if t < step_at else 2.0 + 0.001 * (t - step_at), 600)
    assert chosen[step_at - 1].data_sparsity == 0.3            # before: the most accurate point under 25 ms
    after = latencies[step_at + settle:]
    assert (after <= 25.0).mean() >= 0.95
    assert max(latencies[step_at + settle:step_at + settle + 50]) <= 25.0 * 1.1
    first_ok = next(i for i in range(step_at, 600) if all(latencies[i:i + 20] <= 25.0))
    assert first_ok - step_at <= settle


def test_a_power_cap_is_never_exceeded_by_the_chosen_point():
    controller = Controller(PROFILE, power_cap_w=7.0)
    chosen, _ = simulate(controller, lambda t: 1.0, 200)
    assert all(p.power_w <= 7.0 for p in chosen) and chosen[-1].data_sparsity == 0.7


def test_no_oscillation_under_stationary_load():
    controller = Controller(PROFILE, latency_budget_ms=14.0)   # near the 0.5 point's edge
    chosen, latencies = simulate(controller, lambda t: 1.0, 1000, seed=3)
    switches = sum(a != b for a, b in zip(chosen, chosen[1:]))
    assert switches <= 3 and (latencies[100:] <= 14.0).mean() >= 0.95     # ≤ 0.3 switches / 100 frames


def test_impossible_budgets_run_the_fastest_point_and_say_so(caplog):
    controller = Controller(PROFILE, latency_budget_ms=1.0)
    chosen, _ = simulate(controller, lambda t: 1.0, 20)
    assert all(p.data_sparsity == 0.9 for p in chosen) and "no operating point meets the budget" in caplog.text
    assert caplog.text.count("no operating point") == 1


def test_nan_latencies_are_ignored_and_budgets_change_at_run_time():
    controller = Controller(PROFILE, latency_budget_ms=25.0)
    for bad in (float("nan"), float("inf"), -1.0, 0.0):
        controller.observe(bad)
    assert controller.ignored == 4 and controller.slowdown.mean == 1.0
    assert controller.choose().data_sparsity == 0.5           # cautious until it has seen this machine
    controller.set_budget(latency_ms=None)
    controller.dwell_frames = 0
    assert controller.choose().data_sparsity == 0.0           # no budget: the most accurate point
    with pytest.raises(ValueError):
        Controller([])


def test_bounds_restrict_the_points_and_a_bound_with_no_point_changes_nothing():
    controller = Controller(PROFILE, dwell_frames=0)
    assert controller.choose().data_sparsity == 0.0                  # most accurate point
    controller.set_bounds((0.5, 0.9), (0.5, 0.9))
    assert controller.choose().data_sparsity == 0.5                  # most accurate inside the bounds
    controller.set_bounds((0.7, 0.7), (0.7, 0.7))
    assert {(p.data_sparsity, p.model_sparsity) for p in [controller.choose()]} == {(0.7, 0.7)}
    with pytest.raises(ValueError, match="no profiled operating point"):
        controller.set_bounds((0.75, 0.8), (0.0, 1.0))
    with pytest.raises(ValueError, match="low <= high"):
        controller.set_bounds((0.8, 0.2))
    assert controller.choose().data_sparsity == 0.7                  # unchanged by the refused bounds


def test_an_impossible_budget_inside_bounds_runs_the_fastest_allowed_point():
    controller = Controller(PROFILE, latency_budget_ms=1.0)
    controller.set_bounds((0.0, 0.5), (0.0, 0.5))
    assert controller.choose().data_sparsity == 0.5
