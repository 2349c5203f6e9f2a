"""The coarse path: a cheap dense forecaster that runs everywhere, what pruned tiles receive.

Dyna-Pruner's fine path (the backbone) runs only on the kept tiles; without a coarse path a pruned
tile takes the fallback (advection on radar, persistence elsewhere), which fails wherever the
data are not persistent (a taxi rush hour, a diurnal cycle). The coarse path is SegBlocks' answer
(process low-complexity blocks at lower resolution instead of skipping them): the input frames and
the fallback, block-averaged by ``factor``, through a few 3×3 convolutions, give a correction at
1/factor resolution that is upsampled bilinearly and added to the fallback everywhere. Its cost is
a small share of the dense backbone's (``macs``), and it has no BatchNorm, so it reads the same at
every operating point.

With ``context`` > 0 it also hands the fine path a few channels of what it saw (a 1×1 projection of
its hidden features, upsampled like the correction): on a small grid a kept tile is a pixel or two
of the backbone's latent stream whose neighbours are pruned (zero), so without them the fine path
refines each tile blind to its surroundings.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CoarsePath(nn.Module):
    """[frames, fallback] (B, (T_in + T_out)·C, H, W) → correction (B, T_out·C, H, W).

    Parameters
    ----------
    t_in, t_out, channels : the window shape.  factor : resolution divisor (H and W are multiples).
    width : hidden channels.  blocks : residual 3×3 blocks after the 3×3 stem; a 1×1 readout,
        initialised to zero, so training starts at the fallback.  dilation : block i is dilated
        ``dilation**(i + 1)`` (1: plain 3×3 blocks, receptive field 2·blocks + 3 coarse pixels; 2:
        dilations 2, 4, …, receptive field 2**(blocks + 2) − 1 at the same MACs).
    context : channels of context features for the fine path (0: none).
    """

    def __init__(self, *, t_in: int, t_out: int, channels: int, factor: int = 4, width: int = 32,
                 blocks: int = 2, dilation: int = 1, context: int = 0) -> None:
        super().__init__()
        self.factor, self.context = factor, context
        self.stem = nn.Conv2d((t_in + t_out) * channels, width, 3, padding=1)
        rates = [dilation ** (i + 1) for i in range(blocks)]
        self.blocks = nn.ModuleList(nn.Conv2d(width, width, 3, padding=rate, dilation=rate) for rate in rates)
        self.readout = nn.Conv2d(width, t_out * channels, 1)
        nn.init.zeros_(self.readout.weight)
        nn.init.zeros_(self.readout.bias)
        self.context_readout = nn.Conv2d(width, context, 1) if context else None

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs (B, (T_in + T_out)·C, H, W), H and W multiples of ``factor`` (whole tiles are)."""
        return self.run(inputs)[0]

    def run(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The correction (B, T_out·C, H, W) and the context features (B, context, H, W) or None."""
        h = F.silu(self.stem(F.avg_pool2d(inputs, self.factor) if self.factor > 1 else inputs))
        for block in self.blocks:
            h = h + F.silu(block(h))
        context = None if self.context_readout is None else self._upsample(self.context_readout(h))
        return self._upsample(self.readout(h)), context

    def _upsample(self, low: torch.Tensor) -> torch.Tensor:
        if self.factor == 1:
            return low
        return F.interpolate(low, scale_factor=self.factor, mode="bilinear", align_corners=False)

    def convs(self) -> list[nn.Conv2d]:
        heads = [self.readout] if self.context_readout is None else [self.readout, self.context_readout]
        return [self.stem, *self.blocks, *heads]

    def macs(self, height: int, width: int) -> int:
        """Multiply-accumulates for one sample at input size H × W (pooling and upsampling excluded:
        a few operations per pixel)."""
        pixels = (height // self.factor) * (width // self.factor)
        return pixels * sum(c.in_channels * c.out_channels * c.kernel_size[0] * c.kernel_size[1]
                            for c in self.convs())
