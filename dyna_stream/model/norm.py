"""BatchNorm statistics over the active elements only (kept tiles × kept channels of each sample).

Under per-sample masks a plain BatchNorm averages a channel over every sample and pixel of the
batch, pruned ones included, so its statistics shrink with the batch's sparsity: a network trained
at random sparsities then meets, at inference, running statistics that match none of its operating
points, and keeping more channels or tiles than the average inflates its pre-activations (the
slimmable-network BatchNorm problem; measured in docs/results.md). Normalising over the active
elements makes a channel's statistics the statistics of the values a sparse executor computes,
whatever the sparsity. Inference is unchanged: eval-mode BatchNorm with the running statistics,
folded into the convolution by the sparse engine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def active_batch_norm(x: torch.Tensor, norm: nn.BatchNorm2d, tiles: torch.Tensor | None = None,
                      channels: torch.Tensor | None = None) -> torch.Tensor:
    """Training-mode ``norm(x)`` with per-channel mean and variance over the active elements.

    x : (B, C, h, w) pre-activations. The active elements are the product of ``tiles`` ({0, 1},
    (B or 1, 1, h, w): the kept pixels) and ``channels`` ({0, 1}, (B, C, 1, 1): the kept channels
    of each sample); None: all of them. No gradient flows through either. The running statistics
    move as ``nn.BatchNorm2d``'s do (momentum, or a cumulative average when momentum is None;
    unbiased variance), for the channels with at least two active elements in this batch.

    The statistics come from per-sample sums Σx and Σx² over the kept pixels, weighted by the kept
    channels (the mask is never expanded to x's size), and the output is one fused x·scale + shift:
    three full-size passes instead of eight.
    """
    batch, width, height, breadth = x.shape
    tiles = None if tiles is None else tiles.detach().to(x.dtype)
    kept = x if tiles is None else x * tiles
    first, second = kept.sum((2, 3)), (kept * x).sum((2, 3))                      # (B, C): Σ x, Σ x²
    pixels = (torch.full((batch,), float(height * breadth), dtype=x.dtype, device=x.device) if tiles is None
              else tiles.sum((1, 2, 3)).expand(batch))                             # (B,) kept pixels
    weight = (torch.ones(batch, width, dtype=x.dtype, device=x.device) if channels is None
              else channels.detach().to(x.dtype).reshape(-1, width).expand(batch, width))
    count = (weight * pixels[:, None]).sum(0)
    mean = (weight * first).sum(0) / count.clamp_min(1)
    var = ((weight * second).sum(0) / count.clamp_min(1) - mean.square()).clamp_min(0)
    if norm.track_running_stats:
        _update_running(norm, mean.detach(), var.detach(), count)
    scale = torch.rsqrt(var + norm.eps)
    shift = -mean * scale
    if norm.affine:
        scale, shift = scale * norm.weight, shift * norm.weight + norm.bias
    return torch.addcmul(shift[:, None, None], x, scale[:, None, None])


@torch.no_grad()
def _update_running(norm: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
    norm.num_batches_tracked += 1
    momentum = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
    seen = count > 1
    unbiased = var * count / (count - 1).clamp_min(1)
    norm.running_mean.copy_(torch.where(seen, torch.lerp(norm.running_mean, mean, momentum), norm.running_mean))
    norm.running_var.copy_(torch.where(seen, torch.lerp(norm.running_var, unbiased, momentum), norm.running_var))


@dataclass
class NormLevels:
    """BatchNorm running statistics per model-sparsity level (post-training calibration).

    A kept channel's pre-activation sums over the kept input channels, so its scale moves with sw:
    one set of running statistics, averaged over the training range of sw, mis-normalises the
    points far from that average (all channels kept, sw = 0, most of all). ``stats[l]`` holds the
    mean and variance of every BatchNorm of the backbone (model order, concatenated) for
    ``levels[l]``; inference loads the level nearest to its sw.

    levels : (L,) sw values, ascending.  stats : (L, 2, C_total) mean, variance.
    """

    levels: torch.Tensor
    stats: torch.Tensor

    def __post_init__(self) -> None:
        self._host_levels = self.levels.detach().cpu().numpy().astype(np.float32)

    def nearest(self, model_sparsity: float) -> int:
        """Index of the level nearest to sw (the first of two as near, in float32), decided on a host
        copy of the levels: no device sync, so a graphed step can choose its level."""
        return int(np.argmin(np.abs(self._host_levels - np.float32(model_sparsity))))

    def to_payload(self) -> dict[str, torch.Tensor]:
        return {"levels": self.levels.cpu(), "stats": self.stats.cpu()}

    @classmethod
    def from_payload(cls, payload: dict[str, torch.Tensor]) -> NormLevels:
        levels, stats = payload["levels"].float(), payload["stats"].float()
        if levels.ndim != 1 or stats.ndim != 3 or stats.shape[:2] != (len(levels), 2):
            raise ValueError(f"norm levels of shapes {tuple(levels.shape)} and {tuple(stats.shape)} do not fit "
                             "(L,) and (L, 2, C)")
        return cls(levels, stats)


def read_statistics(norms: list[nn.BatchNorm2d]) -> torch.Tensor:
    """(2, C_total): running mean and variance of ``norms``, concatenated."""
    return torch.stack([torch.cat([n.running_mean for n in norms]), torch.cat([n.running_var for n in norms])])


@torch.no_grad()
def write_statistics(norms: list[nn.BatchNorm2d], stats: torch.Tensor) -> None:
    """Load (2, C_total) statistics into ``norms`` (the inverse of :func:`read_statistics`)."""
    start = 0
    for norm in norms:
        end = start + norm.num_features
        norm.running_mean.copy_(stats[0, start:end])
        norm.running_var.copy_(stats[1, start:end])
        start = end
    if start != stats.shape[1]:
        raise ValueError(f"statistics for {stats.shape[1]} channels, the BatchNorms have {start}")
