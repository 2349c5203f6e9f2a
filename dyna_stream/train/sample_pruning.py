"""Dynamic sample pruning (ST-Prune, DESIGN §2b): each epoch, train on the informative windows.

Every training sample (a window, or with ``train.sample_unit: patch`` one fixed patch of a
window, :mod:`dyna_stream.data.patches`) gets a score from its spatio-temporal complexity
(computed once) and the model's latest loss on it (recorded whenever the sample is trained on, so
it costs nothing). Samples ("windows" below) scoring below the ``prune_quantile`` of scores are
"low-score": an epoch keeps all high-score windows and an exact random share r of the low-score
ones, whose losses are weighted n_low / n_kept (= 1/r) so the epoch's gradient stays unbiased in
expectation.

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
from ..data.patches import ConcatPatches, PatchWindows, regions
from ..data.windows import ConcatWindows, WindowDataset

log = logging.getLogger(__name__)
MIN_WINDOWS = 8          # fewer training samples than this: pruning falls back to full data
Samples = WindowDataset | ConcatWindows | PatchWindows | ConcatPatches   # windows, or patches of windows


@dataclass
class Selection:
    """One epoch's windows: indices (K,) into the dataset and each one's loss weight (K,)."""

    indices: np.ndarray
    weights: np.ndarray

    @property
    def size(self) -> int:
        return len(self.indices)


def sample_complexity(samples: Samples) -> np.ndarray:
    """(N,) spatio-temporal complexity in [0, 1] of each training sample (a whole window, or one
    patch of a window): the mean of the rank-normalised temporal change energy (mean squared
    frame-to-frame change) and spatial gradient energy (mean squared neighbour difference) over
    the sample's input and target frames and pixels, valid cells only. Computed once, O(T·H·W)."""
    energies = [region_energies(windows, boxes) for windows, boxes in regions(samples)]
    temporal, spatial = (np.concatenate([energy[i].ravel() for energy in energies]) for i in (0, 1))
    return 0.5 * (rank01(temporal) + rank01(spatial))      # ranked over every source together


def region_energies(data: WindowDataset, boxes: np.ndarray, *, chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Temporal change and spatial gradient energy, each (N, P): window n over box p.

    ``boxes`` (P, 4): (top, left, height, width) in pixels (parts outside the series' grid are
    padding and count as empty). Energies are means over valid cells (a frame pair or neighbour
    pair counts where both are valid; a neighbour pair belongs to the box of its top/left cell).
    Frame sums per box come from summed-area tables, ``chunk`` frames at a time (bounded memory).
    """
    values, valid = data.series.values, data.series.valid
    height, width = values.shape[-2:]
    frames, length = len(values), data.t_in + data.t_out
    top, left = np.minimum(boxes[:, 0], height), np.minimum(boxes[:, 1], width)
    corners = (top, left, np.minimum(boxes[:, 0] + boxes[:, 2], height), np.minimum(boxes[:, 1] + boxes[:, 3], width))
    change, change_count, gradient, gradient_count = (np.zeros((frames, len(boxes))) for _ in range(4))
    for start in range(0, frames, chunk):
        stop = min(start + chunk, frames)
        x, ok = values[start:stop + 1].astype(np.float64), valid[start:stop + 1]
        both = ok[1:] & ok[:-1]
        pairs = len(both)
        change[start:start + pairs] = box_sums((x[1:] - x[:-1]) ** 2 * both, corners)
        change_count[start:start + pairs] = box_sums(both, corners)
        energy, count = neighbour_pairs(x[:stop - start], ok[:stop - start])
        gradient[start:stop] = box_sums(energy, corners)
        gradient_count[start:stop] = box_sums(count, corners)
    windows = data.first + np.arange(len(data))    # series frame of each window's first input

    def window_means(sums: np.ndarray, counts: np.ndarray, span: int) -> np.ndarray:
        s, c = (np.concatenate([np.zeros((1, len(boxes))), np.cumsum(a, axis=0)]) for a in (sums, counts))
        return (s[windows + span] - s[windows]) / np.maximum(c[windows + span] - c[windows], 1.0)

    return window_means(change, change_count, length - 1), window_means(gradient, gradient_count, length)


def neighbour_pairs(x: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared differences to the cell below plus to the cell on the right, where both cells are
    valid, and the number of such pairs; both (F, C, H, W), each pair at its top/left cell."""
    energy, count = np.zeros_like(x), np.zeros(x.shape)
    for axis in (-2, -1):
        head = [slice(None)] * x.ndim
        head[axis] = slice(None, -1)
        both = np.take(ok, range(1, ok.shape[axis]), axis) & np.take(ok, range(ok.shape[axis] - 1), axis)
        energy[tuple(head)] += np.diff(x, axis=axis) ** 2 * both
        count[tuple(head)] += both
    return energy, count


def box_sums(maps: np.ndarray, corners: tuple[np.ndarray, ...]) -> np.ndarray:
    """(F, P) sums of (F, C, H, W) ``maps`` over channels and each box (top, left, bottom, right)."""
    planes = maps.sum(axis=1, dtype=np.float64)
    table = np.zeros((len(planes), planes.shape[1] + 1, planes.shape[2] + 1))
    table[:, 1:, 1:] = planes.cumsum(axis=1).cumsum(axis=2)
    top, left, bottom, right = corners
    return table[:, bottom, right] - table[:, top, right] - table[:, bottom, left] + table[:, top, left]


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

    def __init__(self, data: Samples, config: TrainConfig, epochs: int, generator: torch.Generator) -> None:
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

    def __init__(self, data: Samples, config: TrainConfig, epochs: int, generator: torch.Generator) -> None:
        super().__init__(data, config, epochs, generator)
        self.complexity = sample_complexity(data) if self.complexity_weight > 0 else np.zeros(self.n)

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


def make_pruner(data: Samples, config: TrainConfig, epochs: int, generator: torch.Generator) -> SamplePruner:
    """The configured strategy; data sets too small to prune fall back to full data (logged)."""
    strategy = config.sample_pruning
    if strategy != "off" and len(data) < MIN_WINDOWS:
        log.warning("sample pruning %s: only %d training samples (< %d); training on the full data instead",
                    strategy, len(data), MIN_WINDOWS)
        strategy = "off"
    return PRUNERS[strategy](data, config, epochs, generator)
