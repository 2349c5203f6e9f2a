"""Choosing a checkpoint's default operating point on validation (never on test): the most pruned
sd = sw whose validation MSE stays within a tolerance (2 %) of the same model's most accurate point —
its dense path, or a pruned point where that scores better (a model trained over sd, sw ∈ [0.3,
0.9] runs its dense path outside what it was trained for)."""
from __future__ import annotations

import logging
from pathlib import Path

from ..data.windows import ConcatWindows, WindowDataset
from ..model.checkpoint import load_checkpoint, save_checkpoint, split_windows
from ..model.operating_point import TOLERANCE, DefaultPoint
from .runner import Operating, model_forecasts, score

log = logging.getLogger(__name__)

CANDIDATES = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)


def choose_default_point(checkpoint, windows: WindowDataset | ConcatWindows, *,
                         candidates: tuple[float, ...] = CANDIDATES, tolerance: float = TOLERANCE,
                         device: str = "auto") -> DefaultPoint:
    """Score ``windows`` (the validation split) on the dense path and at each candidate sd = sw
    under the dyna policy; the most pruned one within ``tolerance`` of the lowest MSE wins."""
    scores = []
    for sparsity in (0.0, *sorted(candidates)):
        operating = Operating("dyna", sparsity, sparsity, device=device)
        mse = score(windows, model_forecasts(checkpoint, windows, operating), thresholds=(),
                    data_range=windows.normaliser.data_range)["mse_mean"]
        scores.append([sparsity, float(mse)])
        log.info("default point: validation MSE at sd=sw=%.1f: %.4g", sparsity, mse)
    best = min(mse for _, mse in scores)
    chosen = max(s for s, mse in scores if mse <= best * (1.0 + tolerance))
    log.info("default point: sd=sw=%.1f (the most pruned within %+.0f %% of the best point's %.4g; dense path %.4g)",
             chosen, 100 * tolerance, best, scores[0][1])
    return DefaultPoint(chosen, chosen, scores, tolerance)


def choose_for_checkpoint(path: str | Path, *, out: str | Path, data_root: str | Path | None = None,
                          tolerance: float = TOLERANCE, device: str = "auto") -> DefaultPoint:
    """Choose the default point of a saved checkpoint on its data set's validation split (its own
    normalisation) and write the checkpoint with it to ``out`` (atomically; may be ``path``)."""
    checkpoint = load_checkpoint(path)
    checkpoint.default_point = choose_default_point(checkpoint, split_windows(checkpoint, "val", data_root),
                                                    tolerance=tolerance, device=device)
    save_checkpoint(out, checkpoint)
    return checkpoint.default_point
