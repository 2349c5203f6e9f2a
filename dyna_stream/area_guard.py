"""The echo-area guard: a forecast paints at least a share of the last observation's echo area.

A forecast trained for low squared error hedges what it cannot place toward the local mean. Where an
event's echo is pixel-scale speckle (FMI 2017-05-09 at 4 km: a half-pixel shift keeps 46 % of its
≥ 20 dBZ area, docs/results.md), that hedging erases the echo: the bundled model painted 3–8 % of the
observed ≥ 20 dBZ area at +30 min, where forecasters judge by CSI and frequency bias. The guard is
probability matching (pysteps' non-parametric matching of the forecast's ranks to observed values),
made one-sided and partial: a cell is only ever raised, to the smallest value that gives the forecast,
at every intensity x ≥ ``floor``, at least ``ratio`` times the last observation's area ≥ x over the
covered cells. A forecast that already paints that much (smooth echo, as on KNMI and MRMS) is left
as it is; the forecast's ranks (its pattern) are kept.

Cells whose forecasts tie to within float noise may trade observed values when the order of the tie
changes (another engine or device): compare engines on the raw output (``area_guard=False``).
"""
from __future__ import annotations

import numpy as np


def observed_echo(reference: np.ndarray, covered: np.ndarray, floor: float) -> np.ndarray:
    """The reference's covered values at or above ``floor``, highest first (1-D)."""
    values = reference[covered]
    return np.sort(values[values >= floor])[::-1]


def raise_to_echo(values: np.ndarray, echo: np.ndarray, ratio: float) -> np.ndarray:
    """values (N,) of the covered cells, raised in place for the area rule against ``echo`` (from
    :func:`observed_echo`); returns ``values``.

    Only the ``ceil(ratio · A)`` highest values can need raising (A = ``echo.size``), so they are
    found by partition and only they are sorted: the cost follows the echo area, not the grid."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio:g}")
    candidates = min(values.size, int(np.ceil(ratio * echo.size - 1e-9)))
    if candidates == 0:
        return values
    top = np.argpartition(-values, candidates - 1)[:candidates]
    top = top[np.argsort(-values[top], kind="stable")]                       # the forecast's highest, in order
    # the k-th highest forecast cell must reach every value x whose observed area A(x) has
    # ceil(ratio·A) ≥ k, i.e. A ≥ floor((k − 1) / ratio) + 1: the observed value with that many at or above
    needed = echo[np.floor(np.arange(candidates) / ratio).astype(np.int64)]
    values[top] = np.maximum(values[top], needed)
    return values


def guard_field(forecast: np.ndarray, reference: np.ndarray, covered: np.ndarray, *, ratio: float,
                floor: float) -> np.ndarray:
    """One field. forecast, reference (H, W) physical units; covered (H, W) bool: the cells that
    count (both finite there). Returns a copy of ``forecast`` whose covered cells are raised, in the
    forecast's rank order, to the reference's values needed for the area rule (see the module);
    uncovered cells are unchanged."""
    out = forecast.copy()
    out[covered] = raise_to_echo(forecast[covered], observed_echo(reference, covered, floor), ratio)
    return out


def guard_forecast(forecast: np.ndarray, last: np.ndarray, covered: np.ndarray, *, ratio: float,
                   floor: float) -> np.ndarray:
    """forecast (T_out, C, H, W) and the last observed frame ``last`` (C, H, W), physical units;
    covered (H, W) bool. Every lead and channel is guarded against the last observation (see
    :func:`guard_field`); each channel's observed echo is sorted once for all leads."""
    out = forecast.copy()
    for channel in range(forecast.shape[1]):
        echo = observed_echo(last[channel], covered, floor)
        for lead in out:
            lead[channel][covered] = raise_to_echo(lead[channel][covered], echo, ratio)
    return out
