"""Dynamic sample pruning (ST-Prune, DESIGN §2b): each epoch, train on the informative windows.

Every training window gets a score from its spatio-temporal complexity (computed once) and the
model's latest loss on it (recorded whenever the window is trained on, so it costs nothing).
Windows scoring below the ``prune_quantile`` of scores are "low-score": an epoch keeps all
high-score windows and an exact random share r of the low-score ones, whose losses are weighted
n_low / n_kept (= 1/r) so the epoch's gradient stays unbiased in expectation.

Schedule (stated shape): r stays at ``keep_ratio`` until the last ``anneal_fraction`` of the
epochs, then rises linearly to 1, reached at the last epoch, which trains on the full data.

Strategies (``train.sample_pruning``): ``off`` (full data every epoch), ``st-prune``
(complexity + loss), ``infobatch`` (loss only, the InfoBatch-style baseline), ``static-random``
(one random subset fixed for the whole run, as large as st-prune's mean epoch).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..config import TrainConfig
from ..data.windows import WindowDataset

log = logging.getLogger(__name__)
MIN_WINDOWS = 8          # fewer training windows than this: pruning falls back to full data


@dataclass
class Selection:
    """One epoch's windows: indices (K,) into the dataset and each one's loss weight (K,)."""

    indices: np.ndarray
    weights: np.ndarray

    @property
    def size(self) -> int:
        return len(self.indices)


def window_complexity(data: WindowDataset) -> np.ndarray:
    """(N,) spatio-temporal complexity of each window in [0, 1]: the mean of the rank-normalised
    temporal change energy (mean squared frame-to-frame change) and spatial gradient energy (mean
    squared neighbour difference) over the window's input and target frames, valid cells only.
    Computed from per-frame sums once, O(T·H·W)."""
    values, valid = data.series.values.astype(np.float64), data.series.valid
    length = data.t_in + data.t_out

    def frame_sums(squared: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (squared * mask).reshape(len(squared), -1).sum(1), mask.reshape(len(mask), -1).sum(1)

    def window_means(sums: np.ndarray, counts: np.ndarray, frames: int) -> np.ndarray:
        cumulative = lambda x: np.concatenate([[0.0], np.cumsum(x)])  # noqa: E731
        s, c = cumulative(sums), cumulative(counts)
        starts = np.arange(len(data))
        return (s[starts + frames] - s[starts]) / np.maximum(c[starts + frames] - c[starts], 1.0)

    both = valid[1:] & valid[:-1]
    temporal = window_means(*frame_sums((values[1:] - values[:-1]) ** 2, both), length - 1)
    dy, dx = valid[..., 1:, :] & valid[..., :-1, :], valid[..., :, 1:] & valid[..., :, :-1]
    grad_y = frame_sums(np.diff(values, axis=-2) ** 2, dy)
    grad_x = frame_sums(np.diff(values, axis=-1) ** 2, dx)
    spatial = window_means(grad_y[0] + grad_x[0], grad_y[1] + grad_x[1], length)
    return 0.5 * (rank01(temporal) + rank01(spatial))


def rank01(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1]; ties share their mean rank. O(n log n)."""
    count = len(values)
    if count < 2:
        return np.zeros(count)
    ranks = np.empty(count)
    ranks[np.argsort(values, kind="stable")] = np.arange(count)
    _, tie_group = np.unique(values, return_inverse=True)
    mean_rank = np.bincount(tie_group, weights=ranks) / np.bincount(tie_group)
    return mean_rank[tie_group] / (count - 1)


def keep_schedule(epoch: int, epochs: int, keep_ratio: float, anneal_fraction: float) -> float:
    """r for ``epoch`` (0-based): ``keep_ratio`` until the last ``anneal_fraction`` of training,
    then linear to 1 at the last epoch (progress measured at each epoch's end)."""
    progress = (epoch + 1) / epochs
    start = 1.0 - anneal_fraction
    if progress <= start:
        return keep_ratio
    return keep_ratio + (1.0 - keep_ratio) * min(1.0, (progress - start) / anneal_fraction)


