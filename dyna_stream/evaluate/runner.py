"""Run a model or a classical forecast over every window of a data set and score it."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..data.seasonal import SEASONAL
from ..data.windows import ConcatWindows, WindowDataset, pad_to_multiple
from ..errors import DataError
from ..extrapolation import get_extrapolator
from ..model.checkpoint import Checkpoint
from ..predictor import Predictor
from .metrics import ForecastScores


@dataclass(frozen=True)
class Operating:
    """How a model runs: mask policy, sparsities (data sd, model sw), execution engine and device
    (see :class:`~dyna_stream.predictor.Predictor`); for robustness tests, Gaussian noise σ added
    to the normalised inputs (frames and fallback) and the share of kept tiles flipped to pruned;
    ``data_budget`` "topk" or "threshold" (tiles over the checkpoint's S threshold, capped at sd);
    ``area_guard`` False: the model's output without the checkpoint's echo-area guard."""

    policy: str = "dense"
    data_sparsity: float = 0.0
    model_sparsity: float = 0.0
    engine: str = "auto"
    device: str = "auto"
    input_noise: float = 0.0
    mask_failure: float = 0.0
    data_budget: str = "topk"
    area_guard: bool = True


@dataclass
class WindowForecast:
    """forecast (T_out, C, H, W) physical; importance S (H, W) ∈ [0, 1] and kept_tiles (H, W) {0, 1}
    for models (None otherwise); backbone MACs for this window."""

    index: int
    forecast: np.ndarray
    importance: np.ndarray | None = None
    kept_tiles: np.ndarray | None = None
    macs: float = 0.0
    tiles: tuple[int, int] = (0, 0)       # (kept tiles holding no covered cell, kept tiles)
    coverage: np.ndarray | None = None    # (H, W) bool: cells with a measurement, for models


def kept_tiles_outside(kept: np.ndarray, coverage: np.ndarray, tile: int) -> tuple[int, int]:
    """kept (H, W) {0, 1} at cell resolution, coverage (H, W) bool → (kept tiles without a single
    covered cell, kept tiles) on the model's ``tile`` grid."""
    kept_tiles, covered_tiles = (pad_to_multiple(a[None], tile, False)[0].reshape(
        -(-a.shape[0] // tile), tile, -(-a.shape[1] // tile), tile).any(axis=(1, 3)) for a in (kept > 0, coverage))
    return int((kept_tiles & ~covered_tiles).sum()), int(kept_tiles.sum())


def model_forecasts(checkpoint: Checkpoint, windows: WindowDataset | ConcatWindows, operating: Operating, *,
                    indices: Iterable[int] | None = None, seed: int = 0) -> Iterator[WindowForecast]:
    """Batch-1 forecasts of the windows (default: all), cropped back to the data grid, physical units."""
    predictor = Predictor(checkpoint, data_sparsity=operating.data_sparsity,
                          model_sparsity=operating.model_sparsity, policy=operating.policy,
                          engine=operating.engine, device=operating.device, mask_failure=operating.mask_failure,
                          data_budget=operating.data_budget, area_guard=operating.area_guard)
    torch.manual_seed(seed)  # the random policy and the mask failures draw reproducibly
    noise = torch.Generator().manual_seed(seed)
    for index in range(len(windows)) if indices is None else indices:
        item = windows[index]
        frames, fallback = item["frames"], item["fallback"]
        if operating.input_noise > 0:
            frames = frames + operating.input_noise * torch.randn(frames.shape, generator=noise)
            fallback = fallback + operating.input_noise * torch.randn(fallback.shape, generator=noise)
        result = predictor.run_normalised(frames, fallback, windows.size(index), item["coverage"])
        tiles = kept_tiles_outside(result.kept_tiles, result.coverage, checkpoint.model.tile_size)
        yield WindowForecast(index, result.forecast, result.importance, result.kept_tiles, result.macs, tiles,
                             result.coverage)


def extrapolation_forecasts(windows: WindowDataset | ConcatWindows, name: str) -> Iterator[WindowForecast]:
    """Persistence or advection forecasts of every window (no model, no MACs counted)."""
    extrapolate = get_extrapolator(name)
    for index in range(len(windows)):
        window = windows.physical(index)
        yield WindowForecast(index, extrapolate(window["frames"], windows.t_out, windows.fill_value))


def seasonal_forecasts(windows: WindowDataset | ConcatWindows, period: str) -> Iterator[WindowForecast]:
    """The seasonal copy: each target's frame one ``period`` (a name of the windows' periods) before."""
    names = [name for name, _ in windows.periods]
    if period not in names:
        raise DataError(f"no period {period!r} in this data set (it has {names or 'none'})")
    row = names.index(period)
    for index in range(len(windows)):
        yield WindowForecast(index, windows.physical(index)["seasonal"][row])


def baseline_forecasts(windows: WindowDataset | ConcatWindows, method: str) -> Iterator[WindowForecast]:
    """A classical forecast of every window: an extrapolation ("persistence", "advection") or a
    seasonal copy ("seasonal:day", "seasonal:week")."""
    if method.startswith(SEASONAL):
        return seasonal_forecasts(windows, method.removeprefix(SEASONAL))
    return extrapolation_forecasts(windows, method)


def score(windows: WindowDataset | ConcatWindows, forecasts: Iterator[WindowForecast], *, thresholds: tuple[float, ...],
          data_range: float, on_window: Callable[[WindowForecast], None] | None = None) -> dict:
    """Scores of a forecast stream against the windows' truth, plus mean MACs per window and, for
    forecasts with a data mask and data sets with event thresholds, ``kept_event_share``: the share
    of event cells (valid truth ≥ the first threshold, all leads) inside the kept tiles — how much of
    the weather the model was allowed to correct (near 0: the mask keeps calm regions), and
    ``kept_outside_coverage``: the share of kept tiles that hold no covered cell (should be 0)."""
    scores = ForecastScores(windows.t_out, thresholds, data_range)
    macs, events, tiles = [], np.zeros(2), np.zeros(2)   # events: cells inside kept tiles, all cells
    for item in forecasts:
        truth = windows.physical(item.index)
        scores.update(item.forecast, truth["target"], truth["valid"])
        macs.append(item.macs)
        tiles += item.tiles
        if item.kept_tiles is not None and thresholds:
            event = (truth["target"] >= thresholds[0]) & truth["valid"]
            events += ((event * item.kept_tiles).sum(), event.sum())
        if on_window is not None:
            on_window(item)
    result = scores.result()
    result["macs"] = float(np.mean(macs)) if macs else 0.0
    if events[1] > 0:
        result["kept_event_share"] = float(events[0] / events[1])
    if tiles[1] > 0:
        result["kept_outside_coverage"] = float(tiles[0] / tiles[1])
    return result
