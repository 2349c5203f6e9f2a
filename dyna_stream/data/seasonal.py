"""Seasonal history for periodic data (ST-ResNet's *period* and *trend*): the frames one period (a
day, a week) before each target, read as model inputs and as baseline forecasts.

A data set declares its periods in frames (taxi: a day = 48, a week = 336 half-hours; ERA5: a day =
24 hours). Window splits after the first carry the last ``max(period)`` frames of the splits before
them as history (:attr:`Series.context_frames`): inputs only, so the windows and targets of a split
stay what they were, while a test window's seasonal frames may lie before the test split starts —
as they would for a forecaster running live.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import DataError
from ..extrapolation import get_extrapolator
from .series import Series

Periods = tuple[tuple[str, int], ...]      # (name, frames): (("day", 48), ("week", 336))
SEASONAL = "seasonal:"      # a forecast "seasonal:<period>": the frames one period before each target


def longest(periods: Periods) -> int:
    """The longest period in frames (0: none)."""
    return max((frames for _, frames in periods), default=0)


def with_history(series: Series, earlier: list[Series], frames: int) -> Series:
    """``series`` with the last ``frames`` frames of ``earlier`` (the splits before it, in time
    order) prepended as history. The frames must continue without a gap (same step)."""
    if frames <= 0 or not earlier:
        return series
    before = np.concatenate([s.values for s in earlier])[-frames:]
    before_valid = np.concatenate([s.valid for s in earlier])[-frames:]
    before_times = np.concatenate([s.times for s in earlier])[-frames:]
    steps = np.diff(np.concatenate([before_times[-2:], series.times[:2]]))
    if len(set(steps.tolist())) > 1:
        raise DataError(f"{series.name}: the history before the split does not continue it without a gap "
                        f"({before_times[-1]} → {series.times[0]}); seasonal inputs need contiguous frames")
    return replace(series, values=np.concatenate([before, series.values]),
                   valid=np.concatenate([before_valid, series.valid]),
                   times=np.concatenate([before_times, series.times]), context_frames=len(before))


def seasonal_indices(first_target: int, t_out: int, periods: Periods) -> np.ndarray:
    """Frame indices (P, T_out) one period before each of the ``t_out`` targets starting at frame
    ``first_target``, one row per period."""
    return np.array([[first_target + lead - frames for lead in range(t_out)] for _, frames in periods])


def seasonal_frames(values: np.ndarray, first_target: int, t_out: int, periods: Periods) -> np.ndarray:
    """(P, T_out, C, H, W): the frames of ``values`` (T, C, H, W) one period before each target;
    every index must lie in ``values``."""
    index = seasonal_indices(first_target, t_out, periods)
    if index.size and (index.min() < 0 or index.max() >= len(values)):
        raise DataError(f"seasonal frames {index.min()}…{index.max()} lie outside the {len(values)} frames given")
    return values[index]


def seasonal_copy(values: np.ndarray, first_target: int, t_out: int, periods: Periods, name: str) -> np.ndarray:
    """(T_out, C, H, W): the frames one period ``name`` (e.g. "week") before each target."""
    names = [period for period, _ in periods]
    if name not in names:
        raise DataError(f"no period {name!r} in this data set (it has {names or 'none'})")
    return seasonal_frames(values, first_target, t_out, periods[names.index(name):names.index(name) + 1])[0]


def starting_forecast(name: str, history: np.ndarray, *, t_in: int, t_out: int, fill_value: float,
                      periods: Periods = ()) -> np.ndarray:
    """The forecast (T_out, C, H, W) a window's pruned tiles start from, for the window whose last
    input is ``history[-1]`` (``history`` (T, C, H, W), the latest frames last): an extrapolation
    of the T_in recent frames ("persistence", "advection") or a seasonal copy ("seasonal:week")."""
    if name.startswith(SEASONAL):
        return seasonal_copy(history, len(history), t_out, periods, name.removeprefix(SEASONAL))
    return get_extrapolator(name)(history[len(history) - t_in:], t_out, fill_value)
