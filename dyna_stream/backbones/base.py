"""What every backbone offers the Dyna-Pruner wrapper."""
from __future__ import annotations

import torch
from torch import nn

from ..model.context import MaskContext
from .layers import Block, ConvUnit, Readout, SqueezeExcite


class Backbone(nn.Module):
    """A forecaster over stacked frames with prunable channel groups and a tile grid.

    Builders take keyword-only ``t_in``, ``t_out``, ``channels`` (the window shape) plus their own
    sizes. Subclasses set ``groups`` (gate group → units, in a fixed order), ``tile_size`` (input
    pixels per tile side) and implement ``forward(inputs (B, (T_in+T_out)·C, H, W), ctx) →
    (B, T_out·C, H, W)``: the input frames and the base frames (fallback + coarse path) stacked
    along channels (then, for builders that take ``context``, that many channels of the coarse
    path's features), out the correction to the base. H and W must be multiples of ``tile_size``.
    """

    groups: dict[str, int]
    tile_size: int

    def blocks(self) -> list[Block]:
        return [m for m in self.modules() if isinstance(m, (ConvUnit, Readout, SqueezeExcite))]

    def macs(self, ctx: MaskContext, batch: int, device: torch.device) -> torch.Tensor:
        """Multiply-accumulates per sample (B,) of the forward that ran under ``ctx``."""
        return sum(block.macs(ctx, batch, device) for block in self.blocks())
