"""Post-training BatchNorm calibration per model-sparsity level (``dyna-stream calibrate``).

For each sw level the backbone's BatchNorm statistics are re-estimated on training windows (the
model frozen, the statistics gathered as in training: active elements only, cumulative average
over one pass per data sparsity), then kept for that level only where they lower the validation
MSE against the training statistics (the check runs at the validation sd). The result is a
:class:`~dyna_stream.model.norm.NormLevels` that inference switches between with sw.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..data.windows import ConcatWindows, WindowDataset, stacked_batches
from ..model.checkpoint import load_checkpoint, save_checkpoint, split_windows
from ..model.dynapruner import DynaPruner
from ..model.norm import NormLevels, read_statistics, write_statistics

log = logging.getLogger(__name__)

LEVELS = tuple(round(0.1 * i, 1) for i in range(10))       # sw = 0, 0.1, …, 0.9
DATA_SPARSITIES = (0.3, 0.6, 0.9)


def _subset(size: int, count: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).permutation(size)[:count])


def _batches(data: WindowDataset | ConcatWindows, indices: np.ndarray, batch_size: int,
             device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    for batch in stacked_batches((data[int(i)] for i in indices), batch_size):
        yield {key: value.to(device) for key, value in batch.items()}


@torch.no_grad()
def _validation_mse(model: DynaPruner, batches: list[dict], data_sparsity: float, model_sparsity: float) -> float:
    """MSE over the valid cells, normalised units, at (sd, sw)."""
    squared, cells = 0.0, 0.0
    for batch in batches:
        forecast = model(batch["frames"], batch["fallback"], coverage=batch["coverage"], data_sparsity=data_sparsity,
                         model_sparsity=model_sparsity).forecast
        valid = batch["valid"].expand_as(forecast)
        squared += float(((forecast - batch["target"]).square() * valid).sum())
        cells += float(valid.sum())
    return squared / max(cells, 1.0)


@torch.no_grad()
def _estimate(model: DynaPruner, batches: list[dict], model_sparsity: float,
              data_sparsities: tuple[float, ...]) -> torch.Tensor:
    """Fresh statistics (2, C_total) at ``model_sparsity``: cumulative averages over the batches at
    each data sparsity, the backbone in training mode (its BatchNorms gather, nothing else learns)."""
    norms = model.batchnorms()
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.backbone.train()
    try:
        for data_sparsity in data_sparsities:
            for batch in batches:
                model(batch["frames"], batch["fallback"], coverage=batch["coverage"], data_sparsity=data_sparsity,
                      model_sparsity=model_sparsity)
    finally:
        model.eval()
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
    return read_statistics(norms).clone()


def calibrate_norm_levels(model: DynaPruner, train: WindowDataset | ConcatWindows,
                          val: WindowDataset | ConcatWindows, *,
                          levels: tuple[float, ...] = LEVELS, data_sparsities: tuple[float, ...] = DATA_SPARSITIES,
                          validation_sparsity: float = 0.7, windows: int = 32, batch_size: int = 8,
                          seed: int = 0) -> list[dict]:
    """Calibrate ``model`` in place (its ``norm_levels`` are set); returns one row per level:
    model_sparsity, val_mse_trained, val_mse_calibrated (normalised units²) and kept.

    ``windows`` training and validation windows (a seeded subset of each split) are used.
    """
    if not levels or any(not 0.0 <= level < 1.0 for level in levels):
        raise ValueError(f"levels must be sparsities in [0, 1), got {levels}")
    model.eval()
    model.set_norm_levels(None)
    norms = model.batchnorms()
    trained, counts = read_statistics(norms).clone(), [norm.num_batches_tracked.clone() for norm in norms]
    device = next(model.parameters()).device
    train_batches = list(_batches(train, _subset(len(train), windows, seed), batch_size, device))
    val_batches = list(_batches(val, _subset(len(val), windows, seed + 1), batch_size, device))
    stats, rows = [], []
    for level in sorted(levels):
        write_statistics(norms, trained)
        before = _validation_mse(model, val_batches, validation_sparsity, level)
        calibrated = _estimate(model, train_batches, level, data_sparsities)
        after = _validation_mse(model, val_batches, validation_sparsity, level)
        kept = after < before
        stats.append(calibrated if kept else trained)
        rows.append({"model_sparsity": level, "val_mse_trained": before, "val_mse_calibrated": after, "kept": kept})
        log.info("norm level sw=%.2f: validation MSE %.4f with the training statistics, %.4f calibrated (%s)",
                 level, before, after, "kept" if kept else "not kept")
    write_statistics(norms, trained)          # the state dict keeps exactly the training statistics
    for norm, count in zip(norms, counts):
        norm.num_batches_tracked.copy_(count)
    model.set_norm_levels(NormLevels(torch.tensor(sorted(levels)), torch.stack(stats).cpu()))
    return rows


def calibrate_checkpoint(path: str | Path, *, out: str | Path, data_root: str | Path | None = None,
                         **options) -> list[dict]:
    """Calibrate a saved checkpoint on its data set's train and validation splits (with the
    checkpoint's own normalisation) and write it to ``out``; returns the rows of
    :func:`calibrate_norm_levels`."""
    checkpoint = load_checkpoint(path)
    options.setdefault("validation_sparsity", checkpoint.config.train.validation_sparsity)
    rows = calibrate_norm_levels(checkpoint.model, split_windows(checkpoint, "train", data_root),
                                 split_windows(checkpoint, "val", data_root), **options)
    checkpoint.metrics["norm_calibration"] = rows
    save_checkpoint(out, checkpoint)
    return rows
