"""What every backbone offers the Dyna-Pruner wrapper."""
from __future__ import annotations

import torch
from torch import nn

from ..model.context import MaskContext
from .layers import ConvUnit, Readout


class Backbone(nn.Module):
    """A forecaster over stacked frames with prunable channel groups and a tile grid.

    Subclasses set ``groups`` (gate group → channels, in a fixed order), ``tile_size``
    (input pixels per tile side) and implement ``forward(inputs (B, C_in, H, W), ctx) →
    (B, C_out, H, W)``. H and W must be multiples of ``tile_size``.
    """

    groups: dict[str, int]
    tile_size: int

    def blocks(self) -> list[ConvUnit | Readout]:
        return [m for m in self.modules() if isinstance(m, (ConvUnit, Readout))]

    def macs(self, ctx: MaskContext, batch: int, device: torch.device) -> torch.Tensor:
        """Multiply-accumulates per sample (B,) of the last forward under ``ctx``."""
        return sum(block.macs(ctx, batch, device) for block in self.blocks())
