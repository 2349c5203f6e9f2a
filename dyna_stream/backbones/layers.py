"""Prunable building blocks: conv → BatchNorm → activation (→ PixelShuffle), then the masks.

Every block applies the tile mask and its output group's channel gate after itself, so the
dense training graph computes exactly what a tile/channel-sparse executor computes (DESIGN §2).
Each block also counts the multiply-accumulates a sparse executor needs for its kept tiles and
channels (halo overhead excluded).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..model.context import MaskContext


@dataclass(frozen=True)
class Source:
    """A slice of a block's input channels and the gate group that produced it (None: never pruned)."""

    group: str | None
    channels: int


class ConvUnit(nn.Module):
    """Conv(k, stride, dilation, no bias) → BatchNorm → SiLU (optional) → PixelShuffle(r) (optional).

    Parameters
    ----------
    sources : the input channel slices in concatenation order (for MAC accounting).
    cout : output channels after the pixel shuffle.
    group : gate group of the output channels (None: not prunable).
    shuffle : pixel-shuffle factor r; the conv then has cout·r² filters, pruned in groups of r².
    """

    def __init__(self, sources: tuple[Source, ...], cout: int, *, kernel: int = 3, stride: int = 1,
                 dilation: int = 1, group: str | None = None, shuffle: int = 1, activation: bool = True) -> None:
        super().__init__()
        cin = sum(s.channels for s in sources)
        self.sources, self.group, self.shuffle, self.cout = sources, group, shuffle, cout
        self.conv = nn.Conv2d(cin, cout * shuffle**2, kernel, stride=stride,
                              padding=dilation * (kernel - 1) // 2, dilation=dilation, bias=False)
        self.norm = nn.BatchNorm2d(cout * shuffle**2)
        self.activation = nn.SiLU() if activation else nn.Identity()
        self._conv_size: tuple[int, int] = (0, 0)

    def forward(self, x: torch.Tensor, ctx: MaskContext) -> torch.Tensor:
        """Run under ``ctx``: masked dense (MaskContext) or tile/channel-sparse (sparse.SparseContext)."""
        return ctx.conv_unit(self, x)

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """The unmasked computation on a whole (B, C_in, h, w) canvas."""
        y = self.activation(self.norm(self.conv(x)))
        self._conv_size = tuple(y.shape[-2:])
        return F.pixel_shuffle(y, self.shuffle) if self.shuffle > 1 else y

    def macs(self, ctx: MaskContext, batch: int, device: torch.device) -> torch.Tensor:
        """MACs per sample (B,) for the kept tiles and channels of the last forward."""
        cin = sum(ctx.kept_channels(s.group, s.channels, batch, device) for s in self.sources)
        cout = ctx.kept_channels(self.group, self.cout, batch, device) * self.shuffle**2
        pixels = self._conv_size[0] * self._conv_size[1] * ctx.tile_fraction(batch, device)
        return pixels * cin * cout * self.conv.kernel_size[0] * self.conv.kernel_size[1]


class Readout(nn.Module):
    """1×1 conv to the forecast channels, initialised to zero so training starts at the fallback."""

    group = None
    shuffle = 1
    norm = None
    activation = nn.Identity()

    def __init__(self, source: Source, cout: int) -> None:
        super().__init__()
        self.source, self.sources, self.cout = source, (source,), cout
        self.conv = nn.Conv2d(source.channels, cout, 1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self._size: tuple[int, int] = (0, 0)

    def forward(self, x: torch.Tensor, ctx: MaskContext) -> torch.Tensor:
        return ctx.readout(self, x)

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        self._size = tuple(x.shape[-2:])
        return self.conv(x)

    def macs(self, ctx: MaskContext, batch: int, device: torch.device) -> torch.Tensor:
        cin = ctx.kept_channels(self.source.group, self.source.channels, batch, device)
        return self._size[0] * self._size[1] * ctx.tile_fraction(batch, device) * cin * self.cout
