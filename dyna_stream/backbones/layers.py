"""Prunable building blocks: conv → BatchNorm → activation (→ PixelShuffle), then the masks.

Every block applies the tile mask and its output group's channel gate after itself, so the
dense training graph computes exactly what a tile/channel-sparse executor computes (DESIGN §2).
Each block counts the multiply-accumulates a sparse executor needs for its kept tiles and
channels (halo overhead excluded), once per call recorded in the MaskContext (a recurrent
backbone calls a block once per time step).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..model.context import MaskContext
from ..model.norm import active_batch_norm


@dataclass(frozen=True)
class Source:
    """A slice of a block's input channels and the gate group that produced it (None: never pruned)."""

    group: str | None
    channels: int


def _kept_inputs(sources: tuple[Source, ...], ctx: MaskContext, batch: int, device: torch.device) -> torch.Tensor:
    return sum(ctx.kept_channels(s.group, s.channels, batch, device) for s in sources)


class ConvUnit(nn.Module):
    """Conv(k, stride, dilation, no bias) → BatchNorm → SiLU (optional) → PixelShuffle(r) (optional).

    Parameters
    ----------
    sources : the input channel slices in concatenation order (for MAC accounting).
    cout : gate units of the output (channels, unless ``fan`` > 1).
    group : gate group of the output units (None: not prunable).
    shuffle : pixel-shuffle factor r; the conv then has r² filters per output channel.
    fan : output channels per unit, adjacent (e.g. the 4 LSTM gates of one hidden channel); a
        unit's ``fan·r²`` filters are kept or pruned together.
    depthwise : one k×k filter per channel (groups = channels); input and output share ``group``.
    """

    def __init__(self, sources: tuple[Source, ...], cout: int, *, kernel: int = 3, stride: int = 1,
                 dilation: int = 1, group: str | None = None, shuffle: int = 1, fan: int = 1,
                 depthwise: bool = False, activation: bool = True) -> None:
        super().__init__()
        cin = sum(s.channels for s in sources)
        if depthwise and (len(sources) != 1 or sources[0].group != group or cin != cout or fan * shuffle != 1):
            raise ValueError("a depthwise unit reads one source of its own group and width, without fan or shuffle")
        self.sources, self.group, self.shuffle, self.fan, self.cout = sources, group, shuffle, fan, cout
        self.depthwise = depthwise
        self.filters_per_unit = fan * shuffle**2
        self.conv = nn.Conv2d(cin, cout * self.filters_per_unit, kernel, stride=stride,
                              padding=dilation * (kernel - 1) // 2, dilation=dilation, bias=False,
                              groups=cin if depthwise else 1)
        self.norm = nn.BatchNorm2d(cout * self.filters_per_unit)
        self.activation = nn.SiLU() if activation else nn.Identity()

    def forward(self, x: torch.Tensor, ctx: MaskContext) -> torch.Tensor:
        """Run under ``ctx``: masked dense (MaskContext) or tile/channel-sparse (sparse.SparseContext)."""
        return ctx.conv_unit(self, x)

    def dense(self, x: torch.Tensor, active: tuple[torch.Tensor | None, torch.Tensor | None] | None = None
              ) -> torch.Tensor:
        """The unmasked computation on a whole (B, C_in, h, w) canvas. ``active`` = (tiles, channels),
        the {0, 1} factors of the conv outputs kept (see :func:`~dyna_stream.model.norm.active_batch_norm`):
        in training, BatchNorm statistics over these elements only."""
        y = self.conv(x)
        y = self.norm(y) if active is None or not self.norm.training else active_batch_norm(y, self.norm, *active)
        y = self.activation(y)
        return F.pixel_shuffle(y, self.shuffle) if self.shuffle > 1 else y

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The conv's output pixels (before any shuffle) for an input of ``size``."""
        stride = self.conv.stride[0]
        return ((size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1)

    def macs(self, ctx: MaskContext, batch: int, device: torch.device) -> torch.Tensor:
        """MACs per sample (B,) for the kept tiles and channels of the calls recorded in ``ctx``."""
        cin = 1 if self.depthwise else _kept_inputs(self.sources, ctx, batch, device)
        cout = ctx.kept_channels(self.group, self.cout, batch, device) * self.filters_per_unit
        taps = self.conv.kernel_size[0] * self.conv.kernel_size[1]
        pixels = sum(h * w for h, w in map(self.output_size, ctx.runs(self)))
        return pixels * ctx.tile_fraction(batch, device) * cin * cout * taps


class Readout(nn.Module):
    """1×1 conv to the forecast channels, initialised to zero so training starts at the fallback."""

    group = None
    shuffle = 1
    fan = 1
    depthwise = False
    norm = None
    activation = nn.Identity()

    def __init__(self, sources: tuple[Source, ...], cout: int) -> None:
        super().__init__()
        self.sources, self.cout = sources, cout
        self.conv = nn.Conv2d(sum(s.channels for s in sources), cout, 1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, ctx: MaskContext) -> torch.Tensor:
        return ctx.readout(self, x)

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return size

    def macs(self, ctx: MaskContext, batch: int, device: torch.device) -> torch.Tensor:
        cin = _kept_inputs(self.sources, ctx, batch, device)
        pixels = sum(h * w for h, w in ctx.runs(self))
        return pixels * ctx.tile_fraction(batch, device) * cin * self.cout


class SqueezeExcite(nn.Module):
    """Channel attention: mean over the active pixels → Linear → SiLU → Linear → sigmoid.

    Input (B, C, h, w) features of ``source``; output (B, C) ∈ (0, 1). The mean runs over the kept
    tiles only, so a sparse executor sees the statistics the masked dense model sees.
    """

    def __init__(self, source: Source, reduction: int = 4) -> None:
        super().__init__()
        self.source = source
        hidden = max(4, source.channels // reduction)
        self.fc1 = nn.Linear(source.channels, hidden)
        self.fc2 = nn.Linear(hidden, source.channels)

    def forward(self, x: torch.Tensor, ctx: MaskContext) -> torch.Tensor:
        return ctx.squeeze_excite(self, x)

    def dense(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, C) pooled features → (B, C) channel weights."""
        return torch.sigmoid(self.fc2(F.silu(self.fc1(pooled))))

    def macs(self, ctx: MaskContext, batch: int, device: torch.device) -> torch.Tensor:
        kept = ctx.kept_channels(self.source.group, self.source.channels, batch, device)
        return len(ctx.runs(self)) * 2 * kept * self.fc1.out_features


Block = ConvUnit | Readout | SqueezeExcite