class SamplePruner:
    """Scores windows and picks each epoch's :class:`Selection` (the ``off`` strategy: all)."""

    def __init__(self, data: WindowDataset, config: TrainConfig, epochs: int, generator: torch.Generator) -> None:
        self.n, self.epochs, self.config, self.generator = len(data), epochs, config, generator
        self.losses = np.full(self.n, np.nan)          # latest task loss per window (nan: not yet seen)

    def observe(self, indices: np.ndarray, losses: list[float]) -> None:
        """Record the per-window task losses the optimiser step just computed."""
        self.losses[indices] = losses

    def select(self, epoch: int) -> Selection:
        return Selection(np.arange(self.n), np.ones(self.n, np.float32))

    def _permutation(self, count: int) -> np.ndarray:
        return torch.randperm(count, generator=self.generator).numpy()


class ScoredPruner(SamplePruner):
    """Keep high scores, an exact share r of the low ones (weighted n_low / n_kept)."""

    complexity_weight: float

    def __init__(self, data: WindowDataset, config: TrainConfig, epochs: int, generator: torch.Generator) -> None:
        super().__init__(data, config, epochs, generator)
        self.complexity = window_complexity(data) if self.complexity_weight > 0 else np.zeros(self.n)

    def scores(self) -> np.ndarray:
        """α · complexity rank + (1 − α) · loss rank. A window not trained on yet scores by its
        complexity alone; under loss-only scoring (α = 0) it scores +inf, i.e. it is kept."""
        alpha, seen = self.complexity_weight, np.isfinite(self.losses)
        loss_rank = np.full(self.n, np.nan)
        if seen.any():
            loss_rank[seen] = rank01(self.losses[seen])
        if alpha == 0:
            return np.where(seen, loss_rank, np.inf)
        return np.where(seen, alpha * self.complexity + (1.0 - alpha) * loss_rank, self.complexity)

    def select(self, epoch: int) -> Selection:
        config = self.config
        ratio = keep_schedule(epoch, self.epochs, config.keep_ratio, config.anneal_fraction)
        scores = self.scores()
        finite = np.isfinite(scores)
        threshold = np.quantile(scores[finite], config.prune_quantile) if finite.any() else np.inf
        low = np.flatnonzero(finite & (scores < threshold))
        high = np.setdiff1d(np.arange(self.n), low)
        kept_low = low[self._permutation(len(low))[:round(ratio * len(low))]] if len(low) else low
        weights = np.concatenate([np.ones(len(high)), np.full(len(kept_low), len(low) / max(len(kept_low), 1))])
        return Selection(np.concatenate([high, kept_low]), weights.astype(np.float32))


class STPrune(ScoredPruner):
    def __init__(self, data, config, epochs, generator) -> None:
        self.complexity_weight = config.complexity_weight
        super().__init__(data, config, epochs, generator)


class LossOnly(ScoredPruner):
    """InfoBatch-style: the loss alone decides (the complexity term's ablation)."""

    complexity_weight = 0.0


def mean_kept_fraction(config: TrainConfig, epochs: int) -> float:
    """st-prune's expected share of windows per epoch over the whole schedule."""
    q = config.prune_quantile
    return float(np.mean([(1 - q) + q * keep_schedule(e, epochs, config.keep_ratio, config.anneal_fraction)
                          for e in range(epochs)]))


class StaticRandom(SamplePruner):
    """A random subset drawn once, as large as st-prune's mean epoch; no weights, no annealing."""

    def __init__(self, data, config, epochs, generator) -> None:
        super().__init__(data, config, epochs, generator)
        size = max(1, round(mean_kept_fraction(config, epochs) * self.n))
        self.subset = np.sort(self._permutation(self.n)[:size])

    def select(self, epoch: int) -> Selection:
        return Selection(self.subset, np.ones(len(self.subset), np.float32))


PRUNERS: dict[str, Callable[..., SamplePruner]] = {
    "off": SamplePruner, "st-prune": STPrune, "infobatch": LossOnly, "static-random": StaticRandom}


def make_pruner(data: WindowDataset, config: TrainConfig, epochs: int, generator: torch.Generator) -> SamplePruner:
    """The configured strategy; data sets too small to prune fall back to full data (logged)."""
    strategy = config.sample_pruning
    if strategy != "off" and len(data) < MIN_WINDOWS:
        log.warning("sample pruning %s: only %d training windows (< %d); training on the full data instead",
                    strategy, len(data), MIN_WINDOWS)
        strategy = "off"
    return PRUNERS[strategy](data, config, epochs, generator)
