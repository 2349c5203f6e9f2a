"""Mask generator g(X; φ): a small CNN on a cheap summary of the window → importance map S and
per-unit importance I (DESIGN §2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def summarise(frames: torch.Tensor, fallback: torch.Tensor, coverage: torch.Tensor | None = None) -> torch.Tensor:
    """Cheap summary of a window: last frame, last − first, and the fallback's last lead − last frame,
    plus the coverage map when given.

    frames : (B, T_in, C, H, W), fallback : (B, T_out, C, H, W), normalised; coverage : (B, 1, H, W)
    {0, 1} (1 where the input has a measurement) → (B, 3C [+ 1], H, W).
    """
    last = frames[:, -1]
    parts = [last, last - frames[:, 0], fallback[:, -1] - last]
    if coverage is not None:
        parts.append(coverage.to(last.dtype))
    return torch.cat(parts, dim=1)


class MaskGenerator(nn.Module):
    """Summary (B, 3C, H, W) → S (B, 1, H, W) ∈ [0, 1] and I (B, units) ∈ [0, 1].

    ``coverage_input``: the summary carries the coverage map as one more channel (B, 3C + 1, H, W),
    so S and I can tell "no measurement" from "no echo"; S is 0 outside coverage either way.

    Runs at 1/``reduction`` resolution; unit importance is a linear head on the generator
    features pooled with S as weights (Σ S·h / Σ S), so units serving important regions score high.
    ``pooling="uniform"`` pools with equal weights instead (no shared S: the ablation).
    """

    POOLINGS = ("importance", "uniform")

    def __init__(self, *, channels: int, units: int, hidden: int = 16, reduction: int = 4,
                 pooling: str = "importance", coverage_input: bool = False) -> None:
        super().__init__()
        if pooling not in self.POOLINGS:
            raise ValueError(f"pooling must be one of {self.POOLINGS}, not {pooling!r}")
        self.reduction, self.pooling, self.coverage_input = reduction, pooling, coverage_input
        self.features = nn.Sequential(
            nn.Conv2d(3 * channels + int(coverage_input), hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=2, dilation=2), nn.SiLU(),
        )
        self.score = nn.Conv2d(hidden, 1, 1)
        self.units = nn.Linear(hidden, units)

    def forward(self, summary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = summary.shape[-2:]
        features = self.features(F.avg_pool2d(summary, self.reduction))
        low = torch.sigmoid(self.score(features))
        weights = low if self.pooling == "importance" else torch.ones_like(low)
        pooled = (features * weights).sum((2, 3)) / weights.sum((2, 3)).clamp_min(1e-6)
        importance_map = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
        return importance_map, torch.sigmoid(self.units(pooled))

    def summarise(self, frames: torch.Tensor, fallback: torch.Tensor, coverage: torch.Tensor | None) -> torch.Tensor:
        """This generator's input: :func:`summarise` with the coverage channel when it takes one
        (coverage None: everything measured)."""
        if self.coverage_input and coverage is None:
            coverage = torch.ones_like(frames[:, -1, :1])
        return summarise(frames, fallback, coverage if self.coverage_input else None)

    def macs(self, height: int, width: int) -> int:
        """Multiply-accumulates for one sample at input size H × W."""
        pixels = (height // self.reduction) * (width // self.reduction)
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)] + [self.score]
        per_pixel = sum(c.in_channels * c.out_channels * c.kernel_size[0] * c.kernel_size[1] for c in convs)
        return pixels * per_pixel + self.units.in_features * self.units.out_features
