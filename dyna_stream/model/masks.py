"""Mask primitives: tile scores, hard top-k and threshold gates with straight-through gradients.

Shapes: B batch, N candidates (tiles or units), (Ht, Wt) the tile grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}; 0 keeps everything, 0.9 keeps 10%")


def keep_count(total: int, sparsity: float) -> int:
    """Units or tiles kept at ``sparsity`` ∈ [0, 1): ⌈(1 − sparsity)·total⌉, at least 1."""
    check_sparsity(sparsity)
    return max(1, math.ceil((1.0 - sparsity) * total - 1e-9))


def keep_counts(totals: torch.Tensor, sparsity: float) -> torch.Tensor:
    """:func:`keep_count` of each of ``totals`` (B,) as a tensor, 0 where the total is 0; computed on
    the device (float64, the same rounding as the scalar), so selecting masks needs no host sync."""
    check_sparsity(sparsity)
    kept = torch.ceil((1.0 - sparsity) * totals.to(torch.float64) - 1e-9).clamp_min(1).to(torch.long)
    return torch.where(totals > 0, kept, torch.zeros_like(kept))


def straight_through(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """Forward ``hard``, backward as if it were ``soft``; ``hard`` itself where no gradient is recorded
    (inference: three fewer operations per mask)."""
    if not (torch.is_grad_enabled() and soft.requires_grad):
        return hard
    return hard + soft - soft.detach()


def topk_mask(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Hard {0, 1} mask (B, N) keeping the ``keep`` highest scores of each row; ties by index (as
    :func:`ranked_mask`, so every engine keeps the same tiles where scores tie exactly: calm tiles of
    identical input do; ``torch.topk`` breaks such ties by an order of its own)."""
    return ranked_mask(scores, torch.full((scores.shape[0],), keep, dtype=torch.long, device=scores.device))


def topk_ste(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Top-k mask at ``sparsity`` (forward hard), gradient straight through to ``scores``."""
    hard = topk_mask(scores.detach(), keep_count(scores.shape[1], sparsity))
    return straight_through(hard, scores)


def threshold_ste(importance: torch.Tensor, threshold: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Gate = 1[importance > threshold] forward; backward through sigmoid((I − τ)/temperature),
    so both the importance head and the learnable threshold τ receive gradients."""
    soft = torch.sigmoid((importance - threshold) / temperature)
    return straight_through((importance > threshold).to(importance.dtype), soft)


def tile_scores(importance_map: torch.Tensor, tile: int) -> torch.Tensor:
    """Mean of S over each tile: (B, 1, H, W) → (B, 1, H/tile, W/tile)."""
    height, width = importance_map.shape[-2:]
    if height % tile or width % tile:
        raise ValueError(f"grid {height}×{width} is not a multiple of the tile size {tile}; pad the input")
    return F.avg_pool2d(importance_map, tile)


def covered_tiles(coverage: torch.Tensor, tile: int) -> torch.Tensor:
    """(B, 1, H, W) {0, 1} coverage (cells with a measurement) → (B, 1, Ht, Wt) bool: tiles holding
    at least one covered cell."""
    return F.max_pool2d(coverage.to(torch.float32), tile) > 0


def ranked_mask(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Hard {0, 1} mask (B, N) keeping each row's ``keep[b]`` highest scores; ties by index."""
    order = scores.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(scores.shape[1], device=scores.device)
                                             .expand_as(order).contiguous())
    return (ranks < keep[:, None]).to(scores.dtype)


@dataclass(frozen=True)
class ContentBudget:
    """A data budget that follows the content: keep the tiles whose mean S exceeds ``threshold``, but
    never fewer than ⌈(1 − max_sparsity)·N⌉ nor more than ⌈(1 − sd)·N⌉ of the N covered tiles, sd
    being the operating point's data sparsity (the cost cap the controller chose). A calm window
    costs less than a storm; no window costs more than top-k at sd."""

    threshold: float
    max_sparsity: float = 0.99

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_sparsity < 1.0:
            raise ValueError(f"max_sparsity must be in [0, 1), got {self.max_sparsity}")

    def keep(self, above: int, total: int, sparsity: float) -> int:
        """Tiles kept of ``total`` covered ones when ``above`` of them score over the threshold."""
        return int(self.keep_counts(torch.tensor([above]), torch.tensor([total]), sparsity)[0])

    def keep_counts(self, above: torch.Tensor, totals: torch.Tensor, sparsity: float) -> torch.Tensor:
        """:meth:`keep` per sample, (B,) long tensors, on the device (no host sync)."""
        low = keep_counts(totals, max(self.max_sparsity, sparsity))
        return torch.minimum(torch.maximum(above.to(torch.long), low), keep_counts(totals, sparsity))


def tile_mask(importance_map: torch.Tensor, tile: int, sparsity: float,
              covered: torch.Tensor | None = None, budget: ContentBudget | None = None) -> torch.Tensor:
    """Hard data mask on the tile grid (B, 1, Ht, Wt): top ⌈(1−sd)·N⌉ tiles by mean S, STE to S.

    With ``covered`` (B, 1, Ht, Wt) bool, only covered tiles compete and N is each sample's count of
    covered tiles: a tile without a measured cell is never kept (a sample without any keeps none).
    With a ``budget``, each sample keeps its tiles over the budget's threshold within its bounds."""
    scores = tile_scores(importance_map, tile)
    batch, _, rows, cols = scores.shape
    flat = scores.reshape(batch, rows * cols)
    if covered is None and budget is None:
        return topk_ste(flat, sparsity).reshape(batch, 1, rows, cols)
    inside = (torch.ones_like(flat, dtype=torch.bool) if covered is None
              else covered.reshape(batch, rows * cols))
    totals = inside.sum(1)
    if budget is None:
        keep = keep_counts(totals, sparsity)
    else:
        keep = budget.keep_counts((inside & (flat.detach() > budget.threshold)).sum(1), totals, sparsity)
    ranked = torch.where(inside, flat.detach(), torch.full_like(flat, -1.0))
    return straight_through(ranked_mask(ranked, keep) * inside, flat).reshape(batch, 1, rows, cols)


def fail_tiles(mask: torch.Tensor | None, fraction: float) -> torch.Tensor | None:
    """Flip ⌊fraction·kept⌋ of each sample's kept tiles (B, 1, Ht, Wt) to pruned, chosen at random
    (torch's global generator): a mask generator that misses important regions. None stays None."""
    if mask is None:
        return None
    flat = mask.detach().flatten(1)
    failed = flat.clone()
    for row, kept in zip(failed, flat):
        active = torch.nonzero(kept > 0, as_tuple=True)[0]
        count = int(fraction * active.numel())
        row[active[torch.randperm(active.numel(), device=active.device)[:count]]] = 0.0
    return failed.view_as(mask)


def expand_tiles(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample a tile-grid mask (B, 1, Ht, Wt) to a layer's (h, w) by block repetition.

    ``h`` and ``w`` must be whole multiples of (Ht, Wt): every layer's resolution holds whole tiles.
    """
    rows, cols = mask.shape[-2:]
    if size[0] % rows or size[1] % cols:
        raise ValueError(f"layer grid {size} does not hold whole tiles of the {rows}×{cols} tile grid")
    return mask.repeat_interleave(size[0] // rows, dim=2).repeat_interleave(size[1] // cols, dim=3)
