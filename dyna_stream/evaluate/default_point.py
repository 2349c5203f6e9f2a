"""Choosing a checkpoint's default operating point on validation (never on test): the most pruned
sd = sw whose validation MSE stays within a tolerance (2 %) of the same model's most accurate point —
its dense path, or a pruned point where that scores better (a model trained over sd, sw ∈ [0.3,
0.9] runs its dense path outside what it was trained for)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..data.windows import ConcatWindows, WindowDataset, pad_to_multiple
from ..model.checkpoint import load_checkpoint, save_checkpoint, split_windows
from ..model.operating_point import TOLERANCE, DefaultPoint
from .runner import Operating, model_forecasts, score

log = logging.getLogger(__name__)

CANDIDATES = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)


def choose_default_point(checkpoint, windows: WindowDataset | ConcatWindows, *,
                         candidates: tuple[float, ...] = CANDIDATES, tolerance: float = TOLERANCE,
                         device: str = "auto") -> DefaultPoint:
    """Score ``windows`` (the validation split) on the dense path and at each candidate sd = sw
    under the dyna policy; the most pruned one within ``tolerance`` of the lowest MSE wins. The
    threshold data budget's tile threshold is calibrated at that point (:func:`tile_threshold`)."""
    scores, tile_scores = [], {}
    for sparsity in (0.0, *sorted(candidates)):
        operating = Operating("dyna", sparsity, sparsity, device=device)
        forecasts = _tile_scores_of(model_forecasts(checkpoint, windows, operating), checkpoint.model.tile_size,
                                    tile_scores.setdefault(sparsity, []))
        mse = score(windows, forecasts, thresholds=(), data_range=windows.normaliser.data_range)["mse_mean"]
        scores.append([sparsity, float(mse)])
        log.info("default point: validation MSE at sd=sw=%.1f: %.4g", sparsity, mse)
    best = min(mse for _, mse in scores)
    chosen = max(s for s, mse in scores if mse <= best * (1.0 + tolerance))
    threshold = tile_threshold(np.concatenate(tile_scores[chosen]), chosen)
    log.info("default point: sd=sw=%.1f (the most pruned within %+.0f %% of the best point's %.4g; dense path %.4g); "
             "tile threshold %.4g", chosen, 100 * tolerance, best, scores[0][1], threshold)
    return DefaultPoint(chosen, chosen, scores, tolerance, threshold)


def tile_threshold(scores: np.ndarray, sparsity: float) -> float:
    """The tile score over which, pooled over all validation windows, the share 1 − ``sparsity`` of
    the covered tiles lies: the threshold budget then keeps on average about what top-k keeps at
    ``sparsity``, but more tiles in windows with more important content and fewer in calm ones.
    scores : (N,) mean S of every covered tile of every window."""
    if scores.size == 0:
        return 0.5
    return float(np.quantile(scores, sparsity, method="higher")) if sparsity > 0 else 0.0


def _tile_scores_of(forecasts, tile: int, out: list[np.ndarray]):
    """Pass ``forecasts`` through, appending each window's covered tile scores (mean S per tile of
    ``tile`` cells, padded cells counting 0 as in the model) to ``out``."""
    for forecast in forecasts:
        importance = pad_to_multiple(forecast.importance[None], tile, 0.0)[0]
        covered = pad_to_multiple(forecast.coverage[None], tile, False)[0]
        rows, cols = importance.shape[0] // tile, importance.shape[1] // tile
        means = importance.reshape(rows, tile, cols, tile).mean(axis=(1, 3))
        out.append(means[covered.reshape(rows, tile, cols, tile).any(axis=(1, 3))])
        yield forecast


def choose_for_checkpoint(path: str | Path, *, out: str | Path, data_root: str | Path | None = None,
                          tolerance: float = TOLERANCE, device: str = "auto") -> DefaultPoint:
    """Choose the default point of a saved checkpoint on its data set's validation split (its own
    normalisation) and write the checkpoint with it to ``out`` (atomically; may be ``path``)."""
    checkpoint = load_checkpoint(path)
    checkpoint.default_point = choose_default_point(checkpoint, split_windows(checkpoint, "val", data_root),
                                                    tolerance=tolerance, device=device)
    save_checkpoint(out, checkpoint)
    return checkpoint.default_point
